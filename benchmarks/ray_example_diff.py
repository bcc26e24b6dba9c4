"""How far the seed's Ray Tune MNIST example is from running on kubetune: the changed lines.

    python -m benchmarks.ray_example_diff

Prints the unified diff between the seed's "Simple Code Example" (the Ray Tune method
document in the shared seeds) and examples/ray_mnist_function.py, then the number of
seed lines removed and example lines added (the goal: at most 5 changed lines).
tests/e2e/test_ray_example.py runs the example on the dev cluster.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, default=Path("/work/shared/seeds/ray-tune-method.md"))
    parser.add_argument("--example", type=Path,
                        default=REPO / "examples" / "ray_mnist_function.py")
    args = parser.parse_args()
    match = re.search(r"Simple Code Example.*?```python\n(.*?)```", args.seed.read_text(), re.S)
    if match is None:
        raise SystemExit(f"no Simple Code Example code block in {args.seed}")
    diff = list(difflib.unified_diff(match.group(1).splitlines(),
                                     args.example.read_text().splitlines(),
                                     "seed", "example", lineterm="", n=0))
    removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
    added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
    print("\n".join(diff))
    print(f"seed lines removed: {removed}, example lines added: {added}, "
          f"changed lines: {max(removed, added)} (goal: at most 5)")


if __name__ == "__main__":
    main()
