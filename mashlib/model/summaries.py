"""Accessors and summaries of a mash fit (mashr ``R/get_functions.R``, map §2.2 "Summaries").

Every accessor takes a :class:`~mashlib.MashResult` or the dict returned by
:func:`~mashlib.mash_compute_posterior_matrices` (R's ``list(result = post)`` idiom),
or a mash model R wrote as :func:`~mashlib.read_rds` returns it (converted by
:func:`mashlib.mash_from_r`).
Indices returned by :func:`get_significant_results` are **0-based** row positions (R
returns 1-based ``which`` indices).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .fit import MashResult

__all__ = ["get_loglik", "get_pm", "get_psd", "get_lfsr", "get_lfdr", "get_np", "get_log10bf",
           "get_estimated_pi", "get_significant_results", "get_n_significant_conditions",
           "get_pairwise_sharing"]


def _model(m):
    """A model R wrote (read_rds of saveRDS(mash(...)) or the protocol's list) -> MashResult."""
    if isinstance(m, dict) and ("fitted_g" in m or isinstance(m.get("mash_model"), dict)):
        from .r_model import mash_from_r  # noqa: PLC0415
        return mash_from_r(m)
    return m


def _result(m) -> dict:
    if isinstance(m, dict) and isinstance(m.get("mash_model"), dict):
        m = m["mash_model"]
    if isinstance(m, MashResult):
        return m.result
    if isinstance(m, dict):
        return m["result"] if "result" in m and isinstance(m["result"], dict) else m
    raise MashInputError("m: expected a MashResult or a posterior-matrices dict.")


def _get(m, key: str, hint: str) -> pd.DataFrame:
    res = _result(m)
    if key not in res:
        raise MashInputError(f"m: has no {key} ({hint}).")
    return res[key]


def get_loglik(m: MashResult) -> float:
    """Total log-likelihood ``sum_j vloglik_j`` (Bhat scale)."""
    return _model(m).loglik


def get_pm(m) -> pd.DataFrame:
    """Posterior means (J x Q)."""
    return _get(m, "PosteriorMean", "fit with outputlevel >= 2")


def get_psd(m) -> pd.DataFrame:
    """Posterior standard deviations (J x Q)."""
    return _get(m, "PosteriorSD", "fit with outputlevel >= 2")


def get_lfsr(m) -> pd.DataFrame:
    """Local false sign rates (J x Q)."""
    return _get(m, "lfsr", "fit with outputlevel >= 2")


def get_lfdr(m) -> pd.DataFrame:
    """Local false discovery rates (J x Q); requires ``output_lfdr=True`` in :func:`mash`."""
    return _get(m, "lfdr", "re-run mash with output_lfdr=True")


def get_np(m) -> pd.DataFrame:
    """Posterior probabilities of a negative effect (J x Q)."""
    return _get(m, "NegativeProb", "fit with outputlevel >= 2")


def get_log10bf(m: MashResult) -> Optional[np.ndarray]:
    """``(alt_loglik - null_loglik) / log(10)``, or None without the point mass."""
    m = _model(m)
    if m.null_loglik is None:
        return None
    return (m.alt_loglik - m.null_loglik) / np.log(10)


def get_estimated_pi(m, dimension: str = "cov") -> pd.Series:
    """Estimated mixture weights (mashr ``get_estimated_pi``).

    ``"all"``: the P weights named as :func:`~mashlib.expand_cov`.  Otherwise the
    non-null weights are arranged K x L (rows = covariances, columns = grid values) and
    summed over the grid (``"cov"``, names = Ulist names) or over covariances (``"grid"``,
    names ``"1".."L"``), with ``null`` prepended when the point mass is used.
    """
    m = _model(m)
    if isinstance(m, dict):          # a bare fitted_g list from R
        from .r_model import fitted_g_from_r  # noqa: PLC0415
        m = fitted_g_from_r(m)
    g = m.fitted_g if isinstance(m, MashResult) else m
    if dimension not in ("cov", "grid", "all"):
        raise MashInputError(f"dimension: {dimension!r} must be 'cov', 'grid' or 'all'.")
    pi = np.asarray(g.pi, float)
    if dimension == "all":
        return pd.Series(pi, index=g.component_names())
    names, vals = [], []
    if g.usepointmass:
        names, vals = ["null"], [pi[0]]
        pi = pi[1:]
    K, L = len(g.Ulist), len(g.grid)
    M = pi.reshape(L, K).T      # R's matrix(pi, nrow = K): column-major
    if dimension == "cov":
        return pd.Series(vals + list(M.sum(axis=1)), index=names + list(g.Ulist))
    return pd.Series(vals + list(M.sum(axis=0)), index=names + [str(l + 1) for l in range(L)])


def _cond_index(cols: list, conditions) -> np.ndarray:
    if conditions is None:
        return np.arange(len(cols))
    if isinstance(conditions, (str, int, np.integer)):
        conditions = [conditions]
    idx = []
    for c in conditions:
        if isinstance(c, (int, np.integer)):
            if not 0 <= c < len(cols):
                raise MashInputError(f"conditions: index {c} out of range 0..{len(cols) - 1}.")
            idx.append(int(c))
        elif c in cols:
            idx.append(cols.index(c))
        else:
            raise MashInputError(f"conditions: {c!r} is not one of {cols}.")
    return np.asarray(idx, dtype=np.intp)


def get_significant_results(m, thresh: float = 0.05, conditions=None,
                            sig_fn: Callable = get_lfsr) -> np.ndarray:
    """Effects significant in at least one of ``conditions``.

    ``top_j = min_{r in conditions} sig_fn(m)[j, r]``; returns the **0-based** row positions
    with ``top < thresh``, ordered by increasing ``top`` (stable, as R's ``order``).
    ``conditions`` are names or 0-based column positions (default all).
    """
    S = sig_fn(m)
    cols = [str(c) for c in S.columns] if isinstance(S, pd.DataFrame) else None
    arr = np.asarray(S, float)
    ci = _cond_index(cols if cols is not None else list(range(arr.shape[1])), conditions)
    top = arr[:, ci].min(axis=1)
    sig = np.flatnonzero(top < thresh)
    return sig[np.argsort(top[sig], kind="stable")]


def get_n_significant_conditions(m, thresh: float = 0.05, conditions=None,
                                 sig_fn: Callable = get_lfsr) -> pd.Series:
    """Per effect, the number of ``conditions`` with ``sig_fn(m) < thresh``."""
    S = sig_fn(m)
    arr = np.asarray(S, float)
    cols = [str(c) for c in S.columns] if isinstance(S, pd.DataFrame) else list(range(arr.shape[1]))
    ci = _cond_index(cols, conditions)
    idx = S.index if isinstance(S, pd.DataFrame) else None
    return pd.Series((arr[:, ci] < thresh).sum(axis=1), index=idx)


def get_pairwise_sharing(m, factor: float = 0.5, lfsr_thresh: float = 0.05,
                         FUN: Optional[Callable] = None) -> pd.DataFrame:
    """Pairwise sharing by magnitude (mashr ``get_pairwise_sharing``).

    For conditions i, j let ``a`` be the effects significant (lfsr < ``lfsr_thresh``) in i or
    j; ``S_ij = mean(factor < FUN(PM[a,i]) / FUN(PM[a,j]) < 1/factor)``.  ``factor = 0``
    measures sign sharing.  An empty ``a`` gives NaN; an undefined ratio (0/0) makes the
    entry NaN as R's ``mean`` of an NA.
    """
    lfsr = np.asarray(get_lfsr(m), float)
    pmdf = get_pm(m)
    pm = np.asarray(pmdf, float)
    if FUN is not None:
        pm = np.asarray(FUN(pm), float)
    R = pm.shape[1]
    sig = lfsr < lfsr_thresh
    hi = np.inf if factor == 0 else 1.0 / factor
    S = np.full((R, R), np.nan)
    for i in range(R):          # loop over condition pairs (R^2 / 2), vectorised over effects
        for j in range(i, R):
            a = sig[:, i] | sig[:, j]
            if not a.any():
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = pm[a, i] / pm[a, j]
            if np.isnan(ratio).any():
                continue
            S[i, j] = S[j, i] = np.mean((ratio > factor) & (ratio < hi))
    names = [str(c) for c in pmdf.columns] if isinstance(pmdf, pd.DataFrame) else None
    return pd.DataFrame(S, index=names, columns=names)
