"""Speed and memory benchmarks: each ``python -m benchmarks.<name>`` prints ratios against a reference run in the
same process, ending with one JSON line of its figures."""
