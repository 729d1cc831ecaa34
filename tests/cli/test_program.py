"""One error style for every `mtcnn` command (mtcnn_cli/cli/common.py): a
wrong command line is `mtcnn COMMAND: MESSAGE (see mtcnn COMMAND --help)`, a
file or model that cannot be used is `mtcnn: MESSAGE`; always one line on
stderr, exit status 2, nothing on stdout."""
import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main
from mtcnn_cli.base.text import seconds_text

from ..cli_support import one_line_error, usage_error


def invoke(*args, prog_name="mtcnn"):
    return CliRunner().invoke(main, [str(arg) for arg in args], prog_name=prog_name)


@pytest.mark.parametrize("args,command,fragment", [
    (["nosuch"], "", "No such command 'nosuch'"),
    (["--frob"], "", "No such option '--frob'"),
    (["detect", "--frob"], "detect", "No such option '--frob'"),
    (["detect", "x.jpg", "--t1", "2"], "detect", "'--t1'"),
    (["detect", "x.jpg", "-q", "-v"], "detect", "exclude each other"),
    (["detect"], "detect", "no PATH given"),
    (["compare"], "compare", "Missing option '--cpp'"),
    (["compare", "--cpp", "r.json", "--jobs", "-2"], "compare", "'--jobs'"),
    (["models", "frob"], "models", "No such command 'frob'"),
    (["models", "export"], "models export", "Missing argument 'DIR'"),
    (["models", "info", "--frob"], "models info", "No such option '--frob'"),
])
def test_command_line_errors_name_the_command_and_its_help(args, command, fragment, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(invoke(*args), command, fragment)
    assert list(tmp_path.iterdir()) == []


def test_the_command_is_named_whatever_the_program_is_called():
    usage_error(invoke("models", "export", prog_name="python -m mtcnn_cli"), "models export")


@pytest.mark.parametrize("args,fragment", [
    (["detect", "x.jpg", "--models", "nowhere"], "cannot load the models: nowhere"),
    (["compare", "--cpp", "nothing.json"], "nothing.json"),
    (["models", "info", "nowhere"], "nowhere: no such model folder"),
])
def test_unusable_files_are_one_line_naming_them(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(invoke(*args), fragment)
    assert "(see " not in line


def test_a_bare_group_shows_its_help():
    result = invoke("models")
    assert "Usage: mtcnn models" in result.output and "export" in result.output


@pytest.mark.parametrize("seconds,text", [
    (0.0, "0.000 s"), (0.0042, "0.004 s"), (0.04, "0.04 s"), (0.4249, "0.42 s"), (4.2, "4.20 s"),
    (42.04, "42.0 s"), (3725.0, "3725.0 s"),
])
def test_seconds_are_shown_to_a_useful_precision(seconds, text):
    assert seconds_text(seconds) == text
