"""``python -m instrushare`` is the ``instrushare`` command."""

from instrushare.cli import app

app(prog_name="instrushare")
