r"""Initialisers for a new greedy factor: each maps a fit to a pair (l, f).

* :func:`flash_greedy_init_default` - flashier's alternating rank-one least
  squares on the residuals :math:`R = Z\circ(Y - \bar L\bar F^\top)`:

  .. math::

      \ell \leftarrow \frac{R f}{Z (f\circ f)},\qquad
      f \leftarrow \frac{R^\top \ell}{Z^\top(\ell\circ\ell)},

  with sign clamps for sign-constrained modes (updated last), until the largest
  change of the L2-normalised vectors is at most :math:`1/\max(n, p)` (at most
  100 sweeps); both vectors are then rescaled to the same norm
  :math:`\sqrt{\lVert\ell\rVert\lVert f\rVert}`. The random start
  :math:`\ell = \xi_n/\sqrt n`, :math:`f = \xi_p/\sqrt p` uses R's own stream
  after ``set.seed(666)`` (:mod:`._rrng`), so fits start where flashier's do.
* :func:`flash_greedy_init_softImpute` - mashr's ``cov_flash`` initialiser.
  flashier calls ``softImpute(residuals, rank.max = 1)`` (lambda = 0, ALS) after
  ``set.seed(666)``. With no missing data and lambda = 0, the rank-one ALS is a
  power iteration whose fixed point is the leading singular triplet
  :math:`(u, d, v)` of R, so we compute it directly with an SVD: the result is
  R's up to the sign of (u, v) and softImpute's stopping tolerance (1e-5
  relative change); the ELBO and every covariance built from the fit do not
  depend on that sign for sign-symmetric priors. The sign is normalised so
  that the largest-magnitude entry of v is positive. With missing data the same
  lambda = 0 ALS ("hard impute": fill missing cells with the current rank-one
  fit, take the leading SVD pair, repeat until the relative change of
  :math:`u d v^\top` is below 1e-5, at most 100 times) is run from the SVD of the
  zero-filled residuals. Returns :math:`(u\sqrt d, v\sqrt d)`.
* :func:`nonneg_init` - mashr's initialiser for ``cov_flash(factors="nonneg")``:
  the softImpute pair, negated when the negative mass of the factor exceeds its
  positive mass.
"""
from __future__ import annotations

import warnings

import numpy as np

from ._rrng import RRandom


def _l2n(v):
    nv = np.sqrt(np.sum(v * v))
    return v / (nv if nv != 0 else 1.0)


def flash_greedy_init_default(fit, sign_constraints=None, tol=None, maxiter=100, seed=666):
    """flashier's default greedy initialiser (alternating least squares)."""
    n, p = fit.dims
    signs = [0, 0] if sign_constraints is None else list(sign_constraints)
    if tol is None:
        tol = 1.0 / max(n, p)
    rng = RRandom(seed)
    EF = [rng.norm(n) / np.sqrt(n), rng.norm(p) / np.sqrt(p)]
    for m in (0, 1):
        if signs[m] == 1:
            EF[m] = np.abs(EF[m])
        elif signs[m] == -1:
            EF[m] = -np.abs(EF[m])
    order = [m for m in (0, 1) if signs[m] == 0] + [m for m in (0, 1) if signs[m] != 0]
    R = fit.R
    Z = fit.Z
    chg, it = np.inf, 0
    while chg > tol and it < maxiter:
        it += 1
        old = [EF[0], EF[1]]
        for m in order:
            other = EF[1 - m]
            if m == 0:
                num = R @ other
                den = (other * other).sum() if Z is None else Z @ (other * other)
            else:
                num = R.T @ other
                den = (other * other).sum() if Z is None else Z.T @ (other * other)
            with np.errstate(invalid="ignore", divide="ignore"):
                new = num / den
            new = np.where(np.isnan(new), 0.0, new)
            if signs[m] == 1:
                new = np.maximum(new, 0.0)
            elif signs[m] == -1:
                new = np.minimum(new, 0.0)
            EF[m] = new
        chg = max(np.max(np.abs(_l2n(EF[0]) - _l2n(old[0]))), np.max(np.abs(_l2n(EF[1]) - _l2n(old[1]))))
    return _scale_ef(EF)


def _scale_ef(EF):
    norms = [np.sqrt(np.sum(e * e)) for e in EF]
    if all(nm > 0 for nm in norms):
        c = np.sqrt(norms[0] * norms[1])
        return [EF[0] / norms[0] * c, EF[1] / norms[1] * c]
    warnings.warn("Fitting stopped after the initialization function failed to find a non-zero factor.",
                  stacklevel=3)
    return [EF[0] * 0.0, EF[1] * 0.0]


def _leading_svd(X):
    """Leading singular triplet (u, d, v) of X, v's largest-magnitude entry positive.

    Computed from the eigen-decomposition of the smaller Gram matrix
    (:math:`X^\top X` or :math:`X X^\top`), then the other vector as
    :math:`Xv/d` (or :math:`X^\top u/d`): O(np min(n, p)) instead of a full SVD.
    """
    n, p = X.shape
    if p <= n:
        w, V = np.linalg.eigh(X.T @ X)
        v = V[:, -1]
        d = np.sqrt(max(w[-1], 0.0))
        u = X @ v / d if d > 0 else np.zeros(n)
    else:
        w, U = np.linalg.eigh(X @ X.T)
        u = U[:, -1]
        d = np.sqrt(max(w[-1], 0.0))
        v = X.T @ u / d if d > 0 else np.zeros(p)
    if v[np.argmax(np.abs(v))] < 0:
        u, v = -u, -v
    return u, d, v


def flash_greedy_init_softImpute(fit, thresh=1e-5, maxit=100):
    """Rank-one softImpute (lambda = 0) of the residuals, done deterministically by SVD."""
    R = fit.R
    u, d, v = _leading_svd(R)
    if fit.Z is not None:
        miss = fit.Z == 0
        fit_old = d * np.outer(u, v)
        for _ in range(maxit):
            X = np.where(miss, fit_old, R)
            u, d, v = _leading_svd(X)
            fit_new = d * np.outer(u, v)
            ratio = np.sum((fit_new - fit_old) ** 2) / max(np.sum(fit_old ** 2), 1e-300)
            fit_old = fit_new
            if ratio < thresh:
                break
    if not np.isfinite(d) or d <= 0:
        return [np.zeros_like(u), np.zeros_like(v)]
    return [u * np.sqrt(d), v * np.sqrt(d)]


def nonneg_init(fit):
    """mashr's ``nonneg_init``: softImpute pair, sign-flipped towards positive factor mass."""
    l, f = flash_greedy_init_softImpute(fit)
    pos = f[f > 0].sum()
    neg = -f[f < 0].sum()
    if neg > pos:
        return [-l, -f]
    return [l, f]
