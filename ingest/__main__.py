"""``python -m ingest``: the same as ``instrushare ingest``."""

import logging

import typer

from ingest.cli import ingest

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    typer.run(ingest)
