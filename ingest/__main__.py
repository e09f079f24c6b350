"""``python -m ingest``: the same as ``instrushare ingest``."""

import sys

from instrushare.cli import main

if __name__ == "__main__":
    main(prog_name="python -m", args=["ingest", *sys.argv[1:]])  # usage: python -m ingest
