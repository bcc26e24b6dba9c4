"""`python -m benchmarks.scale`: the operator at scale on the local control plane.

    python -m benchmarks.scale                       # both scenarios of the issue
    python -m benchmarks.scale --scenario single --trials 2000 --concurrency 50
    python -m benchmarks.scale --scenario huge --farm   # 10,000 trials, 500 running, farmed
    python -m benchmarks.scale --operator-root /tmp/kt-old ...  # another commit's operator
    python -m benchmarks.scale --report-only         # redraw from results/scale_*.json

Scenarios (each with a fresh operator process, in one cluster of 32 KWOK nodes
x 8 GPUs): `single`, one experiment of 2,000 trials with 200 running at once;
`many`, 50 experiments of 100 trials (4 running in each) created together;
`huge`, one experiment of 10,000 trials with 500 running (short curves: 9 steps
of 0.5 s; meant to run with --farm).
The cluster runs in its own state directory and is always torn down.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    experiments: int
    trials: int
    """Per experiment."""
    concurrency: int
    """Per experiment."""
    max_t: int = 27
    seconds_per_step: float = 1.0
    linger_seconds: float | None = 5.0
    """KUBETUNE_LINGER_SECONDS of every trial; None leaves the trial SDK's default."""
    farm: bool = False
    """Ask the dev cluster's runner to farm the simulated trials (no process each)."""


SCENARIOS = {
    "single": Scenario("single", experiments=1, trials=2000, concurrency=200),
    "many": Scenario("many", experiments=50, trials=100, concurrency=4),
    "huge": Scenario("huge", experiments=1, trials=10000, concurrency=500, max_t=9,
                     seconds_per_step=0.5),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="repeatable; default: single and many")
    parser.add_argument("--trials", type=int, help="override trials per experiment")
    parser.add_argument("--concurrency", type=int, help="override concurrency per experiment")
    parser.add_argument("--experiments", type=int, help="override the number of experiments")
    parser.add_argument("--seconds-per-step", type=float)
    parser.add_argument("--max-t", type=int)
    parser.add_argument("--linger", type=float, help="KUBETUNE_LINGER_SECONDS of the trials "
                        "(default 5; a negative value leaves the trial SDK's default)")
    parser.add_argument("--farm", action="store_true",
                        help="farm the simulated trials in the runner (no process per trial)")
    parser.add_argument("--operator-root", default="",
                        help="run the operator (and install the CRDs) of this checkout instead")
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--tick", type=float, default=2.0)
    parser.add_argument("--scrape-interval", default="1s")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per scenario")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "",
                        help="py-spy binary to profile the operator with (default: on PATH)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs of every component) after the run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from benchmarks.scale import report

    if args.report_only:
        report.write(args.out)
        return
    scenarios = []
    for name in args.scenario or ["single", "many"]:
        s = SCENARIOS[name]
        overrides = {k: v for k, v in {
            "trials": args.trials, "concurrency": args.concurrency,
            "experiments": args.experiments, "seconds_per_step": args.seconds_per_step,
            "max_t": args.max_t, "farm": args.farm or None}.items() if v is not None}
        if args.linger is not None:
            overrides["linger_seconds"] = args.linger if args.linger >= 0 else None
        scenarios.append(Scenario(**{**asdict(s), **overrides}))

    from benchmarks.scale.run import ClusterSettings, run_scenarios

    started = time.time()
    settings = ClusterSettings(nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                               tick=args.tick, scrape_interval=args.scrape_interval,
                               py_spy=args.py_spy, operator_root=args.operator_root)
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="kubetune-scale-", dir=base))
    try:
        for result in run_scenarios(scenarios, settings, work, args.timeout):
            s = result["scenario"]
            tag = f"-{args.tag}" if args.tag else ""
            name = (f"scale_{s['name']}_{s['experiments']}x{s['trials']}"
                    f"_c{s['concurrency']}{tag}.json")
            (args.out / name).write_text(json.dumps(result, indent=1))
            print(f"wrote {args.out / name}", flush=True)
    finally:
        if args.keep:
            print(f"kept the cluster's and operator's logs in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.write(args.out)
    sys.stdout.write((args.out / "scale_tables.md").read_text())
    print(f"scale benchmark: {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
