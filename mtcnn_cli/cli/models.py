"""`mtcnn models` (being written)."""
import click


@click.command()
def models():
    """Not written yet."""
    raise click.UsageError("mtcnn models is not written yet")
