"""A trial that reports a scripted learning curve through kubetune.trial.

Config keys: quality (the curve's ceiling), steps, sleep (seconds per step),
fail_attempts (attempts that exit 3 before reporting anything), nan_from (a step
from which the metric is NaN), loss_inf_from (a step from which the side metric
`loss` is +inf), silent_seconds (a wait before the first report), allocate_mb
(memory held from the start, to meet a memory limit), garbage_message (finish, so
that Prometheus has the final report, then overwrite the termination message with
text that does not parse).
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
    loss_inf_from = int(cfg.get("loss_inf_from", 0))
    held = bytearray(int(cfg.get("allocate_mb", 0)) * 2**20)
    for i in range(0, len(held), 4096):
        held[i] = 1  # touch every page, so it is resident
    time.sleep(float(cfg.get("silent_seconds", 0)))
    checkpoint = trial.get_checkpoint()
    start = checkpoint.step + 1 if checkpoint else 1
    for step in range(start, steps + 1):
        time.sleep(sleep)
        value = float("nan") if nan_from and step >= nan_from else curve(quality, step)
        loss = float("inf") if loss_inf_from and step >= loss_inf_from else 1.0 - value
        trial.report(step=step, accuracy=value, loss=loss)
        with trial.save_checkpoint(step=step):
            pass
    if cfg.get("garbage_message"):
        trial.finish()
        with open(os.environ["KUBETUNE_TERMINATION_LOG"], "w", encoding="utf-8") as log:
            log.write("{not a termination message")


if __name__ == "__main__":
    main()
