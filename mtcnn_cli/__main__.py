"""`python -m mtcnn_cli`: the `mtcnn` command."""
from mtcnn_cli.cli import main

if __name__ == "__main__":
    main(prog_name="mtcnn")
