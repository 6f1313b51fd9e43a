"""Benchmarks: ``python -m benchmarks.<name>``. Each prints a readable table and, as its last
stdout line, one JSON object of measured figures and ratios."""
