"""The .dat reader and writer, and MTCNN_detector.txt.

Malformed files are built here field by field (helpers below), so that each
case knows the byte offset its error must name."""
import os
import re
import struct

import numpy as np
import pytest

from mtcnn_cli.detector import datfile
from mtcnn_cli.detector.datfile import (Conv, FullyConnected, MaxPool, ModelError, PReLU, Sigmoid,
                                        describe_layer, network_to_bytes, parse_network,
                                        read_detector_list, read_network, write_detector_list,
                                        write_network)

NETWORKS = ("PNet", "RNet", "ONet")

# The layers of OpenFace 2.2.0's files, as section 1 of the OpenFace notes lists them.
OPENFACE_LAYERS = {
    "PNet": ["convolution 3 -> 10, 3x3", "PReLU 10 channels", "max pooling 2x2, stride 2x2",
             "convolution 10 -> 16, 3x3", "PReLU 16 channels", "convolution 16 -> 32, 3x3",
             "PReLU 32 channels", "fully connected 32 -> 6"],
    "RNet": ["convolution 3 -> 28, 3x3", "PReLU 28 channels", "max pooling 3x3, stride 2x2",
             "convolution 28 -> 48, 3x3", "PReLU 48 channels", "max pooling 3x3, stride 2x2",
             "convolution 48 -> 64, 2x2", "PReLU 64 channels", "fully connected 576 -> 128",
             "PReLU 128 channels", "fully connected 128 -> 6"],
    "ONet": ["convolution 3 -> 32, 3x3", "PReLU 32 channels", "max pooling 3x3, stride 2x2",
             "convolution 32 -> 64, 3x3", "PReLU 64 channels", "max pooling 3x3, stride 2x2",
             "convolution 64 -> 64, 3x3", "PReLU 64 channels", "max pooling 2x2, stride 2x2",
             "convolution 64 -> 128, 2x2", "PReLU 128 channels", "fully connected 1152 -> 256",
             "PReLU 256 channels", "fully connected 256 -> 16"],
}


# --- building files by hand -------------------------------------------------------------

def i32(*values) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def floats(n: int, start: float = 0.0) -> bytes:
    return np.arange(start, start + n, dtype="<f4").tobytes()


def matrix(rows: int, cols: int, cv_type: int = 5, data: bytes | None = None) -> bytes:
    return i32(rows, cols, cv_type) + (floats(rows * cols) if data is None else data)


def conv(n_in: int, n_out: int, kh: int = 3, kw: int = 3) -> bytes:
    return (i32(0, n_in, n_out) + floats(n_out)
            + b"".join(matrix(kh, kw) for _ in range(n_in * n_out)))


def pool(kx=2, ky=2, sx=2, sy=2) -> bytes:
    return i32(1, kx, ky, sx, sy)


def fc(n_in: int, n_out: int) -> bytes:
    return i32(2) + matrix(n_out, 1) + matrix(n_in, n_out)


def prelu(channels: int) -> bytes:
    return i32(3) + matrix(channels, 1)


def net(*layers: bytes) -> bytes:
    return i32(len(layers)) + b"".join(layers)


