"""The operator scale benchmark: the real operator on the local control plane.

KWOK nodes advertise `nvidia.com/gpu`, the local runner runs each trial pod as
a process of the simulated trainer (`python -m kubetune_trainer --dataset
simulated`), Prometheus scrapes the trials, and the operator runs as its own
process so its CPU time and memory can be read from /proc. `python -m
benchmarks.scale` runs the scenarios; observe.py holds the instruments.
"""
