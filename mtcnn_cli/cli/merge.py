"""`mtcnn merge`: join the parts of an --out-dir run into one output."""
import click

from ..base import defaults
from ..base import signals
from ..base.atomic import OutputError
from ..base.errors import FileProblem, UsageProblem
from ..base.text import display, plural
from .program import say
from .program import CONTEXT, Command, fail, refuse_closed_stdout, usage_error

EPILOG = """\b
Exit status:
  0    every part was there and consistent; the whole run was written
  1    the output failed while being written
  2    nothing was written: DIR is not a finished run (a part missing,
       cut short or not of this run's input list, the manifest unreadable
       or of another version), or a bad option or -o
  130  interrupted (143 for SIGTERM): a -o file is left as it was
"""


@click.command(cls=Command, epilog=EPILOG, context_settings=CONTEXT,
               short_help="Join the parts of an --out-dir run into one output.")
@click.argument("folder", metavar="DIR")
@click.option("--format", "fmt", type=click.Choice(defaults.DETECT_FORMATS),
              help="Output format, as in mtcnn detect. Default: -o FILE's extension, else jsonl.")
@click.option("-o", "--output", metavar="FILE",
              help="Write to FILE (atomically) instead of stdout; its extension chooses the format.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def merge(folder, fmt, output, quiet):
    """Join the parts of `mtcnn detect ... --out-dir DIR` into one output.

    Checks that every part the manifest counts is there, whole, and holds
    one record per entry of its slice of the input list, in order, before
    writing anything; then writes the whole run in input order, the same
    bytes a plain `mtcnn detect` of the same inputs writes in that format.
    Only data goes to stdout; the summary goes to stderr."""
    # the records' code imports numpy: only when the command runs
    from ..run.outdir.merge import merge_run

    refuse_closed_stdout(output)
    try:
        counts = merge_run(folder, fmt, output)
    except FileProblem as e:
        fail(e)
    except UsageProblem as e:
        usage_error(str(e))
    except OutputError as e:
        fail(e, 1)
    except KeyboardInterrupt:
        fail("interrupted", signals.exit_status())
    if not quiet:
        say(f"merged {plural(counts['parts'], 'part')} of {display(folder)}: "
            f"{plural(counts['images'], 'image')}, {plural(counts['faces'], 'face')}, "
            f"{plural(counts['failures'], 'failure')}")
