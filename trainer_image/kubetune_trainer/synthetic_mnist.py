"""Writes a small, learnable MNIST look-alike in the raw IDX layout torchvision reads.

torchvision cannot download MNIST without the internet, so tests (and offline
smoke runs in a cluster) train on these files through the real
`torchvision.datasets.MNIST` loader instead. Each class is a fixed pattern of
strokes; samples shift it, vary its brightness, blend in a little of another
class and add noise, so that an MLP needs a few epochs to learn it, not one step.

    python -m kubetune_trainer.synthetic_mnist /data --train 6000 --test 1000
"""

from __future__ import annotations

import argparse
import logging
import struct
from pathlib import Path

import numpy as np

logger = logging.getLogger("kubetune_trainer")

SIDE = 28
CLASSES = 10
_TEMPLATE_SEED = 20240611  # the class patterns are the same for every seed and split
_IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def class_templates() -> np.ndarray:
    """Ten 28x28 float patterns in [0, 1], three random strokes each."""
    rng = np.random.default_rng(_TEMPLATE_SEED)
    templates = np.zeros((CLASSES, SIDE, SIDE), dtype=np.float32)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    for digit in range(CLASSES):
        for _ in range(3):
            (y0, x0), (y1, x1) = rng.uniform(5, SIDE - 5, size=(2, 2))
            length = max(np.hypot(y1 - y0, x1 - x0), 1e-6)
            t = np.clip(((ys - y0) * (y1 - y0) + (xs - x0) * (x1 - x0)) / length**2, 0.0, 1.0)
            distance = np.hypot(ys - (y0 + t * (y1 - y0)), xs - (x0 + t * (x1 - x0)))
            templates[digit] = np.maximum(templates[digit], np.exp(-(distance**2) / 2.0))
    return templates


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images (n, 28, 28) and their labels, balanced over the ten classes."""
    rng = np.random.default_rng(seed)
    templates = class_templates()
    labels = (np.arange(n) % CLASSES).astype(np.uint8)
    rng.shuffle(labels)
    images = np.empty((n, SIDE, SIDE), dtype=np.float32)
    for i, label in enumerate(labels):
        shift = rng.integers(-2, 3, size=2)
        image = np.roll(templates[label], tuple(shift), axis=(0, 1)) * rng.uniform(0.6, 1.0)
        other = (label + rng.integers(1, CLASSES)) % CLASSES
        image += 0.35 * np.roll(templates[other], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        image += rng.normal(0.0, 0.25, size=(SIDE, SIDE))
        images[i] = image
    return (np.clip(images, 0.0, 1.0) * 255).astype(np.uint8), labels


def write_idx_mnist(root: Path | str, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; return root."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, split_seed in (("train", n_train, seed), ("t10k", n_test, seed + 1_000_003)):
        images, labels = make_images(n, split_seed)
        _write_idx(raw / f"{split}-images-idx3-ubyte", _IMAGE_MAGIC, images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", _LABEL_MAGIC, labels)
    logger.info("wrote %d training and %d test images under %s", n_train, n_test, raw)
    return Path(root)


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", type=Path, help="directory to pass as --data-dir")
    parser.add_argument("--train", type=int, default=6000, help="training images")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_idx_mnist(args.root, args.train, args.test, args.seed)


if __name__ == "__main__":
    main()
