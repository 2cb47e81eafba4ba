"""Benchmarks: this system against the ways people supervise OpenAI runs today (see bench/RESULTS.md)."""
