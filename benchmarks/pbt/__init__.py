"""The PBT benchmark: a trial whose best learning rate changes as it trains.

`python -m benchmarks.pbt` runs Population Based Training, random search and
ASHA on the problem of Ray's python/ray/tune/examples/pbt_function.py (problem.py,
written from its definition) at equal GPU-time, over 30 seeds, and prints the
solved rate and the iterations to solve (simulate.py, report in __main__.py).
"""
