"""Posterior summaries of linear combinations of conditions after a fit
(mashr ``get_posterior_condition_wise_summary``, ``R/posterior.R``).

For a fitted mash model with retained components :math:`U_p` (grid-scaled, the null first),
their posterior weights :math:`w_{jp}` (``m.posterior_weights``) and a Q x R matrix :math:`A`
(e.g. pairwise differences, or :func:`~mashlib.model.contrast.contrast_matrix`), the posterior of
:math:`A b_j` is the mixture over p of :math:`N(A\\mu_{jp}, A U^{(1)}_{jp} A^T)` with the
per-component posteriors; the summaries are its mean, SD, lfdr, NegativeProb and lfsr.  No refit
and no new likelihood: the weights are the fit's.

Exact zeros.  A component contributes to ``lfdr`` (and not to ``NegativeProb``) for contrast q
when :math:`(Ab)_q` is 0 under it: its posterior variance is 0, in particular whenever the prior
variance :math:`a_q^T U_p a_q` is 0 (e.g. every difference of conditions under ``equal_effects``,
and the null).  In floating point such a variance comes out as rounding noise of either sign, so
it is detected structurally: :math:`a_q^T U_p a_q \\le 10^{-12}\\,\\|a_q\\|^2 \\max|U_p|`.  mashr
tests ``pmax(0, diag(A U1 A^T)) == 0`` on its rounded product, so which of those components it
counts as null depends on rounding: with integer contrasts (``contrast_matrix(R, ref)``) its
products are exact and the results agree; with ``contrast_matrix(R, "mean")`` (entries
:math:`-1/R`, :math:`1-1/R`) R counts some grid scalings of ``equal_effects`` as null in some
columns and not in others (the wave2 reference shows it; see tests/test_sims.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scipy.special import ndtr

from .._errors import MashInputError
from ..eb.mixdist import compute_lfsr
from .contrast import structural_zeros
from .covariances import expand_cov
from .data import MashData
from .fit import MashResult
from .samples import component_posteriors

__all__ = ["get_posterior_condition_wise_summary"]

_BLOCK_BYTES = 64 * 2 ** 20


def get_posterior_condition_wise_summary(mash_data: MashData, m: MashResult, contrast_mat) -> dict:
    """Condition-wise posterior summary of ``contrast_mat @ b`` (mashr
    ``get_posterior_condition_wise_summary``).

    Parameters
    ----------
    mash_data : MashData
        The data ``m`` was fitted on (same rows).
    m : MashResult
        A fit (any outputlevel); its ``posterior_weights`` name the retained components.
    contrast_mat : array_like or DataFrame, shape (Q, R)
        Rows are the linear combinations; a DataFrame's index names them.

    Returns
    -------
    dict
        ``PosteriorMean``, ``PosteriorSD``, ``lfdr``, ``NegativeProb``, ``lfsr``: J x Q
        DataFrames (rows = effect ids, columns = the names of ``contrast_mat``'s rows).

    Notes
    -----
    mashr evaluates this with its common-covariance routine and stops when the rows' standard
    errors differ ("Can't call common_cov routine ..."); here every row uses its own
    :math:`S_j V S_j`, which is the same numbers for common Shat and the exact posterior
    otherwise.
    """
    if not isinstance(m, MashResult):
        raise MashInputError("m: must be a MashResult (a mash fit with posterior_weights).")
    if not isinstance(mash_data, MashData):
        raise MashInputError("mash_data: is not a MashData object; build it with mash_set_data.")
    J, R = mash_data.Bhat.shape
    W = m.posterior_weights
    if W.shape[0] != J:
        raise MashInputError(f"mash_data: has {J} rows but the fit's posterior weights have "
                             f"{W.shape[0]}; pass the data the model was fitted on.")
    A = np.asarray(contrast_mat.to_numpy() if isinstance(contrast_mat, pd.DataFrame)
                   else contrast_mat, dtype=float)
    if A.ndim == 1:
        A = A[None]
    if A.ndim != 2 or A.shape[1] != R:
        raise MashInputError(f"contrast_mat: must have R = {R} columns (one per condition), got "
                             f"shape {A.shape}.")
    cols = ([str(i) for i in contrast_mat.index] if isinstance(contrast_mat, pd.DataFrame)
            else [str(i + 1) for i in range(A.shape[0])])
    fg = m.fitted_g
    xU = expand_cov(fg.Ulist, fg.grid, fg.usepointmass)
    missing = [c for c in W.columns if c not in xU]
    if missing:
        raise MashInputError(f"m: posterior_weights name components {missing[:5]} that the fitted "
                             "g does not expand to.")
    U = np.stack([xU[c] for c in W.columns])
    w_all = W.to_numpy(dtype=float)
    Z = structural_zeros(A, U).T[None]                               # (1, K, Q)
    K, Q = U.shape[0], A.shape[0]
    common = mash_data.error_commonV and mash_data.is_common_cov_Shat()
    per_row = 8.0 * (K * (R * R * (0 if common else 5) + 6 * Q + 2 * R) + 6 * Q)
    step = int(max(1, min(J, _BLOCK_BYTES // per_row)))
    Vs = mash_data.error_V_stack()
    out = {k: np.empty((J, Q)) for k in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb")}
    for a in range(0, J, step):
        b = min(J, a + step)
        V = Vs if mash_data.error_commonV else Vs[a:b]
        cp = component_posteriors(mash_data.Bhat[a:b], mash_data.Shat[a:b],
                                  mash_data.Shat_alpha[a:b], V, U, np.ones(K), A, full_cov=False)
        w = w_all[a:b]
        mu, var = cp["mu"], np.maximum(cp["var"], 0.0)                # R: pmax(0, diag(pvar))
        zero = Z | (var == 0)
        mu = np.where(Z, 0.0, mu)
        var = np.where(zero, 0.0, var)
        sd = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            neg = np.where(zero, 0.0, ndtr(-mu / np.where(zero, 1.0, sd)))
        pm = np.einsum("nk,nkq->nq", w, mu)
        e2 = np.einsum("nk,nkq->nq", w, mu * mu + var)
        out["PosteriorMean"][a:b] = pm
        out["PosteriorSD"][a:b] = np.sqrt(np.maximum(e2 - pm * pm, 0.0))
        out["lfdr"][a:b] = np.einsum("nk,nkq->nq", w, np.broadcast_to(zero, mu.shape).astype(float))
        out["NegativeProb"][a:b] = np.einsum("nk,nkq->nq", w, neg)
    out["lfsr"] = compute_lfsr(out["NegativeProb"], out["lfdr"])
    return {k: pd.DataFrame(out[k], index=mash_data.row_ids, columns=cols)
            for k in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr")}
