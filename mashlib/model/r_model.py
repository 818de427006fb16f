"""Fitted mash models in both directions between R and mashlib.

**In**: :func:`mash_from_r` turns what ``read_rds`` returns for a model R wrote
(``saveRDS(mash(...))``: a list of class ``"mash"``; or the protocol's
``list(mash_model, vhat_file, prior_file)`` from ``mash_fit``) into a
:class:`~mashlib.MashResult`; :func:`fitted_g_from_r` takes any of those, or a bare
``fitted_g`` list, to a :class:`~mashlib.FittedG`.  ``mash(g=...)``,
``mash_compute_posterior_matrices(g, ...)`` and the ``get_*`` accessors call them, so an R
object can be passed as read::

    m = ml.read_rds("model.rds")                   # written by R: saveRDS(mash(data, U), ...)
    ml.get_estimated_pi(m)
    post = ml.mash_compute_posterior_matrices(m, new_data)

**Out**: :func:`mash_to_r` writes a :class:`~mashlib.MashResult` as mashr's list, with
the dimnames R keeps (map §2.2 "Fitting"):

==========================  ================================================================
element                     R structure
==========================  ================================================================
``result$PosteriorMean``..  J x R matrices, rows = effect ids, columns = conditions
``result$PosteriorCov``     R x R x J array, dimnames (conditions, conditions, effect ids)
``loglik``                  numeric scalar
``vloglik``, ``alt_loglik`` J x 1 matrices (no dimnames); ``null_loglik`` a plain vector
``fitted_g$pi``             named vector (``null``, ``<U>.<grid index>``)
``fitted_g$Ulist``          named list; a matrix keeps the dimnames it had when it went into
                            ``mash`` (``cov_pca``/``cov_flash``/``cov_ed`` matrices carry
                            the condition names, ``cov_canonical`` ones none)
``fitted_g$grid``           numeric vector; ``usepointmass`` logical
``posterior_weights``       J x K matrix, column names = kept components, **no row names**
``alpha``                   numeric scalar
``lm``                      (outputlevel 4) ``loglik_matrix`` J x P with the P component
                            names as column names and no row names; ``lfactors`` a vector
==========================  ================================================================
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from .._errors import MashInputError
from ..io import RArray, RList, read_rds
from .fit import FittedG, MashResult, _fitted_g_from_r, _unwrap_r_model

__all__ = ["mash_from_r", "fitted_g_from_r", "mash_to_r", "posterior_to_r", "is_r_model"]


def _mat(x) -> np.ndarray:
    if isinstance(x, dict) and "mat" in x:      # udr's list(mat = ...)
        x = x["mat"]
    return np.asarray(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=float)


def _unwrap(obj, what: str):
    """A path is read; the protocol's list(mash_model, ...) gives its mash_model."""
    if isinstance(obj, (str, os.PathLike)):
        src = str(obj)
        obj = read_rds(obj)
    else:
        src = what
    obj = _unwrap_r_model(obj)
    if not isinstance(obj, dict):
        raise MashInputError(f"{src}: expected a mash model (an R list of class 'mash' with fitted_g), "
                             f"got {type(obj).__name__}")
    return obj, src


def is_r_model(obj) -> bool:
    """True for an R mash list, the protocol's ``list(mash_model, ...)`` or a bare ``fitted_g`` list."""
    if not isinstance(obj, dict):
        return False
    if "mash_model" in obj:
        return isinstance(obj["mash_model"], dict)
    return "fitted_g" in obj or {"pi", "Ulist", "grid"} <= set(obj)


