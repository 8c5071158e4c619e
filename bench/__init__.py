"""Penguin12 benchmarks: `make bench` (quick) and `make bench-full` (report). See bench/README.md."""
