"""Why Optuna's pruner reaches the target a little sooner than Ray's rule (and ours).

Both keep the top 1/eta of a rung once it holds many values. They differ while
a rung holds few: Ray (and our ASHA, which takes Ray's decisions) compares a
trial with the (1 - 1/eta) quantile of the values the *other* trials recorded,
interpolated; Optuna keeps a trial only if it is among the top floor(n/eta) of
the n values *including its own*, and while n < eta only if it is the best so far.
This replays mfh6-moderate (ideal, 16 workers) and counts, per rung, how often
each method lets a trial continue, by how many values the rung already held.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from benchmarks.replay.grid import BENCHMARKS, POOL_SIZE
from benchmarks.replay.methods import Method, make_method
from benchmarks.replay.simulator import IDEAL, Simulation

BINS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (6, 9), (10, 29), (30, 10**9))
Tally = dict[tuple[str, int], list[int]]
"""(method, bin) -> [decisions, continued]."""


class CountingMethod:
    """Passes calls through and tallies each rung decision by the rung's size before it."""

    def __init__(self, inner: Method, tally: Tally) -> None:
        self.inner = inner
        self.name = inner.name
        self.tally = tally
        self.sizes: dict[int, int] = defaultdict(int)

    def milestones(self, trial: int) -> list[int]:
        return self.inner.milestones(trial)

    def start(self, trial: int) -> None:
        self.inner.start(trial)

    def observe(self, trial: int, step: int, value: float) -> bool:
        before = self.sizes[step]
        self.sizes[step] += 1
        stop = self.inner.observe(trial, step, value)
        b = next(i for i, (lo, hi) in enumerate(BINS) if lo <= before <= hi)
        entry = self.tally.setdefault((self.name, b), [0, 0])
        entry[0] += 1
        entry[1] += not stop
        return stop

    def complete(self, trial: int, step: int, value: float) -> None:
        self.inner.complete(trial, step, value)


def run(seeds: Iterable[int], benchmark: str = "mfh6-moderate") -> Tally:
    bench = BENCHMARKS[benchmark]
    source = bench.source()
    tally: Tally = {}
    for seed in seeds:
        pool = source.pool(seed, POOL_SIZE)
        for name in ("kubetune", "optuna"):
            method = CountingMethod(make_method(name, pool.mode, bench.asha), tally)
            Simulation(pool, method, 16, IDEAL, seed).run()
    return tally


def table(tally: Tally) -> str:
    lines = ["\n### Promotion rate by how many values the rung already held (mfh6-moderate, ideal, W = 16)\n",
             "| values already at the rung | decisions (kubetune / optuna) | continued: kubetune | continued: optuna |",
             "|---|---|---|---|"]
    for b, (lo, hi) in enumerate(BINS):
        ours = tally.get(("kubetune", b), [0, 0])
        theirs = tally.get(("optuna", b), [0, 0])
        if not ours[0] and not theirs[0]:
            continue
        label = str(lo) if lo == hi else (f"{lo}+" if hi > 10**6 else f"{lo}-{hi}")
        lines.append(f"| {label} | {ours[0]:,} / {theirs[0]:,} | "
                     f"{ours[1] / max(ours[0], 1):.0%} | {theirs[1] / max(theirs[0], 1):.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(run(range(30))))
