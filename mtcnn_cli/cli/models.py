"""`mtcnn models`: export the bundled networks as OpenFace files, or inspect a set."""
from __future__ import annotations

from pathlib import Path

import click

from .program import CONTEXT, Group, fail


@click.group(cls=Group, context_settings=CONTEXT)
def models():
    """Model files: export the bundled networks in OpenFace's format, or show
    where a set of networks comes from and what it holds."""


@models.command()
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--models", "source", metavar="SRC", type=click.Path(path_type=Path),
              help="Export the networks of this model folder instead of the bundled ones.")
def export(folder, source):
    """Write PNet.dat, RNet.dat, ONet.dat and MTCNN_detector.txt into DIR
    (created if missing), in OpenFace 2.2's format.

    The bundled networks (the mtcnn package's MIT-licensed weights) come out
    byte-identical to OpenFace 2.2.0's own files. DIR can then be given to
    --models or $MTCNN_MODELS, or to OpenFace itself."""
    # the detector's code (numpy): only when the command runs
    from ..detector.datfile import ModelError
    from ..detector.models import export_models, load_model_folder

    try:
        chosen = load_model_folder(source) if source is not None else None
        written = export_models(folder, chosen)
    except ModelError as e:
        fail(e)
    for path in written.values():
        click.echo(str(path))


@models.command()
@click.argument("folder", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
def info(folder):
    """Show, for each network, where it comes from, its SHA-256, and its layers
    with the shapes they give on the network's input (PNet 12x12, RNet 24x24,
    ONet 48x48).

    DIR is a model folder (or an OpenFace checkout or install holding one);
    default $MTCNN_MODELS, then the bundled weights."""
    # the detector's code (numpy): only when the command runs
    from ..detector.datfile import ModelError
    from ..detector.models import OPENFACE_SHA256, describe_network, load_models

    try:
        loaded = load_models(folder)
        lines = [f"models: {loaded.source}"]
        if all(loaded.sha256.get(name) == digest for name, digest in OPENFACE_SHA256.items()):
            lines.append("these are OpenFace 2.2.0's MTCNN networks to the bit: the SHA-256s of "
                         "its PNet.dat, RNet.dat and ONet.dat")
        for name, layers in loaded.networks().items():
            file = loaded.files.get(name)
            lines += ["", f"{name}: {file if file is not None else loaded.source}",
                      f"  sha256 {loaded.sha256[name]}"]
            lines += [f"  {line}" for line in describe_network(layers, name, loaded.source)]
    except ModelError as e:
        fail(e)
    click.echo("\n".join(lines))
