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

import numpy as np
import pandas as pd

from .._errors import MashInputError
from ..io import RArray, read_rds
from ._r_out import _mat, _vec, mash_to_r, posterior_to_r
from .fit import FittedG, MashResult, _fitted_g_from_r, _unwrap_r_model

__all__ = ["mash_from_r", "fitted_g_from_r", "mash_to_r", "posterior_to_r", "is_r_model"]




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
