"""The multi-fidelity Hartmann functions MFHartmann3 and MFHartmann6.

Written from the definition in mf-prior-bench (automl/mf-prior-bench,
`src/mfpbench/synthetic/hartmann/generators.py` and `benchmark.py`), which
extends the Hartmann functions with fidelity as in Kandasamy et al.,
"Multi-fidelity Bayesian optimisation with continuous approximations"
(ICML 2017, arXiv 1703.06240). The package itself is not installable here.

For fidelity z in [1, z_max], with s = log(z) / log(z_max):

    f(x, z) = -sum_i alpha'_i exp(-sum_j A_ij (x_j - P_ij)^2) + |eps| * noise * (1 - s)
    alpha'  = alpha - bias * (1 - s),   eps ~ N(0, 1)

At z_max the function is the plain Hartmann function (minimise; global minimum
-3.86278 for 3 dimensions at `OPTIMUM3`, -3.32237 for 6 at `OPTIMUM6`). Lower
fidelities are flattened by the bias and perturbed by noise, both shrinking
as z grows. mf-prior-bench's presets (bias, noise): good (2.5, 2.0), moderate
(3.0, 3.0), bad (3.5, 4.0), terrible (4.0, 5.0).

Where we differ: mf-prior-bench seeds the noise from `hash(x) * z * seed`; we
draw it from the caller's generator, which has the same distribution and lets a
benchmark seed decide all noise at once. A curve is the function at
z = 1, 2, ..., z_max, one training step per fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

ALPHA = np.array([1.0, 1.2, 3.0, 3.2])

A3 = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
P3 = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
OPTIMUM3 = (0.114614, 0.555649, 0.852547)

A6 = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
P6 = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
OPTIMUM6 = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)

PRESETS: dict[str, tuple[float, float]] = {
    "good": (2.5, 2.0),
    "moderate": (3.0, 3.0),
    "bad": (3.5, 4.0),
    "terrible": (4.0, 5.0),
}


@dataclass(frozen=True)
class MFHartmann:
    """One MFHartmann function: its dimension, fidelity range and preset."""

    dims: int
    z_max: int
    bias: float
    noise: float

    @classmethod
    def preset(cls, dims: int, z_max: int, name: str) -> MFHartmann:
        if dims not in (3, 6):
            raise ValueError(f"MFHartmann has 3 or 6 dimensions (got {dims})")
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)} (got {name!r})")
        bias, noise = PRESETS[name]
        return cls(dims=dims, z_max=z_max, bias=bias, noise=noise)

    def _coefficients(self) -> tuple[Array, Array]:
        return (A3, P3) if self.dims == 3 else (A6, P6)

    def fidelity_scale(self, z: Array) -> Array:
        """s = log(z) / log(z_max): 0 at z=1, 1 at z_max."""
        return np.asarray(np.log(z) / np.log(self.z_max), dtype=float)

    def curves(self, x: Array, rng: np.random.Generator) -> Array:
        """f(x, z) for z = 1..z_max: one row per configuration in `x` (n x dims)."""
        a, p = self._coefficients()
        x = np.asarray(x, dtype=float)
        inner = np.sum(a[None, :, :] * (x[:, None, :] - p[None, :, :]) ** 2, axis=-1)
        bumps = np.exp(-inner)  # n x 4
        s = self.fidelity_scale(np.arange(1, self.z_max + 1, dtype=float))  # z_max
        alpha = ALPHA[None, :] - self.bias * (1.0 - s)[:, None]  # z_max x 4
        clean = -(bumps @ alpha.T)  # n x z_max
        eps = np.abs(rng.standard_normal(clean.shape))
        return np.asarray(clean + eps * self.noise * (1.0 - s)[None, :], dtype=float)

    def final(self, x: Array) -> Array:
        """f(x, z_max): the plain Hartmann function, noise-free."""
        a, p = self._coefficients()
        x = np.asarray(x, dtype=float)
        inner = np.sum(a[None, :, :] * (x[:, None, :] - p[None, :, :]) ** 2, axis=-1)
        return np.asarray(-(np.exp(-inner) @ ALPHA), dtype=float)
