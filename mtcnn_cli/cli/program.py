"""What every `mtcnn` command shares: how errors are shown.

Every error is one line on stderr, never a traceback, in one of two forms:

    mtcnn detect: no PATH given: ... (see mtcnn detect --help)
        the command line itself is wrong: a bad or missing option or
        argument, options that exclude each other (exit status 2);
    mtcnn: models/x: no MTCNN_detector.txt in this folder
        a file, folder or model that cannot be used, an image skipped, an
        interruption: the message names the file and the problem.

Commands get the first form by being declared with cls=Command (or
cls=Group), which turns click's own usage errors into it; they raise
usage_error() for their own command-line checks and call fail() for the
second form.
"""
from __future__ import annotations

import importlib
from typing import NoReturn

import click

from ..base import exits, signals
from .streams import CLOSED_AT_START, STDOUT_NAMES, reopen_closed_streams, silence_stdout

PROGRAM = "mtcnn"
CONTEXT = {"help_option_names": ["-h", "--help"]}


def one_line(message: str) -> str:
    """The message with every run of white space (newlines too) as one space."""
    return " ".join(str(message).split())


def command_name(ctx: click.Context | None) -> str:
    """'detect', or 'models export', for the command `ctx` runs ('' for the
    program itself), whatever name the program was started under."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(reversed(names))


def usage_line(message: str, ctx: click.Context | None) -> str:
    """`mtcnn SUBCOMMAND: MESSAGE (see mtcnn SUBCOMMAND --help)`."""
    name = command_name(ctx)
    command = f"{PROGRAM} {name}" if name else PROGRAM
    return f"{command}: {one_line(message)} (see {command} --help)"


def error_line(message: str) -> str:
    """`mtcnn: MESSAGE`."""
    return f"{PROGRAM}: {one_line(message)}"


class OneLineUsageError(click.UsageError):
    """A wrong command line, shown as usage_line(); exit status 2."""

    def show(self, file=None) -> None:
        click.echo(usage_line(self.format_message(), self.ctx), file=file, err=True)


def _one_line(error: click.UsageError) -> click.UsageError:
    """click's usage error as a OneLineUsageError; a bare group's help
    (NoArgsIsHelpError) stays as it is."""
    if isinstance(error, (OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return error
    return OneLineUsageError(error.format_message(), error.ctx)


class _OneLineUsage:
    """Mixin for click commands and groups: usage errors raised while parsing
    the command line become OneLineUsageErrors."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from None


class Command(_OneLineUsage, click.Command):
    """A click command whose usage errors are one line (see the module)."""


class Group(_OneLineUsage, click.Group):
    """A click group whose usage errors (its own options, an unknown
    subcommand) are one line; @group.command() makes Commands."""
    command_class = Command

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            raise _one_line(e) from None


class Program(Group):
    """The `mtcnn` program: signals are handled from before the heavy imports
    (see base/signals.py), every interruption ends with `mtcnn: interrupted`
    and 128 + the signal, closed standard streams are reopened on /dev/null,
    and a reader that closes our stdout (`| head`) ends us quietly with 141."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # subcommands imported when run or listed, each from the module of this package of its
        # own name: a run builds its own options alone
        self.lazy_commands: set[str] = set()

    def list_commands(self, ctx):
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx, name):
        # an unknown name loads them all: click suggests the nearest among the loaded ones
        for wanted in {name} & self.lazy_commands or self.lazy_commands - set(self.commands):
            if wanted not in self.commands:
                self.add_command(getattr(importlib.import_module(f"{__package__}.{wanted}"), wanted))
        return super().get_command(ctx, name)

    def main(self, *args, **kwargs):
        with signals.program_signals():
            signals.reset()
            CLOSED_AT_START.clear()
            CLOSED_AT_START.update(reopen_closed_streams())
            return super().main(*args, **kwargs)

    def invoke(self, ctx):
        try:
            with signals.working():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            say("interrupted")
            raise click.exceptions.Exit(signals.exit_status()) from None
        except BrokenPipeError:
            silence_stdout()
            raise click.exceptions.Exit(exits.PIPE_CLOSED) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OSError as e:  # stdout or stderr on a full disk, an I/O error
            silence_stdout()
            say(f"cannot write: {e.strerror or e}")
            raise click.exceptions.Exit(1) from None
        except Exception as e:
            if stopped(e):  # a stop that a library wrapped while importing (RuntimeError, SystemError)
                say("interrupted")
                raise click.exceptions.Exit(signals.exit_status()) from None
            # a bug: still one line, never a traceback
            say(f"stopped by an unexpected error: {type(e).__name__}: {e}")
            raise click.exceptions.Exit(1) from None


def stopped(error: BaseException) -> bool:
    """Whether an exception is a Ctrl-C or SIGTERM that other code wrapped:
    Python's type creation turns one into a RuntimeError, compiled code into
    a SystemError, with the KeyboardInterrupt as its cause or context."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, KeyboardInterrupt):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def usage_error(message: str) -> NoReturn:
    """Stop the running command: its command line is wrong (exit status 2)."""
    raise OneLineUsageError(message, click.get_current_context(silent=True))


def say(message: str) -> None:
    """One `mtcnn: MESSAGE` line on stderr (nothing when stderr is gone)."""
    try:
        click.echo(error_line(message), err=True)
    except OSError:
        pass


def fail(message, status: int = exits.USAGE) -> NoReturn:
    """Stop with `mtcnn: MESSAGE` on stderr (a file, folder or model that
    cannot be used; an interruption with status 130)."""
    say(str(message))
    raise click.exceptions.Exit(status)


def refuse_closed_stdout(output: str | None) -> None:
    """Exit 2 when stdout was closed at start and the output would go there."""
    if 1 in CLOSED_AT_START and output in STDOUT_NAMES:
        fail("stdout is closed: there is nowhere to write the output (give -o FILE)")