def fitted_g_from_r(obj) -> FittedG:
    """A :class:`~mashlib.FittedG` from an R mash model, the protocol's model list, a bare
    ``fitted_g`` list (``pi``, ``Ulist``, ``grid``, ``usepointmass``) or a path to any of them.

    ``Ulist`` matrices lose their dimnames (the conditions are kept by :func:`mash_from_r`);
    ``pi`` must have one entry per expanded component (``null`` first when ``usepointmass``),
    named as they expand when it is named.

    Raises
    ------
    MashInputError
        When an element is missing or ``pi`` does not match ``Ulist`` x ``grid``.
    """
    obj, src = _unwrap(obj, "g")
    return _fitted_g_from_r(obj, src)


def _vec(x) -> Optional[np.ndarray]:
    if x is None:
        return None
    return np.asarray(x.to_numpy() if isinstance(x, (pd.DataFrame, pd.Series)) else x, dtype=float).ravel()


def _conditions(result: dict, Ulist: dict) -> list:
    pm = result.get("PosteriorMean")
    if isinstance(pm, pd.DataFrame) and not isinstance(pm.columns, pd.RangeIndex):
        return [str(c) for c in pm.columns]
    for U in Ulist.values():
        if isinstance(U, pd.DataFrame) and not isinstance(U.columns, pd.RangeIndex):
            return [str(c) for c in U.columns]
    return []


def mash_from_r(obj) -> MashResult:
    """A :class:`~mashlib.MashResult` from a mash model R wrote.

    Parameters
    ----------
    obj : dict, RList or path
        ``read_rds`` of ``saveRDS(mash(...))`` (a list of class ``"mash"``), the protocol's
        ``list(mash_model, vhat_file, prior_file)``, or the path of either file.

    Returns
    -------
    MashResult
        ``result`` as mashlib keeps it (``PosteriorCov`` turned from R's R x R x J into
        (J, R, R)), ``vloglik``/``alt_loglik`` as vectors, ``posterior_weights`` indexed by
        the effect ids when the result has them, ``conditions`` from the result's columns or
        a labelled ``Ulist`` matrix.  Missing optional elements (``result`` at
        outputlevel 1, ``lm`` below outputlevel 4, the Bayes-factor logliks without the
        point mass) are empty or None as in a mashlib fit.
    """
    obj, _ = _unwrap(obj, "m")
    g = fitted_g_from_r(obj)
    res_r = obj.get("result") or {}
    result = {}
    for k, v in res_r.items():
        if k == "PosteriorCov" and v is not None:
            arr = v.values if isinstance(v, RArray) else np.asarray(v, dtype=float)
            result[k] = np.moveaxis(np.asarray(arr, dtype=float), -1, 0)
        else:
            result[k] = v
    conditions = _conditions(res_r, (obj.get("fitted_g") or {}).get("Ulist") or {})
    pm = res_r.get("PosteriorMean")
    row_ids = None
    if isinstance(pm, pd.DataFrame) and not isinstance(pm.index, pd.RangeIndex):
        row_ids = [str(i) for i in pm.index]
    pw = obj.get("posterior_weights")
    if pw is not None:
        pw = pw.copy() if isinstance(pw, pd.DataFrame) else pd.DataFrame(np.asarray(pw, dtype=float))
        if row_ids is not None and len(row_ids) == pw.shape[0]:
            pw.index = row_ids
    lm = obj.get("lm")
    if isinstance(lm, dict):
        lm = {"loglik_matrix": _mat(lm["loglik_matrix"]), "lfactors": _vec(lm["lfactors"])}
    loglik = obj.get("loglik")
    return MashResult(result=result, loglik=float("nan") if loglik is None else float(np.asarray(loglik).ravel()[0]),
                      vloglik=_vec(obj.get("vloglik")), null_loglik=_vec(obj.get("null_loglik")),
                      alt_loglik=_vec(obj.get("alt_loglik")), fitted_g=g, posterior_weights=pw,
                      alpha=float(np.asarray(obj.get("alpha", 0.0)).ravel()[0]), lm=lm,
                      conditions=conditions, row_ids=row_ids)


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


def mash_to_r(m: MashResult, rows: Optional[list] = None, conditions: Optional[list] = None,
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
