"""mashr's small simulators (``R/simulations.R``, ``R/simulations_contrast.R``).

Same distributions, block layout, names and draw order as mashr 0.2.81, drawn with numpy
(R's exact numbers cannot be reproduced): each function takes ``seed`` (an int, a
``numpy.random.Generator`` or None) instead of R's global ``set.seed``.  Matrices are filled
column by column as R's ``matrix(rnorm(n * p), n, p)``.

* :func:`simple_sims` -- 4 x ``nsamp`` effects: null, independent N(0,1) per condition,
  condition-1-only, one value shared by all conditions.
* :func:`simple_sims2` -- 2 x ``nsamp`` effects: shared by conditions 1-2, shared by 3-5.
* :func:`sim_contrast1` -- a common baseline N(10, 1) in every condition (no true contrast).
* :func:`sim_contrast2` -- the baseline plus deviations in conditions 1..R-1 for 10% of rows.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._errors import MashInputError

__all__ = ["simple_sims", "simple_sims2", "sim_contrast1", "sim_contrast2"]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _count(x, name, minimum=1) -> int:
    if isinstance(x, bool) or not float(x).is_integer() or int(x) < minimum:
        raise MashInputError(f"{name}: must be an integer >= {minimum}, got {x!r}.")
    return int(x)


def _sd(x, name) -> float:
    x = float(x)
    if not np.isfinite(x) or x <= 0:
        raise MashInputError(f"{name}: must be a positive standard deviation, got {x!r}.")
    return x


def _norm(rng, n, p, sd=1.0) -> np.ndarray:
    """R's ``matrix(rnorm(n * p, sd = sd), n, p)``: filled column-major."""
    return (rng.standard_normal(n * p) * sd).reshape((n, p), order="F")


def _frames(truth, rng, err_sd, row_prefix, names):
    n, p = truth.shape
    rows = [f"{row_prefix}_{i + 1}" for i in range(n)]
    cols = [f"condition_{i + 1}" for i in range(p)]
    S = np.full((n, p), err_sd)
    E = _norm(rng, n, p, err_sd)              # errors drawn last, as R
    f = (lambda x: pd.DataFrame(x, index=rows, columns=cols))
    return {names[0]: f(truth), names[1]: f(truth + E), names[2]: f(S)}


def simple_sims(nsamp: int = 100, ncond: int = 5, err_sd: float = 0.01, seed=None) -> dict:
    """Simple simulation (mashr ``simple_sims``).

    ``B = rbind(B.zero, B.id, B.one, B.all)``, ``nsamp`` rows each: zero; independent
    :math:`N(0,1)` per cell; :math:`N(0,1)` in condition 1 only; one :math:`N(0,1)` value in
    every condition.  ``Shat = err_sd`` and :math:`\\hat B = B + N(0, \\mathrm{err\\_sd}^2)`.
    Draw order: B.id, b, b2, errors.

    Returns
    -------
    dict
        ``B``, ``Bhat``, ``Shat``: (4 nsamp) x ncond DataFrames, rows ``effect_i``, columns
        ``condition_r``.
    """
    n, p = _count(nsamp, "nsamp"), _count(ncond, "ncond")
    err_sd = _sd(err_sd, "err_sd")
    rng = _rng(seed)
    B_id = _norm(rng, n, p)
    b = rng.standard_normal(n)
    b2 = rng.standard_normal(n)
    B_one = np.zeros((n, p))
    B_one[:, 0] = b2
    B = np.vstack([np.zeros((n, p)), B_id, B_one, np.repeat(b[:, None], p, axis=1)])
    return _frames(B, rng, err_sd, "effect", ("B", "Bhat", "Shat"))


def simple_sims2(nsamp: int = 100, err_sd: float = 0.01, seed=None) -> dict:
    """Second simple simulation (mashr ``simple_sims2``), 5 conditions.

    ``B = rbind(B.1, B.2)``, ``nsamp`` rows each: ``(b1, b1, 0, 0, 0)`` and
    ``(0, 0, b2, b2, b2)`` with :math:`b1, b2 \\sim N(0,1)`.  Draw order: b1, b2, errors.

    Returns
    -------
    dict
        ``B``, ``Bhat``, ``Shat``: (2 nsamp) x 5 DataFrames.
    """
    n = _count(nsamp, "nsamp")
    err_sd = _sd(err_sd, "err_sd")
    rng = _rng(seed)
    b1 = rng.standard_normal(n)
    b2 = rng.standard_normal(n)
    B1 = np.zeros((n, 5))
    B1[:, 0:2] = b1[:, None]
    B2 = np.zeros((n, 5))
    B2[:, 2:5] = b2[:, None]
    return _frames(np.vstack([B1, B2]), rng, err_sd, "effect", ("B", "Bhat", "Shat"))


def sim_contrast1(nsamp: int = 100, ncond: int = 5, err_sd: float = math.sqrt(0.5),
                  seed=None) -> dict:
    """Contrast simulation without true deviations (mashr ``sim_contrast1``).

    ``C[j, ] = Cs[j]`` in every condition, :math:`Cs \\sim N(10, 1)`; ``Shat = err_sd``,
    :math:`\\hat C = C + N(0, \\mathrm{err\\_sd}^2)`.  Draw order: Cs, errors.

    Returns
    -------
    dict
        ``C``, ``Chat``, ``Shat``: nsamp x ncond DataFrames, rows ``sample_i``.
    """
    n, p = _count(nsamp, "nsamp"), _count(ncond, "ncond")
    err_sd = _sd(err_sd, "err_sd")
    rng = _rng(seed)
    Cs = 10.0 + rng.standard_normal(n)
    return _frames(np.repeat(Cs[:, None], p, axis=1), rng, err_sd, "sample",
                   ("C", "Chat", "Shat"))


def sim_contrast2(nsamp: int = 1000, ncond: int = 5, err_sd: float = math.sqrt(0.5),
                  seed=None) -> dict:
    """Contrast simulation with deviations from the last condition (mashr ``sim_contrast2``).

    ``C = Cs`` (:math:`N(10, 1)`) in every condition plus ``D`` in conditions ``1..ncond-1``
    (the last is the reference, deviation 0).  With ``nalt = ceiling(0.1 nsamp)`` the rows of
    D are: ``nsamp - nalt`` zero; ``floor(nalt/3)`` independent :math:`N(0,1)` per cell;
    ``floor(nalt/3)`` one :math:`N(0,1)` value in all ncond-1 columns; the rest
    :math:`N(0,1)` in column 1 only.  Draw order: Cs, D.id, d, d2, errors.

    Returns
    -------
    dict
        ``C``, ``Chat``, ``Shat``: nsamp x ncond DataFrames, rows ``sample_i``.
    """
    n, p = _count(nsamp, "nsamp"), _count(ncond, "ncond", 2)
    err_sd = _sd(err_sd, "err_sd")
    rng = _rng(seed)
    Cs = 10.0 + rng.standard_normal(n)
    C = np.repeat(Cs[:, None], p, axis=1)
    nalt = math.ceil(0.1 * n)
    nid = nall = nalt // 3
    none = nalt - nid - nall
    D_id = _norm(rng, nid, p - 1)
    d = rng.standard_normal(nall)
    d2 = rng.standard_normal(none)
    D_one = np.zeros((none, p - 1))
    D_one[:, 0] = d2
    Dm = np.vstack([np.zeros((n - nalt, p - 1)), D_id, np.repeat(d[:, None], p - 1, axis=1), D_one])
    C[:, :p - 1] += Dm
    return _frames(C, rng, err_sd, "sample", ("C", "Chat", "Shat"))
