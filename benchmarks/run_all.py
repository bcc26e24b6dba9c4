"""`python -m benchmarks.run_all`: rerun every benchmark behind benchmarks/RESULTS.md.

1. The replay benchmark (pure; about 15 minutes of one core):
   `python -m benchmarks.replay --seeds 30`.
2. The operator scale benchmark on the local control plane (about 25 minutes;
   needs the control plane binaries, `make binaries`, and Prometheus):
   `python -m benchmarks.scale` for the two scenarios of the issue, the first
   again under py-spy when it is on PATH, then settings this 2-core machine
   runs without saturating (SCALE_RUNS).

The digits curves are recorded once (`python -m benchmarks.record_digits_curves`)
and kept in benchmarks/data/; pass --record to record them again.
Figures and tables land in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import shutil
import time

from benchmarks import record_digits_curves
from benchmarks.replay.__main__ import main as replay_main
from benchmarks.scale.__main__ import main as scale_main

SCALE_RUNS: list[list[str]] = [
    ["--scenario", "single"],
    ["--scenario", "many"],
    # Settings this machine runs without saturating: fewer trial processes, fewer experiments.
    ["--scenario", "single", "--concurrency", "32", "--tag", "fits"],
    ["--scenario", "single", "--trials", "100", "--concurrency", "32", "--tag", "fits"],
    ["--scenario", "many", "--experiments", "10", "--tag", "fits"],
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record the digits curves again")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    if args.record or not record_digits_curves.DATA.exists():
        record_digits_curves.main([])
    if not args.skip_replay:
        replay_main(["--seeds", str(args.seeds)])
    if not args.skip_scale:
        runs = list(SCALE_RUNS)
        py_spy = shutil.which("py-spy")
        if py_spy:
            # The same 2,000 trials under py-spy: where the reconcile tick spends its time.
            runs.insert(2, ["--scenario", "single", "--tag", "profiled", "--py-spy", py_spy])
        else:
            print("py-spy is not on PATH: skipping the profiled run "
                  "(uv pip install --target /tmp/pyspy py-spy; PATH=/tmp/pyspy/bin:$PATH)")
        for run in runs:
            scale_main(run)
    print(f"all benchmarks: {time.time() - started:.0f}s; see benchmarks/results/")


if __name__ == "__main__":
    main()