def expect_error(data: bytes, offset: int, *fragments: str, source: str = "bad.dat") -> str:
    """parse_network must fail with `source: at byte offset: ...` and every fragment."""
    with pytest.raises(ModelError) as caught:
        parse_network(data, source)
    message = str(caught.value)
    assert message.startswith(f"{source}: at byte {offset}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    return message


# --- OpenFace's files -------------------------------------------------------------------

@pytest.mark.parametrize("name", NETWORKS)
def test_openface_files_read_as_documented_and_write_back_identically(openface_models, name):
    path = openface_models / f"{name}.dat"
    layers = read_network(path)
    assert [describe_layer(layer) for layer in layers] == OPENFACE_LAYERS[name]
    assert network_to_bytes(layers) == path.read_bytes()


def test_openface_arrays_have_the_documented_layouts(openface_models):
    pnet = read_network(openface_models / "PNet.dat")
    first = pnet[0]
    assert first.kernels.shape == (3, 10, 3, 3) and first.kernels.dtype == np.float32
    assert first.biases.shape == (10,)
    # the first bias and the first kernel's first row, read straight from the bytes
    raw = (openface_models / "PNet.dat").read_bytes()
    assert first.biases[0] == np.frombuffer(raw, "<f4", 1, 16)[0]
    assert np.array_equal(first.kernels[0, 0, 0], np.frombuffer(raw, "<f4", 3, 16 + 40 + 12))
    assert pnet[1].slopes.shape == (10, 1)
    assert pnet[-1].weights.shape == (32, 6) and pnet[-1].biases.shape == (6, 1)


def test_write_network_is_atomic_and_reads_back(openface_models, tmp_path):
    layers = read_network(openface_models / "RNet.dat")
    target = tmp_path / "RNet.dat"
    target.write_bytes(b"old")
    write_network(layers, target)
    assert target.read_bytes() == (openface_models / "RNet.dat").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RNet.dat"]  # no temp file left


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "x.dat"
    target.write_bytes(b"old")
    bad = Conv(np.zeros((2, 3, 3), np.float32), np.zeros(3, np.float32))  # kernels not 4-D
    with pytest.raises(ModelError, match="cannot write a convolution"):
        write_network([bad], target)
    with pytest.raises(ModelError, match="cannot write"):
        write_network([Sigmoid()], tmp_path / "no such folder" / "x.dat")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dat"]


def test_writer_rejects_what_the_format_cannot_hold():
    with pytest.raises(ModelError, match="without layers"):
        network_to_bytes([])
    with pytest.raises(ModelError, match=r"needs a \(n, 1\) matrix"):
        network_to_bytes([PReLU(np.ones((3, 2), np.float32))])
    with pytest.raises(ModelError, match=r"needs a \(n, 4\) matrix"):
        network_to_bytes([FullyConnected(np.ones((4, 1), np.float32), np.ones((8, 3), np.float32))])
    with pytest.raises(ModelError, match="not a layer"):
        network_to_bytes(["conv"])


def test_every_layer_type_round_trips():
    rng = np.random.default_rng(1)
    layers = (
        Conv(rng.standard_normal((2, 3, 2, 4), dtype=np.float32), rng.standard_normal(3, dtype=np.float32)),
        PReLU(rng.standard_normal((3, 1), dtype=np.float32)),
        MaxPool(3, 2, 2, 1),
        FullyConnected(rng.standard_normal((5, 1), dtype=np.float32),
                       rng.standard_normal((12, 5), dtype=np.float32)),
        Sigmoid(),
    )
    data = network_to_bytes(layers)
    # depth, then a conv: type, n_in, n_out, 3 biases, 6 kernels of 12-byte header + 8 floats
    assert data[:16] == i32(5, 0, 2, 3)
    assert len(data) == 4 + (12 + 12 + 6 * (12 + 32)) + (4 + 12 + 12) + 20 + (4 + 32 + 12 + 240) + 4
    back = parse_network(data, "x.dat")
    assert [type(layer) for layer in back] == [type(layer) for layer in layers]
    assert np.array_equal(back[0].kernels, layers[0].kernels)
    assert np.array_equal(back[3].weights, layers[3].weights)
    assert back[2] == MaxPool(3, 2, 2, 1)
    assert network_to_bytes(back) == data


# --- malformed files: each its own error, at its own byte -------------------------------

def test_empty_file():
    expect_error(b"", 0, "file ends inside the number of layers", "needs 4 bytes, 0 left")


def test_depth_zero():
    expect_error(i32(0), 0, "the number of layers is 0, must be positive")


def test_depth_negative():
    expect_error(i32(-3) + pool(), 0, "the number of layers is -3, must be positive")


def test_depth_absurd():
    expect_error(i32(2**31 - 1), 0, "the number of layers is 2147483647, more than the limit")


def test_depth_larger_than_the_file():
    expect_error(i32(900) + i32(4) * 3, 4, "file ends inside 900 layers", "needs 3600 bytes, 12 left")


def test_unknown_layer_type():
    expect_error(net(pool(), i32(7)), 24, "layer 2 of 2", "unknown layer type 7")


def test_negative_layer_type():
    expect_error(net(i32(-1)), 4, "layer 1 of 1", "unknown layer type -1")


def test_file_ends_inside_a_layer_type():
    expect_error(i32(2) + pool() + b"\x04\x00", 24, "layer 2 of 2", "file ends inside the layer type",
                 "needs 4 bytes, 2 left")


def test_conv_without_input_maps():
    expect_error(net(i32(0, 0, 4)), 8, "layer 1 of 1 (convolution)",
                 "the number of input maps is 0, must be positive")


def test_conv_with_negative_output_maps():
    expect_error(net(i32(0, 3, -2)), 12, "the number of output maps is -2, must be positive")


def test_conv_with_absurd_input_maps():
    expect_error(net(i32(0, 1 << 20, 1)), 8, "the number of input maps is 1048576, more than the limit of 65536")


def test_conv_declaring_more_kernels_than_the_file_holds():
    # 60000 x 60000 kernels would need 57.6 GB even at 1x1: refused before any allocation
    expect_error(net(i32(0, 60000, 60000)) + floats(8), 16,
                 "file ends inside 60000 biases and 60000x60000 kernels", "32 left")


def test_conv_kernel_of_double_type():
    data = net(i32(0, 1, 1) + floats(1) + matrix(3, 3, cv_type=6, data=bytes(72)))
    expect_error(data, 20, "kernel [0][0] has matrix type 6 (CV_64F), only 5 (CV_32F) is supported")


def test_conv_kernel_of_two_channel_float_type():
    data = net(i32(0, 1, 1) + floats(1) + matrix(3, 3, cv_type=13))
    expect_error(data, 20, "matrix type 13 (CV_32FC2)")


def test_conv_kernel_without_rows():
    data = net(i32(0, 1, 1) + floats(1) + i32(0, 3, 5) + floats(9))
    expect_error(data, 20, "kernel [0][0] has 0 rows, must be positive")


def test_conv_kernel_absurdly_wide():
    data = net(i32(0, 1, 1) + floats(1) + i32(3, 1 << 25, 5) + floats(9))
    expect_error(data, 20, "kernel [0][0] has 33554432 columns, more than the limit")


def test_conv_kernels_of_different_sizes():
    layer = i32(0, 1, 3) + floats(3) + matrix(3, 3) + matrix(2, 2) + matrix(3, 3)
    # kernel [0][1] starts after depth, type, n_in, n_out, 3 biases and one 3x3 kernel
    at = 4 + 12 + 12 + (12 + 36)
    expect_error(net(layer), at, "kernel [0][1] is 2x2, but kernel [0][0] is 3x3",
                 "must all have one size")


def test_conv_kernel_of_another_type_further_on():
    layer = i32(0, 2, 1) + floats(1) + matrix(3, 3) + matrix(3, 3, cv_type=0)
    expect_error(net(layer), 4 + 12 + 4 + 48, "kernel [1][0] has matrix type 0 (CV_8U)")


def test_conv_kernels_cut_short():
    data = net(conv(2, 2))[:-10]
    expect_error(data, 24, "file ends inside the kernels (2x2 matrices of 3x3 floats)",
                 "needs 192 bytes, 182 left")


def test_conv_input_maps_differ_from_the_previous_conv():
    first = conv(3, 4)
    expect_error(net(first, conv(5, 2)), 4 + len(first) + 4, "layer 2 of 2 (convolution)",
                 "takes 5 input maps, but the layer before gives 4")


def test_pooling_with_zero_kernel():
    expect_error(net(pool(kx=0)), 8, "layer 1 of 1 (max pooling)", "the kernel width is 0")


def test_pooling_with_negative_stride():
    expect_error(net(pool(sy=-2)), 20, "the vertical stride is -2, must be positive")


def test_pooling_with_absurd_stride():
    expect_error(net(pool(sx=100000)), 16, "the horizontal stride is 100000, more than the limit of 4096")


def test_pooling_cut_short():
    expect_error(net(pool())[:-2], 20, "file ends inside the vertical stride")


def test_fc_biases_not_a_column():
    expect_error(net(i32(2) + matrix(6, 2) + matrix(4, 6)), 8,
                 "layer 1 of 1 (fully connected)", "the bias matrix is 6x2, must be one column")


def test_fc_weights_not_matching_the_biases():
    at = 8 + 12 + 24
    expect_error(net(i32(2) + matrix(6, 1) + matrix(4, 5)), at,
                 "the weight matrix is 4x5, but there are 6 biases")


def test_fc_weights_larger_than_the_file():
    data = net(i32(2) + matrix(6, 1) + i32(1 << 20, 6, 5) + floats(12))
    expect_error(data, 4 + 4 + 36 + 12, "file ends inside the data of the weight matrix (1048576x6 floats)",
                 "needs 25165824 bytes, 48 left")


def test_fc_matrix_header_cut_short():
    expect_error(net(i32(2) + i32(6, 1)), 8, "file ends inside the header of the bias matrix")


def test_fc_inputs_not_fitting_the_maps():
    first = conv(1, 4)
    expect_error(net(first, fc(10, 2)), 4 + len(first) + 4 + 12 + 8, "layer 2 of 2 (fully connected)",
                 "takes 10 inputs, which does not fit the 4 maps")


def test_prelu_slopes_not_a_column():
    expect_error(net(i32(3) + matrix(4, 4)), 8, "layer 1 of 1 (PReLU)", "the slope matrix is 4x4")


def test_prelu_channels_differ_from_the_maps():
    first = conv(3, 8)
    expect_error(net(first, prelu(10)), 4 + len(first) + 4, "layer 2 of 2 (PReLU)",
                 "has 10 slopes, but the layer before gives 8 maps")


def test_prelu_after_fc_must_match_its_outputs():
    first = fc(16, 12)
    expect_error(net(first, prelu(16)), 4 + len(first) + 4, "has 16 slopes, but the layer before gives 12")


def test_prelu_of_integer_type():
    expect_error(net(i32(3) + matrix(4, 1, cv_type=4)), 8, "matrix type 4 (CV_32S)")


def test_trailing_bytes():
    data = net(pool(), Sigmoid_bytes := i32(4)) + b"\x00\x01\x02"
    assert Sigmoid_bytes == i32(4)
    expect_error(data, len(data) - 3, "3 trailing bytes after the last of the 2 layers")


def test_a_byte_of_trailing_garbage_after_openface_pnet(openface_models):
    data = (openface_models / "PNet.dat").read_bytes() + b"\n"
    expect_error(data, len(data) - 1, "1 trailing byte after the last of the 8 layers", source="PNet.dat")


def test_openface_rnet_cut_inside_its_fc_weights(openface_models):
    data = (openface_models / "RNet.dat").read_bytes()
    layers = read_network(openface_models / "RNet.dat")
    # the FC 576 -> 128 weights' data starts after their 12-byte header
    start = len(network_to_bytes(layers[:8])) + 4 + (12 + 128 * 4) + 12
    expect_error(data[:start + 100], start, "layer 9 of 11 (fully connected)",
                 "file ends inside the data of the weight matrix (576x128 floats)",
                 "needs 294912 bytes, 100 left", source="RNet.dat")


def test_errors_name_the_path_when_reading_a_file(tmp_path):
    path = tmp_path / "broken.dat"
    path.write_bytes(i32(1, 9))
    with pytest.raises(ModelError, match=re.escape(f"{path}: at byte 4: layer 1 of 1: unknown layer type 9")):
        read_network(path)


def test_unreadable_paths(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="cannot read the network file: No such file"):
        read_network(tmp_path / "missing.dat")
    with pytest.raises(ModelError, match="is a folder, not a network file"):
        read_network(tmp_path)
    big = tmp_path / "big.dat"
    big.write_bytes(bytes(2000))
    monkeypatch.setattr(datfile, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ModelError, match=f"{big}: 2000 bytes, more than any network file"):
        read_network(big)


# --- MTCNN_detector.txt -----------------------------------------------------------------

def test_detector_list_of_openface(openface_models):
    listed = read_detector_list(openface_models / "MTCNN_detector.txt")
    assert listed == {name: openface_models / f"{name}.dat" for name in NETWORKS}


def test_detector_list_tolerates_crlf_blank_lines_and_subfolders(tmp_path):
    path = tmp_path / "MTCNN_detector.txt"
    path.write_bytes(b"PNet nets/p.dat\r\n\r\nRNet r.dat\r\n  ONet   ../o.dat\r\n")
    assert read_detector_list(path) == {"PNet": tmp_path / "nets/p.dat", "RNet": tmp_path / "r.dat",
                                        "ONet": tmp_path / "../o.dat"}


@pytest.mark.parametrize("text, problem", [
    (b"PNet PNet.dat\nQNet Q.dat\n", "line 2: unknown network 'QNet'"),
    (b"PNet PNet.dat\nPNet other.dat\n", "line 2: PNet is listed twice"),
    (b"PNet\n", "line 1: expected 'NAME FILE'"),
    (b"PNet a b\n", "line 1: expected 'NAME FILE' (e.g. 'PNet PNet.dat'), got 'PNet a b'"),
    (b"PNet P\xffNet.dat\n", "at byte 6: not UTF-8 text"),
])
def test_detector_list_errors(tmp_path, text, problem):
    path = tmp_path / "MTCNN_detector.txt"
    path.write_bytes(text)
    with pytest.raises(ModelError) as caught:
        read_detector_list(path)
    assert str(caught.value) == f"{path}: {problem}" or str(caught.value).startswith(f"{path}: {problem}")


def test_write_detector_list_default_is_openface_layout(tmp_path):
    path = tmp_path / "MTCNN_detector.txt"
    write_detector_list(path)
    assert path.read_bytes() == b"PNet PNet.dat\nRNet RNet.dat\nONet ONet.dat\n"
    write_detector_list(path, {"PNet": "a.dat", "ONet": "sub/o.dat"})
    assert read_detector_list(path) == {"PNet": tmp_path / "a.dat", "ONet": tmp_path / "sub/o.dat"}
    assert os.listdir(tmp_path) == ["MTCNN_detector.txt"]


def test_write_detector_list_refuses_what_it_could_not_read_back(tmp_path):
    for files in ({"XNet": "x.dat"}, {"PNet": "my file.dat"}, {"PNet": ""}):
        with pytest.raises(ModelError, match="cannot list network"):
            write_detector_list(tmp_path / "MTCNN_detector.txt", files)
    assert not (tmp_path / "MTCNN_detector.txt").exists()
