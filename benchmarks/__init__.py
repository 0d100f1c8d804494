"""Measurements that are not tests (run as `python -m benchmarks.<name>`)."""
