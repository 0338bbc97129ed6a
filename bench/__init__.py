"""Benchmarks: `make bench`. Each measures the system against a baseline in the same run."""
