"""Benchmarks of the hot path, each printing ratios against a baseline run beside it."""
