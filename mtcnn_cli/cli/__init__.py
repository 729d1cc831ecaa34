"""The `mtcnn` command: one module per subcommand."""
import click

from .. import __version__
from .common import CONTEXT, Group


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mtcnn")
def main():
    """OpenFace 2.2's MTCNN face detector, bit for bit, in numpy."""


def _register():
    from .compare import compare
    from .detect import detect
    from .merge import merge
    from .models import models

    main.add_command(detect)
    main.add_command(compare)
    main.add_command(merge)
    main.add_command(models)


_register()
