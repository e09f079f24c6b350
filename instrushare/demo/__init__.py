"""``instrushare demo``: the whole platform on one machine with nothing to configure."""

from instrushare.demo.stack import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
