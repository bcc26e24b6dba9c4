"""A trial that reports a scripted learning curve through kubetune.trial.

Config keys: quality (the curve's ceiling), steps, sleep (seconds per step),
fail_attempts (attempts that exit 3 before reporting anything), nan_from (a step
from which the metric is NaN).
"""

from __future__ import annotations

import os
import sys
import time

from kubetune import trial


def curve(quality: float, step: int) -> float:
    return quality * (1.0 - 0.5**step)


def main() -> None:
    cfg = trial.config()
    cfg = {**cfg, **cfg.get("case", {})}
    attempt = int(os.environ.get("KUBETUNE_ATTEMPT", "1"))
    if attempt <= int(cfg.get("fail_attempts", 0)):
        print(f"scripted failure on attempt {attempt}", flush=True)
        sys.exit(3)
    steps = int(cfg.get("steps", 9))
    sleep = float(cfg.get("sleep", 0.2))
    quality = float(cfg["quality"])
    nan_from = int(cfg.get("nan_from", 0))
    checkpoint = trial.get_checkpoint()
    start = checkpoint.step + 1 if checkpoint else 1
    for step in range(start, steps + 1):
        time.sleep(sleep)
        value = float("nan") if nan_from and step >= nan_from else curve(quality, step)
        trial.report(step=step, accuracy=value, loss=1.0 - value)
        with trial.save_checkpoint(step=step):
            pass


if __name__ == "__main__":
    main()
