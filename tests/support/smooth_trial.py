"""A trial whose learning curve's ceiling depends smoothly on its config: 1 - (x - 0.75)^2.

Config keys: x (the searched parameter, in [0, 1]), steps, sleep (seconds per step).
The curve rises as scripted_trial's does, so ASHA's rungs rank trials by their x.
"""

from __future__ import annotations

import time

from kubetune import trial

OPTIMUM = 0.75


def quality(x: float) -> float:
    return 1.0 - (x - OPTIMUM) ** 2


def main() -> None:
    cfg = trial.config()
    ceiling = quality(float(cfg["x"]))
    for step in range(1, int(cfg.get("steps", 9)) + 1):
        time.sleep(float(cfg.get("sleep", 0.2)))
        trial.report(step=step, accuracy=ceiling * (1.0 - 0.5**step))


if __name__ == "__main__":
    main()
