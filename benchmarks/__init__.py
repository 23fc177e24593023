"""Measured comparisons: each module is a program, python -m benchmarks.NAME."""
