"""Benchmarks that compare the SDK's backends with their peers in one run (``rationalize bench``)."""
