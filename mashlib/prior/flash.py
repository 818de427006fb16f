r"""mashr's ``cov_flash``: data-driven covariance matrices from an EBMF fit.

The (subset of) effects :math:`\hat B` (J x R) is factorised with flash,
:math:`\hat B \approx L F^\top`, using a per-condition residual variance
(``var_type=2``), up to 100 greedily added factors initialised by the rank-one
softImpute (leading SVD pair) of the residuals, then a backfit (extrapolated,
warm-started, ``maxiter=500``, ``tol = sqrt(eps) J R``) and **no** nullcheck,
exactly as mashr 0.2.81 calls flashier (map §1.1, §1.2). From the fit:

.. math::

    \texttt{tFLASH\_<tag>} = \frac{1}{J}\,(\bar L\bar F^\top)^\top(\bar L\bar F^\top),
    \qquad
    \texttt{FLASH\_<tag>\_k} = \tilde f_k\tilde f_k^\top,\quad
    \tilde f_k = \bar F_{\cdot k}/\lVert\bar F_{\cdot k}\rVert_2 .

``factors="nonneg"`` uses point-normal loadings and point-exponential
(non-negative) factors, initialised by mashr's ``nonneg_init``. With
``remove_singleton=True`` only factors with more than one entry
:math:`|F_{jk}| > 1/\sqrt R` are kept and, as mashr does, their **raw**
(unnormalised) columns are used.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np

from .._atomic import atomic_path
from .._blas import single_blas_thread
from .._errors import MashInputError
from .._log import get_logger, say

_log = get_logger(__name__)
from .._validation import check_subset

__all__ = ["cov_flash"]


def _subset_rows(J, subset):
    return check_subset(subset, J, min_rows=2, what="cov_flash")


def _save_model(path, fit, factors, conditions):
    path = str(path)
    if path.endswith(".rds"):
        from ..io import write_rds

        model = {
            "n_factors": int(fit.n_factors),
            "elbo": float(fit.elbo),
            "pve": np.asarray(fit.pve, float),
            "residuals_sd": np.asarray(fit.residuals_sd, float),
            "L_pm": fit.L_pm,
            "F_pm": fit.F_pm,
            "L_psd": fit.L_psd,
            "F_psd": fit.F_psd,
        }
        write_rds(path, {"model": model, "factors": np.asarray(factors, float)})
    else:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            pickle.dump({"model": fit, "factors": np.asarray(factors), "conditions": list(conditions)}, fh)


@single_blas_thread
def cov_flash(data, factors="default", subset=None, remove_singleton=False, tag=None, output_model=None,
              greedy_args=None, backfit_args=None, verbose=0):
    """Covariance matrices from an empirical Bayes matrix factorisation of ``data.Bhat``.

    Parameters
    ----------
    data : MashData
        Uses ``data.Bhat`` (J x R) and ``data.conditions``.
    factors : {"default", "nonneg"}
        Unconstrained (point-normal) factors, or non-negative (point-exponential)
        factors with point-normal loadings.
    subset : array_like, optional
        Rows (0-based indices or boolean mask) to use; default all.
    remove_singleton : bool
        Drop factors with at most one entry above 1/sqrt(R) in absolute value
        (their raw columns are then used, as mashr).
    tag : str, optional
        Name suffix (default: ``factors``).
    output_model : path, optional
        Save the fit and factors: an R-readable ``.rds`` (list ``model`` with
        the fit's summaries and ``factors``) when the name ends in ``.rds``,
        otherwise a pickle of ``{"model": FlashFit, "factors", "conditions"}``.
    greedy_args, backfit_args : dict, optional
        Extra keyword arguments for :func:`~mashlib.ebmf.flash_greedy` /
        :func:`~mashlib.ebmf.flash_backfit` (``Kmax``, ``ebnm_fn`` and ``init_fn``
        default as mashr).
    verbose : int
        flash progress messages (0 = silent).

    Returns
    -------
    dict[str, ndarray]
        ``tFLASH_<tag>`` then ``FLASH_<tag>_1..K`` (R x R), in the order of
        ``data.conditions``; an empty dict (with a warning) when flash finds no
        factor.
    """
    from ..ebmf import flash_backfit, flash_greedy, flash_greedy_init_softImpute, flash_init, ldf, nonneg_init
    from ..eb.ebnm import ebnm_point_exponential, ebnm_point_normal

    if factors not in ("default", "nonneg"):
        raise MashInputError(f"factors: {factors!r} is not one of 'default', 'nonneg'.")
    if not hasattr(data, "Bhat"):
        raise MashInputError("data: expected a MashData (from mash_set_data) with a Bhat matrix.")
    B = np.asarray(data.Bhat, float)
    J, R = B.shape
    rows = _subset_rows(J, subset)
    conditions = list(getattr(data, "conditions", None) or [f"condition_{j + 1}" for j in range(R)])
    g_args = dict(greedy_args or {})
    b_args = dict(backfit_args or {})
    g_args.setdefault("Kmax", 100)
    if factors == "default":
        g_args.setdefault("init_fn", flash_greedy_init_softImpute)
        g_args["ebnm_fn"] = ebnm_point_normal
    else:
        g_args.setdefault("init_fn", nonneg_init)
        g_args["ebnm_fn"] = (ebnm_point_normal, ebnm_point_exponential)
    fl = flash_init(B[rows], var_type=2, verbose=verbose)
    fl = flash_greedy(fl, **g_args)
    fl = flash_backfit(fl, **b_args)
    if fl.n_factors == 0:
        warnings.warn("Flash did not find any factors; cov_flash returns an empty dict (mashr returns NULL).",
                      RuntimeWarning, stacklevel=3)   # past the BLAS-pinning wrapper
        return {}
    if remove_singleton:
        F = fl.F_pm
        keep = np.flatnonzero(np.sum(np.abs(F) > 1.0 / np.sqrt(F.shape[0]), axis=0) > 1)
        say(_log, True, f"Removing {F.shape[1] - keep.size} singleton effect vectors")
        flash_factors = F[:, keep]
    else:
        flash_factors = ldf(fl, "f")[2]
    if output_model is not None:
        _save_model(output_model, fl, flash_factors, conditions)
    if tag is None:
        tag = factors
    fitted = fl.fitted()
    out = {f"tFLASH_{tag}": fitted.T @ fitted / fitted.shape[0]}
    for k in range(flash_factors.shape[1]):
        fk = flash_factors[:, k]
        out[f"FLASH_{tag}_{k + 1}"] = np.outer(fk, fk)
    return out
