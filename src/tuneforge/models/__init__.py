"""Model loading and the tiny real-architecture models used by tests and benchmarks."""
