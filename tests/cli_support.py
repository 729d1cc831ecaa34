"""Checks shared by the CLI tests: every error is one line on stderr, in one of
the two forms of mtcnn_cli/cli/common.py, and nothing on stdout.

`result` is a click CliRunner result, or a finished subprocess (its stdout and
stderr bytes are decoded)."""
from __future__ import annotations


def _outcome(result) -> tuple[int, str, str]:
    if hasattr(result, "exit_code"):
        return result.exit_code, result.stdout, result.stderr
    out, err = result.stdout, result.stderr
    decode = (lambda data: data.decode("utf-8", "replace")) if isinstance(out, bytes) else str
    return result.returncode, decode(out), decode(err)


def _only_line(result, expected_status: int) -> str:
    status, stdout, stderr = _outcome(result)
    assert status == expected_status, (status, stdout, stderr)
    assert stdout == "", stdout
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def one_line_error(result, *fragments: str, status: int = 2) -> str:
    """`mtcnn: MESSAGE`, naming a file, folder or model and its problem:
    exit `status`, nothing on stdout. Returns the line."""
    line = _only_line(result, status)
    assert line.startswith("mtcnn: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def usage_error(result, command: str, *fragments: str) -> str:
    """`mtcnn COMMAND: MESSAGE (see mtcnn COMMAND --help)` (COMMAND '' for the
    program itself): exit 2, nothing on stdout. Returns the line."""
    line = _only_line(result, 2)
    prefix = f"mtcnn {command}" if command else "mtcnn"
    assert line.startswith(f"{prefix}: ") and line.endswith(f" (see {prefix} --help)"), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line
