"""Benchmarks against what users would pick instead, and the data generators they share."""
