"""Studies built from train/sample/metrics: each a function that returns a table and writes a report."""
