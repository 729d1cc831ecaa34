"""`mtcnn compare` (being written)."""
import click


@click.command()
def compare():
    """Not written yet."""
    raise click.UsageError("mtcnn compare is not written yet")
