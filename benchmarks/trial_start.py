"""Where a trial program's start goes: CPU-seconds of each step from `python -c pass` to the
reference trainer's simulated mode for one step, on this machine, without a cluster.

    .venv/bin/python -m benchmarks.trial_start --runs 20

Runs each command `--runs` times, one after the other, in a fresh interpreter (this one's
`sys.executable`) in an empty directory, and reads the child's user + system CPU from
`getrusage(RUSAGE_CHILDREN)`. Prints the median CPU and wall time of each, and what each
adds to the one before it. Per-trial orchestration (RESULTS.md 7) is CPU-bound on a
small machine, so the trainer floor's distance from `python -c pass` is this program's
start: the table says which import it is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

STEPS: tuple[tuple[str, list[str]], ...] = (
    ("python -c pass", ["-c", "pass"]),
    ("import prometheus_client", ["-c", "import prometheus_client"]),
    ("import kubetune.trial", ["-c", "import kubetune.trial"]),
    ("import the trainer", ["-c", "import kubetune_trainer.__main__, kubetune_trainer.simulated"]),
    ("trainer, simulated, 1 step", ["-m", "kubetune_trainer", "--dataset", "simulated",
                                    "--epochs", "1", "--seconds-per-step", "0",
                                    "--log-level", "WARNING"]),
)


def cpu_of(args: list[str], cwd: str) -> tuple[float, float]:
    """CPU-seconds (user + system) and wall seconds of one run of `python args`."""
    env = {**os.environ, "KUBETUNE_METRICS_PORT": "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubetune-trial-start-") as cwd:
        for name, step in STEPS:
            cpu_of(step, cwd)  # compiled bytecode and page cache warm, as in a running image
            runs = [cpu_of(step, cwd) for _ in range(args.runs)]
            rows.append({"step": name, "cpu_s": statistics.median(c for c, _ in runs),
                         "wall_s": statistics.median(w for _, w in runs), "runs": args.runs})
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| step | CPU (median) | wall (median) | CPU added to the row above |")
    print("|---|---|---|---|")
    previous = None
    for row in rows:
        added = "-" if previous is None else f"{row['cpu_s'] - previous:+.3f} s"
        print(f"| {row['step']} | {row['cpu_s']:.3f} s | {row['wall_s']:.3f} s | {added} |")
        previous = row["cpu_s"]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
