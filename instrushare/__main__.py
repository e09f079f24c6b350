"""``python -m instrushare`` is the ``instrushare`` command."""

from instrushare.cli import main

main(prog_name="instrushare")
