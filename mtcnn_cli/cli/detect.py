"""`mtcnn detect` (being written)."""
import click


@click.command()
def detect():
    """Not written yet."""
    raise click.UsageError("mtcnn detect is not written yet")
