"""device_sim package."""
