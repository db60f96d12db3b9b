"""Benchmarks (`make bench`): figures printed beside their baseline from the same run."""
