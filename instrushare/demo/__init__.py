"""``instrushare demo``: the whole platform on one machine with nothing to configure."""

from instrushare.demo.stack import DemoOptions, default_data_dir, run_demo
from instrushare.errors import DemoError

__all__ = ["DemoError", "DemoOptions", "default_data_dir", "run_demo"]
