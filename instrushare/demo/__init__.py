"""``instrushare demo``: the whole platform on one machine with nothing to configure."""

from instrushare.demo.stack import DemoOptions, default_data_dir, run_demo

__all__ = ["DemoOptions", "default_data_dir", "run_demo"]
