"""Model sets: the bundled networks, model folders, MTCNN's shapes, the pickle
refusal, and `mtcnn models export/info`."""
import base64
import dataclasses
import hashlib
import importlib.machinery
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main
from mtcnn_cli.detector import models
from mtcnn_cli.detector.datfile import (Conv, FullyConnected, MaxPool, ModelError, PReLU, Sigmoid,
                                        network_to_bytes, read_network, write_detector_list)
from mtcnn_cli.detector.layers import pooled_size as pooled_side
from mtcnn_cli.detector.models import (MTCNNModels, export_models, find_model_folder, load_models,
                                       validate_mtcnn)

from ..cli_support import one_line_error, usage_error

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETWORKS = ("PNet", "RNet", "ONet")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test its own (empty) cache of converted networks, no $MTCNN_MODELS."""
    monkeypatch.setenv("MTCNN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MTCNN_MODELS", raising=False)


@pytest.fixture(scope="module")
def sums(openface_models) -> dict[str, str]:
    """OpenFace 2.2.0's SHA256SUMS: {file name: hex digest}."""
    lines = (openface_models / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


@pytest.fixture(scope="module")
def bundled() -> MTCNNModels:
    return models.convert_package(models.package_weights())


def sha256_file(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# --- the bundled networks ---------------------------------------------------------------

def test_bundled_networks_are_openface_byte_for_byte(bundled, sums):
    assert bundled.source.startswith("bundled (mtcnn ") and "package weights" in bundled.source
    assert bundled.files == {name: None for name in NETWORKS}
    for name, layers in bundled.networks().items():
        data = network_to_bytes(layers)
        assert hashlib.sha256(data).hexdigest() == sums[f"{name}.dat"]
        assert bundled.sha256[name] == sums[f"{name}.dat"]


def test_bundled_arrays_equal_openface_arrays(bundled, openface_models):
    onet = read_network(openface_models / "ONet.dat")
    for ours, theirs in zip(bundled.onet, onet):
        assert type(ours) is type(theirs)
        for field in dataclasses.fields(ours):
            a, b = getattr(ours, field.name), getattr(theirs, field.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
                assert np.array_equal(a, b)


def test_export_matches_openface_sha256sums(tmp_path, sums):
    written = export_models(tmp_path / "new" / "models")
    folder = tmp_path / "new" / "models"
    assert sorted(written) == sorted(sums)
    for name, digest in sums.items():
        assert sha256_file(folder / name) == digest, name
    assert sorted(p.name for p in folder.iterdir()) == sorted(sums)  # no temp files left


def test_conversion_does_not_import_the_mtcnn_package(tmp_path):
    """find_spec locates the package without running it (it imports TensorFlow)."""
    code = textwrap.dedent("""
        import sys
        from mtcnn_cli.detector.models import convert_package, package_weights
        convert_package(package_weights())
        print("mtcnn" in sys.modules, "tensorflow" in sys.modules, "joblib" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "MTCNN_CACHE_DIR": str(tmp_path)}, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_bundled_is_memoised_within_a_process():
    models.bundled_models.cache_clear()
    first = load_models()
    assert load_models() is first and load_models(None) is first


def run_loader(cache: pathlib.Path) -> list[str]:
    """Load the default models in a fresh process: [source, joblib imported?, seconds]."""
    code = textwrap.dedent("""
        import sys, time
        import numpy
        from mtcnn_cli.detector.models import load_models
        start = time.perf_counter()
        m = load_models()
        took = time.perf_counter() - start
        print(m.sha256["PNet"], "joblib" in sys.modules, took)
    """)
    env = {**os.environ, "MTCNN_CACHE_DIR": str(cache)}
    env.pop("MTCNN_MODELS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout.split()


def test_cache_spares_the_conversion_and_loads_fast(tmp_path, sums):
    cache = tmp_path / "cache"
    digest, used_joblib, _ = run_loader(cache)
    assert digest == sums["PNet.dat"] and used_joblib == "True"
    (entry,) = cache.iterdir()
    # an OpenFace model folder, with its own checksums
    assert sorted(p.name for p in entry.iterdir()) == sorted([*sums, "SHA256SUMS"])
    for name, digest in sums.items():
        assert sha256_file(entry / name) == digest
    digest, used_joblib, _ = run_loader(cache)
    assert digest == sums["PNet.dat"] and used_joblib == "False"  # loaded from the cache
    # how fast is measured by `make bench` and reported by -v, not asserted here


def test_a_tampered_cache_is_not_used(tmp_path, monkeypatch, sums):
    cache = tmp_path / "cache"
    run_loader(cache)
    (entry,) = cache.iterdir()
    onet = bytearray((entry / "ONet.dat").read_bytes())
    onet[-1] ^= 0x40                                     # a weight changes, the file still parses
    (entry / "ONet.dat").write_bytes(bytes(onet))
    digest, used_joblib, _ = run_loader(cache)
    assert used_joblib == "True"                         # converted again from the package
    models.bundled_models.cache_clear()
    monkeypatch.setenv("MTCNN_CACHE_DIR", str(cache))
    assert load_models().sha256["ONet"] == sums["ONet.dat"]


def test_no_cache_when_disabled_or_unwritable(tmp_path, monkeypatch, sums):
    monkeypatch.setenv("MTCNN_CACHE_DIR", "")
    models.bundled_models.cache_clear()
    assert load_models().sha256 == {n: sums[f"{n}.dat"] for n in NETWORKS}
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    monkeypatch.setenv("MTCNN_CACHE_DIR", str(blocker / "cache"))
    models.bundled_models.cache_clear()
    assert load_models().sha256["RNet"] == sums["RNet.dat"]
    assert blocker.read_text() == "x"
    models.bundled_models.cache_clear()


# --- finding model folders --------------------------------------------------------------

def test_load_openface_folder(openface_models, sums):
    loaded = load_models(openface_models)
    assert loaded.source == str(openface_models)
    assert loaded.files == {name: openface_models / f"{name}.dat" for name in NETWORKS}
    assert loaded.sha256 == {name: sums[f"{name}.dat"] for name in NETWORKS}
    assert [len(loaded.pnet), len(loaded.rnet), len(loaded.onet)] == [8, 11, 14]


def test_environment_variable_and_argument(tmp_path, openface_models, monkeypatch):
    export_models(tmp_path / "exported")
    monkeypatch.setenv("MTCNN_MODELS", str(tmp_path / "exported"))
    assert load_models().source == str(tmp_path / "exported")
    assert load_models(openface_models).source == str(openface_models)   # DIR wins
    monkeypatch.setenv("MTCNN_MODELS", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="missing: no such model folder"):
        load_models()


@pytest.mark.parametrize("inside", ["lib/local/LandmarkDetector/model/mtcnn_detector",
                                    "model/mtcnn_detector", "build/bin/model/mtcnn_detector"])
def test_checkout_and_install_layouts(tmp_path, inside):
    export_models(tmp_path / "OpenFace" / inside)
    top = tmp_path / "OpenFace"
    assert find_model_folder(top) == top / inside
    assert load_models(top).source == str(top / inside)


def test_the_list_file_itself_names_its_folder(tmp_path):
    export_models(tmp_path)
    assert find_model_folder(tmp_path / "MTCNN_detector.txt") == tmp_path


def test_model_folder_search_is_bounded(tmp_path):
    export_models(tmp_path / "a" / "b" / "c" / "model" / "mtcnn_detector")
    with pytest.raises(ModelError, match="not a model folder: no MTCNN_detector.txt in it, nor in "
                                         "mtcnn_detector/, model/mtcnn_detector/"):
        find_model_folder(tmp_path)


def test_invalid_folders(tmp_path):
    with pytest.raises(ModelError, match=f"^{tmp_path / 'nope'}: no such model folder$"):
        load_models(tmp_path / "nope")
    (tmp_path / "file.dat").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a model folder"):
        load_models(tmp_path / "file.dat")


def test_list_naming_too_few_networks(tmp_path):
    export_models(tmp_path)
    write_detector_list(tmp_path / "MTCNN_detector.txt", {"PNet": "PNet.dat"})
    with pytest.raises(ModelError, match="MTCNN_detector.txt: names no RNet and no ONet"):
        load_models(tmp_path)


def test_list_naming_a_missing_file(tmp_path):
    export_models(tmp_path)
    (tmp_path / "RNet.dat").unlink()
    with pytest.raises(ModelError, match=f"{tmp_path / 'RNet.dat'}: network file missing"):
        load_models(tmp_path)


def test_list_with_crlf_and_other_names(tmp_path, sums):
    export_models(tmp_path / "nets")
    (tmp_path / "MTCNN_detector.txt").write_bytes(
        b"ONet nets/ONet.dat\r\nPNet nets/PNet.dat\r\nRNet nets/RNet.dat\r\n")
    loaded = load_models(tmp_path)
    assert loaded.files["ONet"] == tmp_path / "nets/ONet.dat"
    assert loaded.sha256["RNet"] == sums["RNet.dat"]


def test_a_broken_network_file_names_file_and_byte(tmp_path):
    export_models(tmp_path)
    data = bytearray((tmp_path / "ONet.dat").read_bytes())
    data[4:8] = (9).to_bytes(4, "little")
    (tmp_path / "ONet.dat").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"^{tmp_path / 'ONet.dat'}: at byte 4: layer 1 of 14: "
                                         "unknown layer type 9"):
        load_models(tmp_path)


# --- MTCNN's shapes ---------------------------------------------------------------------

@pytest.mark.parametrize("side, kernel, stride, expected", [
    (22, 3, 2, 11),   # RNet: 19 / 2 = 9.5 rounds up
    (9, 3, 2, 4),     # RNet: 3 + 1
    (10, 2, 2, 5),
    (5, 2, 2, 3),     # 1.5 rounds to 2: a last partial window
    (4, 3, 2, 2),     # 0.5 rounds to 1
    (2, 3, 3, 1),     # -1/3 rounds to 0: one partial window
    (2, 3, 2, 0),     # -0.5 rounds away from zero to -1: no output
    (23, 3, 2, 11),
])
def test_pooled_side_rounds_halves_away_from_zero(side, kernel, stride, expected):
    assert pooled_side(side, kernel, stride) == expected


def replaced(layers, index, layer):
    return layers[:index] + (layer,) + layers[index + 1:]


def fc(n_in, n_out):
    return FullyConnected(np.zeros((n_out, 1), np.float32), np.zeros((n_in, n_out), np.float32))


def conv(n_in, n_out, k):
    return Conv(np.zeros((n_in, n_out, k, k), np.float32), np.zeros(n_out, np.float32))


def rejection(bundled, name, layers) -> str:
    nets = {**bundled.networks(), name: tuple(layers)}
    with pytest.raises(ModelError) as caught:
        validate_mtcnn(nets["PNet"], nets["RNet"], nets["ONet"], "test set")
    return str(caught.value)


def test_the_real_networks_fit(bundled):
    validate_mtcnn(bundled.pnet, bundled.rnet, bundled.onet, "bundled")


def test_rnet_fc_input_not_576(bundled):
    message = rejection(bundled, "RNet", replaced(bundled.rnet, 8, fc(575, 128)))
    assert message == ("test set: RNet layer 9 (fully connected 575 -> 128) takes 575 inputs but "
                       "gets 64 maps of 3x3 = 576 values")


def test_pnet_with_five_outputs(bundled):
    message = rejection(bundled, "PNet", replaced(bundled.pnet, 7, fc(32, 5)))
    assert message == "test set: PNet must give 6 maps, but its last layer (layer 8) gives 5 maps of 1x1"


def test_onet_with_fifteen_outputs(bundled):
    message = rejection(bundled, "ONet", replaced(bundled.onet, 13, fc(256, 15)))
    assert "ONet must give a column of 16 values" in message and "a column of 15 values" in message


def test_rnet_ending_on_maps(bundled):
    message = rejection(bundled, "RNet", bundled.rnet[:8])
    assert message.endswith("RNet must give a column of 6 values, but its last layer (layer 8) "
                            "gives 64 maps of 3x3")


def test_pnet_fc_must_act_per_pixel(bundled):
    # a 1x1 PNet output flattened would fit at 12x12, but PNet runs on whole images
    layers = replaced(bundled.pnet, 7, fc(64, 6))
    message = rejection(bundled, "PNet", layers)
    assert "PNet layer 8 (fully connected 64 -> 6) takes 64 inputs but gets 32 maps of 1x1" in message
    assert "must act on each pixel" in message


def test_first_conv_must_take_three_maps(bundled):
    message = rejection(bundled, "ONet", replaced(bundled.onet, 0, conv(1, 32, 3)))
    assert message == ("test set: ONet layer 1 (convolution 1 -> 32, 3x3) takes 1 input maps but "
                       "gets 3 maps of 48x48")


def test_maps_too_small_for_a_kernel(bundled):
    # a 3x3 pooling of stride 3 on 4x4 maps: round(1/3) + 1 = 1
    layers = bundled.rnet[:6] + (MaxPool(3, 3, 3, 3),) + bundled.rnet[6:]
    message = rejection(bundled, "RNet", layers)
    assert "RNet layer 8 (convolution 48 -> 64, 2x2) has 2x2 kernels, larger than its 48 maps of 1x1" \
        in message


def test_pooling_to_nothing(bundled):
    layers = bundled.pnet[:6] + (MaxPool(3, 3, 2, 2),) + bundled.pnet[6:]
    message = rejection(bundled, "PNet", layers)
    assert "PNet layer 7 (max pooling 3x3, stride 2x2) gets 32 maps of 1x1 and would give 0x0 maps" \
        in message


def test_prelu_of_the_wrong_width(bundled):
    layers = replaced(bundled.rnet, 9, PReLU(np.ones((64, 1), np.float32)))
    message = rejection(bundled, "RNet", layers)
    assert "RNet layer 10 (PReLU 64 channels) has 64 slopes but gets a column of 128 values" in message


def test_conv_after_flattening(bundled):
    layers = bundled.onet[:12] + (conv(256, 16, 1),)
    message = rejection(bundled, "ONet", layers)
    assert "ONet layer 13 (convolution 256 -> 16, 1x1) needs maps but gets a column of 256 values" \
        in message


def test_sigmoid_keeps_the_shape(bundled):
    validate_mtcnn(bundled.pnet + (Sigmoid(),), bundled.rnet, bundled.onet, "with sigmoid")


def test_a_folder_of_misfits_is_rejected_at_load_time(tmp_path, bundled):
    nets = dict(bundled.networks(), RNet=replaced(bundled.rnet, 10, fc(128, 5)))
    export_models(tmp_path, MTCNNModels(nets["PNet"], nets["RNet"], nets["ONet"], "t"))
    with pytest.raises(ModelError, match=f"^{tmp_path}: RNet must give a column of 6 values"):
        load_models(tmp_path)


# --- pickles are refused ----------------------------------------------------------------

class TouchOnUnpickle:
    """Unpickling this creates `marker`: a stand-in for a malicious pickle."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_the_planted_pickle_really_is_malicious(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(TouchOnUnpickle(probe)))
    assert probe.exists()


def test_pickled_weights_in_a_folder_are_refused(tmp_path):
    import joblib

    marker = tmp_path / "PWNED"
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("pnet", "rnet", "onet"):
        joblib.dump([TouchOnUnpickle(marker)], folder / f"{name}.lz4", compress="lz4")
    with pytest.raises(ModelError) as caught:
        load_models(folder)
    assert str(caught.value).startswith(f"{folder} holds pnet.lz4, rnet.lz4, onet.lz4 and no "
                                        "MTCNN_detector.txt: pickled weights are never loaded")
    assert not marker.exists()


def test_a_pickle_named_as_a_dat_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    export_models(tmp_path)
    (tmp_path / "PNet.dat").write_bytes(pickle.dumps(TouchOnUnpickle(marker), protocol=4))
    with pytest.raises(ModelError, match=f"^{tmp_path / 'PNet.dat'} is a pickle or compressed "
                                         "stream: pickled weights are never loaded"):
        load_models(tmp_path)
    assert not marker.exists()


def test_a_list_naming_an_lz4_file_is_refused(tmp_path):
    import joblib

    marker = tmp_path / "PWNED"
    export_models(tmp_path)
    joblib.dump([TouchOnUnpickle(marker)], tmp_path / "pnet.lz4", compress="lz4")
    (tmp_path / "MTCNN_detector.txt").write_text("PNet pnet.lz4\nRNet RNet.dat\nONet ONet.dat\n")
    with pytest.raises(ModelError, match="pnet.lz4: pickled weights are never loaded"):
        load_models(tmp_path)
    assert not marker.exists()


def test_the_packages_own_folder_is_not_a_model_folder(monkeypatch):
    weights = models.package_weights().files["PNet"].parent
    monkeypatch.setenv("MTCNN_MODELS", str(weights))
    with pytest.raises(ModelError, match="pickled weights are never loaded from a model folder"):
        load_models()


def fake_package(tmp_path, monkeypatch, record_hash: str | None):
    """An 'installed' mtcnn package whose weights are malicious pickles, its
    RECORD listing `record_hash` for them (None: the true hash)."""
    import joblib

    site = tmp_path / "site"
    weights = site / "mtcnn" / "assets" / "weights"
    weights.mkdir(parents=True)
    lines = []
    for name in ("pnet", "rnet", "onet"):
        path = weights / f"{name}.lz4"
        joblib.dump([TouchOnUnpickle(tmp_path / "PWNED")], path, compress="lz4")
        true = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
        lines.append(f"mtcnn/assets/weights/{name}.lz4,sha256={record_hash or true.decode()},1")
    info = site / "mtcnn-9.9.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("\n".join(lines) + "\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtcnn\nVersion: 9.9\n")
    spec = importlib.machinery.ModuleSpec("mtcnn", None, is_package=True)
    spec.submodule_search_locations = [str(site / "mtcnn")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == "mtcnn" else real(name, *a))


def test_package_files_not_matching_the_install_record_are_not_unpickled(tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, record_hash="A" * 43)
    with pytest.raises(ModelError, match="pnet.lz4: differs from the installed mtcnn package's record"):
        models.package_weights()
    assert not (tmp_path / "PWNED").exists()


def test_package_weights_reports_version_and_files(tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, record_hash=None)
    found = models.package_weights()
    assert found.version == "9.9"
    assert found.files["ONet"] == tmp_path / "site/mtcnn/assets/weights/onet.lz4"
    assert not (tmp_path / "PWNED").exists()              # found and checked, not yet loaded


# --- the CLI ----------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, ["models", *map(str, args)])


def test_cli_export(tmp_path, sums):
    result = invoke("export", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert sorted(result.stdout.split()) == sorted(str(tmp_path / "out" / name) for name in sums)
    for name, digest in sums.items():
        assert sha256_file(tmp_path / "out" / name) == digest


def test_cli_export_of_a_folder(tmp_path, openface_models):
    result = invoke("export", tmp_path, "--models", openface_models)
    assert result.exit_code == 0, result.stderr
    for name in NETWORKS:
        assert (tmp_path / f"{name}.dat").read_bytes() == (openface_models / f"{name}.dat").read_bytes()


def test_cli_export_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("export", tmp_path / "file"), f"{tmp_path / 'file'}: cannot create the model folder")
    one_line_error(invoke("export", tmp_path / "out", "--models", tmp_path / "none"),
                   "none: no such model folder")
    usage_error(invoke("export"), "models export", "Missing argument 'DIR'")


def test_cli_info_bundled(sums):
    result = invoke("info")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("models: bundled (mtcnn ")
    # the SHA-256s below are OpenFace's own SHA256SUMS: what the line claims is checked against them
    assert out.splitlines()[1] == ("these are OpenFace 2.2.0's MTCNN networks to the bit: the SHA-256s of "
                                   "its PNet.dat, RNet.dat and ONet.dat")
    for name in NETWORKS:
        assert f"{name}: bundled (mtcnn" in out
        assert f"sha256 {sums[f'{name}.dat']}" in out
    assert "input: 3 maps of 24x24" in out
    assert "fully connected 576 -> 128" in out and "-> a column of 128 values" in out
    assert "max pooling 3x3, stride 2x2" in out and "-> 64 maps of 3x3" in out
    assert "-> a column of 16 values" in out


def test_cli_info_folder(openface_models, sums):
    result = invoke("info", openface_models)
    assert result.exit_code == 0, result.stderr
    assert f"PNet: {openface_models / 'PNet.dat'}" in result.stdout
    assert f"sha256 {sums['ONet.dat']}" in result.stdout


def test_cli_info_follows_the_environment(tmp_path, monkeypatch):
    export_models(tmp_path)
    monkeypatch.setenv("MTCNN_MODELS", str(tmp_path))
    result = invoke("info")
    assert result.stdout.startswith(f"models: {tmp_path}\n")


def test_cli_info_errors(tmp_path):
    one_line_error(invoke("info", tmp_path / "nothing"), "nothing: no such model folder")
    export_models(tmp_path)
    (tmp_path / "PNet.dat").write_bytes((tmp_path / "PNet.dat").read_bytes()[:100])
    one_line_error(invoke("info", tmp_path), f"{tmp_path / 'PNet.dat'}: at byte ",
                   "file ends inside 10 biases and 3x10 kernels")
    usage_error(invoke("info", "--frob"), "models info", "No such option '--frob'")


def test_cli_help_is_the_docstrings():
    result = invoke("export", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Write PNet.dat, RNet.dat, ONet.dat and MTCNN_detector.txt into DIR" in text
    assert "identical to OpenFace 2.2.0's own files" in text
    result = invoke("info", "--help")
    assert "where it comes from, its SHA-256" in " ".join(result.stdout.split())
