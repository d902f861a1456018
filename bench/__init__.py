"""Benchmarks of issue 6: each figure next to its physical baseline, measured in one run."""
