"""Residual (null) correlation estimators (mashr ``R/est_cor.R``; protocol map §1.5-1.7).

* :func:`estimate_null_correlation_simple`: correlation of the z-scores of "null-ish"
  effects (``max_r |z_jr| < z_thresh``).
* :func:`mash_estimate_corr_em`: EM over V (map §2.2 "Residual correlation"), refitting
  mash at each step and keeping the previous V when the log-likelihood drops (P11, P21).
* Protocol wrappers :func:`vhat_identity`, :func:`vhat_simple`, :func:`vhat_mle` return an
  R x R DataFrame labelled by conditions, with the number of rows used in
  ``.attrs["n_rows_used"]`` (also logged at INFO level).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .._errors import MashInputError
from ..model import MashData, mash_set_data, mash_update_data

__all__ = ["estimate_null_correlation_simple", "mash_estimate_corr_em", "E_V", "vhat_identity",
           "vhat_simple", "vhat_mle", "cov2cor"]

log = logging.getLogger(__name__)


def cov2cor(V) -> np.ndarray:
    """R ``cov2cor``: ``D^{-1/2} V D^{-1/2}`` with unit diagonal set exactly."""
    V = np.asarray(V, float)
    d = 1 / np.sqrt(np.diag(V))
    C = d[:, None] * V * d[None, :]
    np.fill_diagonal(C, 1.0)
    return C


def _labelled(V, data: MashData) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(V, float), index=list(data.conditions),
                        columns=list(data.conditions))


def estimate_null_correlation_simple(data: MashData, z_thresh: float = 2,
                                     est_cor: bool = True) -> pd.DataFrame:
    """Null correlation from effects with small z-scores (mashr ``estimate_null_correlation_simple``).

    With ``z = Bhat / Shat`` (transformed scale), keep rows with ``max_r |z_jr| < z_thresh``
    (strict) and return ``cov2cor(cov(z_kept))`` (``n - 1`` denominator), or the covariance
    when ``est_cor=False``.

    Returns
    -------
    DataFrame (R x R) labelled by conditions; ``.attrs["n_rows_used"]`` = rows kept.

    Raises
    ------
    MashInputError
        "not enough null data" when fewer than R rows qualify (P14).
    """
    z = data.Bhat / data.Shat
    keep = np.abs(z).max(axis=1) < z_thresh
    n = int(keep.sum())
    R = data.n_conditions
    if n < R:
        raise MashInputError(
            f"data: not enough null data to estimate null correlation: only {n} of "
            f"{data.n_effects} effects have max |z| < {z_thresh}, need at least R = {R}. Use "
            "more null effects, a larger z_thresh, or vhat_identity (V = I).")
    V = np.cov(z[keep], rowvar=False)
    if est_cor:
        V = cov2cor(V)
    out = _labelled(V, data)
    out.attrs["n_rows_used"] = n
    return out


def E_V(data: MashData, m) -> np.ndarray:
    """EM update of V (before division by J), mashr ``E_V``.

    With ``Z = Bhat/Shat`` and ``S = Shat * Shat_alpha`` (original scale),
    ``m~_j = PM_j / S_j`` and ``E~_j = diag(1/S_j) PC_j diag(1/S_j) + m~_j m~_j^T``:
    ``V = Z^T Z - (m~^T Z + Z^T m~) + sum_j E~_j``, symmetrised.
    """
    Z = data.Bhat / data.Shat
    S = data.Shat * data.Shat_alpha
    pm = np.asarray(m.result["PosteriorMean"], float) / S
    PC = np.asarray(m.result["PosteriorCov"], float)            # (J, R, R)
    E2 = np.einsum("jab,ja,jb->ab", PC, 1 / S, 1 / S) + pm.T @ pm
    V = Z.T @ Z - (pm.T @ Z + Z.T @ pm) + E2
    return (V + V.T) / 2


def _fit_V(data, Ulist, V, prior, **kw):
    from ..model import mash
    return mash(mash_update_data(data, V=V), Ulist, prior=prior, verbose=False, outputlevel=3, **kw)


def mash_estimate_corr_em(data: MashData, Ulist, init=None, max_iter: int = 30, tol: float = 1,
                          est_cor: bool = True, track_fit: bool = False, prior: str = "nullbiased",
                          details: bool = True, **mash_kwargs):
    """Estimate the residual correlation V by EM (mashr ``mash_estimate_corr_em``).

    Starting from ``init`` (default :func:`estimate_null_correlation_simple`, falling back to
    I with a warning), alternate ``V <- E_V(data, m) / J`` (``cov2cor`` when ``est_cor``) and
    a mash refit.  Stops when the log-likelihood decreases (keeping the previous V and
    model) or increases by at most ``tol``; on the tol-stop ``niter`` is incremented once
    more, as in R (so ``loglik`` has ``niter`` entries, P21).

    Returns
    -------
    dict with ``V`` (DataFrame), ``mash_model``, ``loglik`` (ndarray), ``niter`` (and
    ``trace`` when ``track_fit``); or only ``V`` when ``details=False``.
    """
    if getattr(data, "L", None) is not None:
        raise MashInputError("data: the null correlation cannot be estimated from contrast data "
                             "(mash_update_data(ref=...)); estimate V on the original data.")
    if init is None:
        try:
            init = np.asarray(estimate_null_correlation_simple(data, est_cor=est_cor))
        except MashInputError:
            warnings.warn("Use Identity matrix as the initialize null correlation.", stacklevel=2)
            init = np.eye(data.n_conditions)
    init = np.asarray(init, float)
    J = data.n_effects
    m = _fit_V(data, Ulist, init, prior, **mash_kwargs)
    ll = [m.loglik]
    result = {"V": init, "mash_model": m}
    tracking = []
    niter = 0
    while niter < max_iter:
        niter += 1
        if track_fit:
            tracking.append(result)
        V = E_V(data, m) / J
        if est_cor:
            V = cov2cor(V)
        m = _fit_V(data, Ulist, V, prior, **mash_kwargs)
        ll.append(m.loglik)
        delta = ll[niter] - ll[niter - 1]
        if delta < 0:
            break
        result = {"V": V, "mash_model": m}
        if delta <= tol:
            niter += 1
            break
    result = dict(result)
    result["V"] = _labelled(result["V"], data)
    result["loglik"] = np.asarray(ll[:niter] if niter > 0 else [], float)
    # R: log_liks[1:niter] with niter = 0 gives log_liks[1] (R's 1:0 = c(1, 0))
    if niter == 0:
        result["loglik"] = np.asarray(ll[:1], float)
    result["niter"] = niter
    if track_fit:
        result["trace"] = tracking
    return result if details else result["V"]


def vhat_identity(data_or_R) -> pd.DataFrame:
    """Protocol ``vhat_identity``: the R x R identity labelled by conditions.

    ``data_or_R``: a MashData, a J x R DataFrame/array (its columns), or the integer R.
    """
    if isinstance(data_or_R, MashData):
        names = list(data_or_R.conditions)
    elif isinstance(data_or_R, pd.DataFrame):
        names = [str(c) for c in data_or_R.columns]
    elif isinstance(data_or_R, (int, np.integer)):
        names = [str(i + 1) for i in range(int(data_or_R))]
    else:
        names = [str(i + 1) for i in range(np.asarray(data_or_R).shape[1])]
    out = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    out.attrs["n_rows_used"] = 0
    return out


def vhat_simple(null_data, null_s=None, alpha: float = 0, z_thresh: float = 2) -> pd.DataFrame:
    """Protocol ``vhat_simple``: :func:`estimate_null_correlation_simple` on the null set.

    ``null_data`` is a MashData, or the null ``b`` matrix with ``null_s`` its SEs (then the
    data are built with ``zero_Bhat_Shat_reset=1000`` as pecotmr).  Logs the number of null
    rows used (``.attrs["n_rows_used"]``).
    """
    d = null_data if isinstance(null_data, MashData) else mash_set_data(
        null_data, null_s, alpha=alpha, zero_Bhat_Shat_reset=1000)
    V = estimate_null_correlation_simple(d, z_thresh=z_thresh)
    log.info("vhat_simple: %d of %d null rows used (max |z| < %g)", V.attrs["n_rows_used"],
             d.n_effects, z_thresh)
    return V


def vhat_mle(random_b, random_s, U, alpha: float = 0, n_subset: int = 6000, max_iter: int = 6,
             seed: int = 999) -> pd.DataFrame:
    """Protocol ``vhat_mle``: EM estimate of V on (a subset of) the random set.

    Uses all rows when ``J <= n_subset`` (then the result does not depend on the seed);
    otherwise a numpy-``seed``ed random subset of ``n_subset`` rows (R's ``sample`` stream
    cannot be reproduced, P20).  Runs :func:`mash_estimate_corr_em` with ``max_iter``.
    ``.attrs`` holds ``n_rows_used``, ``niter`` and ``loglik``.
    """
    d = mash_set_data(random_b, random_s, alpha=alpha, zero_Bhat_Shat_reset=1000)
    J = d.n_effects
    if J > n_subset:
        idx = np.sort(np.random.default_rng(seed).choice(J, n_subset, replace=False))
        d = d.subset(idx)
    fit = mash_estimate_corr_em(d, U, max_iter=max_iter, details=True)
    V = fit["V"]
    V.attrs.update(n_rows_used=d.n_effects, niter=fit["niter"], loglik=list(fit["loglik"]))
    log.info("vhat_mle: %d rows used, %d EM iterations", d.n_effects, fit["niter"])
    return V
