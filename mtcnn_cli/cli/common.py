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

import math
import os
import re
import sys
from typing import NoReturn

import click

from ..run import interrupt

PROGRAM = "mtcnn"
CONTEXT = {"help_option_names": ["-h", "--help"]}
EXIT_USAGE = 2


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


CLOSED_AT_START: set = set()  # which of stdin (0), stdout (1), stderr (2) the program found closed
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what `cmd | head` gives for cmd, quietly


def reopen_closed_streams() -> set:
    """Point fds 0, 1 and 2 at /dev/null when the program was started with
    them closed (`>&-`, `2>&-`), so that no file we open takes their place and
    receives messages or data. Returns the fds that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 1 in closed:
        sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)
    if 2 in closed:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    return closed


STDOUT_NAMES = (None, "-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # -o values that are stdout


def refuse_closed_stdout(output: str | None) -> None:
    """Exit 2 when stdout was closed at start and the output would go there."""
    if 1 in CLOSED_AT_START and output in STDOUT_NAMES:
        fail("stdout is closed: there is nowhere to write the output (give -o FILE)")


def silence_stdout() -> None:
    """After stdout failed (a closed pipe, a full disk), point it at /dev/null
    so that the interpreter's final flush does not complain."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except (OSError, ValueError):
        pass


class Program(Group):
    """The `mtcnn` program: signals are handled from before the heavy imports
    (see run/interrupt.py), every interruption ends with `mtcnn: interrupted`
    and 128 + the signal, closed standard streams are reopened on /dev/null,
    and a reader that closes our stdout (`| head`) ends us quietly with 141."""

    def main(self, *args, **kwargs):
        with interrupt.program_signals():
            interrupt.reset()
            CLOSED_AT_START.clear()
            CLOSED_AT_START.update(reopen_closed_streams())
            return super().main(*args, **kwargs)

    def invoke(self, ctx):
        try:
            with interrupt.working():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            say("interrupted")
            raise click.exceptions.Exit(interrupt.exit_status()) from None
        except BrokenPipeError:
            silence_stdout()
            raise click.exceptions.Exit(EXIT_PIPE_CLOSED) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OSError as e:  # stdout or stderr on a full disk, an I/O error
            silence_stdout()
            say(f"cannot write: {e.strerror or e}")
            raise click.exceptions.Exit(1) from None
        except Exception as e:  # a bug: still one line, never a traceback
            say(f"stopped by an unexpected error: {type(e).__name__}: {e}")
            raise click.exceptions.Exit(1) from None


def usage_error(message: str) -> NoReturn:
    """Stop the running command: its command line is wrong (exit status 2)."""
    raise OneLineUsageError(message, click.get_current_context(silent=True))


def say(message: str) -> None:
    """One `mtcnn: MESSAGE` line on stderr (nothing when stderr is gone)."""
    try:
        click.echo(error_line(message), err=True)
    except OSError:
        pass


def fail(message, status: int = EXIT_USAGE) -> NoReturn:
    """Stop with `mtcnn: MESSAGE` on stderr (a file, folder or model that
    cannot be used; an interruption with status 130)."""
    say(str(message))
    raise click.exceptions.Exit(status)


class Threshold(click.ParamType):
    """A score threshold: a number in [0, 1] (NaN refused); shown alike in
    every command."""
    name = "FLOAT"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            self.fail(f"{value} is not in [0, 1]", param, ctx)
        return number


_PIXELS = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


class PixelCount(click.ParamType):
    """A positive whole number of pixels: 1000000, 1e6, 1M, 2.5k (K, M, G:
    thousand, million, billion)."""
    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            found = _PIXELS.fullmatch(str(value))
            if not found:
                self.fail(f"{value!r} is not a pixel count (e.g. 1000000, 1e6, 10M)", param, ctx)
            from fractions import Fraction

            exact = Fraction(found.group(1)) * _SCALE[found.group(2).lower()]
            if exact.denominator != 1:
                self.fail(f"{value} is not a whole number of pixels", param, ctx)
            number = int(exact)
        if number < 1:
            self.fail(f"{value} is not at least 1", param, ctx)
        return number
