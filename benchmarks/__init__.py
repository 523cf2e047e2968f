"""xent's benchmark suite: ``python -m benchmarks.run`` measures and writes ``benchmarks/RESULTS.md``."""
