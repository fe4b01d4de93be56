"""Benchmarks: ``python -m benchmarks.<name>``; each writes one JSON under build/bench/."""
