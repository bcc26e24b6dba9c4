"""kubetune's benchmarks: the scheduler replay benchmark and the operator scale benchmark.

`python -m benchmarks.run_all` reruns everything and rewrites benchmarks/results/.
"""
