"""SQL for the heavier reads: status board, timelines, metrics."""
