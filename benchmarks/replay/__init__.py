"""The scheduler replay benchmark: ASHA against Ray Tune, Optuna and random search.

Every method sees the same learning curves and the same stream of sampled
configurations (common random numbers per seed) in a discrete-event simulation
of W workers, in an ideal setting (every step seen at once) and a realistic
one (metrics seen through Prometheus scrapes and operator ticks, pods that take
time to start and to stop). `python -m benchmarks.replay` runs the grid.

Modules: mfhartmann (the synthetic benchmark), curves (curve sets), methods
(the four adapters), simulator (the event loop), grid/report (the runs, the
figures and the tables).

Model-based search (`python -m benchmarks.replay.search_grid`): problems (the
curve behind any configuration of a search space), searchers (TPE + ASHA as
kubetune, Ray and Optuna run it, random + ASHA, and the simulation in which
the method chooses each configuration), search_grid/search_report (the runs
and the tables).
"""
