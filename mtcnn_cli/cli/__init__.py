"""The `mtcnn` command: one module per subcommand."""
from ..run import interrupt

with interrupt.program_signals():  # a Ctrl-C while importing: one line, no traceback
    import click

    from .. import __version__
    from .common import CONTEXT, Program


@click.group(cls=Program, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mtcnn")
def main():
    """OpenFace 2.2's MTCNN face detector, bit for bit, in numpy."""


def _register():
    from .compare import compare
    from .detect import detect
    from .models import models

    main.add_command(detect)
    main.add_command(compare)
    main.add_command(models)


_register()
