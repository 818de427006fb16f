"""mashlib results as the R lists mashr writes (the "out" half of :mod:`mashlib.model.r_model`).

:meth:`MashResult.to_r` and :func:`mash_to_r` give mashr's ``"mash"`` list with the dimnames R
keeps (see the table in :mod:`mashlib.model.r_model`); :func:`posterior_to_r` the posterior
matrices list. Imports nothing of the model, so the result classes can call it.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pandas as pd

from ..io import RArray, RList

__all__ = ["mash_to_r", "posterior_to_r"]


def _mat(x) -> np.ndarray:
    if isinstance(x, dict) and "mat" in x:      # udr's list(mat = ...)
        x = x["mat"]
    return np.asarray(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=float)

def _vec(x) -> Optional[np.ndarray]:
    if x is None:
        return None
    return np.asarray(x.to_numpy() if isinstance(x, (pd.DataFrame, pd.Series)) else x, dtype=float).ravel()

def _frame(x, rows, cols) -> pd.DataFrame:
    x = x.to_numpy() if isinstance(x, pd.DataFrame) else x
    return pd.DataFrame(np.asarray(x, dtype=float), index=rows, columns=cols)

def posterior_to_r(res, rows, conds, with_cov: bool = True) -> dict:
    """Posterior matrices as mashr's list: J x R matrices ``PosteriorMean``, ``PosteriorSD``,
    ``lfdr``, ``NegativeProb``, ``lfsr`` (those present, in that order) with dimnames,
    ``PosteriorCov`` as an R x R x J array when ``with_cov``, and ``PosteriorSamples`` (J x R x
    M, dimnames effect ids, conditions, ``sample_1..M``) when present."""
    def get(k):
        return res.get(k) if isinstance(res, dict) else getattr(res, k, None)
    out = {}
    for key in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"):
        x = get(key)
        if x is not None:
            out[key] = _frame(x, rows, conds)
    cov = get("PosteriorCov")
    if with_cov and cov is not None:
        arr = cov.values if isinstance(cov, RArray) else np.moveaxis(np.asarray(cov, dtype=float), 0, -1)
        out["PosteriorCov"] = RArray(arr, [list(conds), list(conds), None if rows is None else list(rows)])
    smp = get("PosteriorSamples")
    if smp is not None:   # J x Q x M in both; dimnames as mashr's common-cov path sets them
        arr = smp.values if isinstance(smp, RArray) else np.asarray(smp, dtype=float)
        out["PosteriorSamples"] = RArray(arr, [None if rows is None else list(rows), list(conds),
                                               [f"sample_{m + 1}" for m in range(arr.shape[2])]])
    return out

def mash_to_r(m: "MashResult",  # noqa: F821 (mashlib.MashResult; not imported: fit calls this)
              rows: Optional[list] = None, conditions: Optional[list] = None,
              labelled: Optional[Iterable[str]] = None) -> RList:
    """A :class:`~mashlib.MashResult` as mashr's ``"mash"`` list (see the module table).

    Parameters
    ----------
    m : MashResult
    rows, conditions : list of str, optional
        Effect ids and condition names (default: those of the fit).
    labelled : iterable of str, optional
        ``Ulist`` names whose matrices carry the condition names as dimnames in R (the
        ``cov_pca``/``cov_flash``/``cov_ed`` ones; the protocol passes the prior's labelled
        matrices).  Default: none.

    Returns
    -------
    RList
        Written by :func:`mashlib.write_rds`, ``readRDS`` gives what ``saveRDS(mash(...))``
        gives.
    """
    rows = list(m.row_ids) if rows is None and m.row_ids is not None else rows
    conds = list(conditions if conditions is not None else (m.conditions or []))
    res = posterior_to_r(m.result or {}, rows, conds or None, with_cov=True)
    out = RList(r_class="mash")
    out["result"] = res if res else None
    out["loglik"] = float(m.loglik)
    J = None if m.vloglik is None else np.asarray(m.vloglik).size
    if m.vloglik is not None:
        out["vloglik"] = np.asarray(m.vloglik, dtype=float).reshape(J, 1)
    out["null_loglik"] = None if m.null_loglik is None else np.asarray(m.null_loglik, dtype=float).ravel()
    out["alt_loglik"] = None if m.alt_loglik is None else np.asarray(m.alt_loglik, dtype=float).reshape(-1, 1)
    g = m.fitted_g
    labelled = set(labelled or ())
    Ulist = {}
    for k, U in g.Ulist.items():
        U = _mat(U)
        if k in labelled and conds and U.shape == (len(conds), len(conds)):
            Ulist[k] = pd.DataFrame(U, index=conds, columns=conds)
        else:
            Ulist[k] = U
    out["fitted_g"] = {"pi": pd.Series(np.asarray(g.pi, dtype=float), index=g.component_names()),
                       "Ulist": Ulist, "grid": np.asarray(g.grid, dtype=float),
                       "usepointmass": bool(g.usepointmass)}
    pw = m.posterior_weights
    if pw is not None:
        cols = list(pw.columns) if isinstance(pw, pd.DataFrame) else None
        pw = pd.DataFrame(np.asarray(pw, dtype=float), columns=cols)   # no row names, as R
        out["posterior_weights"] = pw
    out["alpha"] = float(m.alpha)
    if m.lm is not None:
        L = _mat(m.lm["loglik_matrix"])
        names = g.component_names()
        out["lm"] = {"loglik_matrix": pd.DataFrame(L, columns=names if len(names) == L.shape[1] else None),
                     "lfactors": _vec(m.lm["lfactors"])}
    return out
