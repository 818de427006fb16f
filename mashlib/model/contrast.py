"""Contrasts between conditions (mashr's common-baseline analysis, ``R/set_data.R``).

Port of mashr 0.2.81 ``contrast_matrix``, ``mash_set_data_contrast`` and the ``ref = "mean"``
branch of ``compute_posterior_matrices``.

Model.  With an (R-1) x R contrast matrix :math:`L` the data become

.. math::  \\hat\\delta_j = L \\hat b_j \\mid \\delta_j \\sim
           N_{R-1}\\big(\\delta_j,\\; L S_j V S_j L^T\\big), \\qquad
           S_j = \\mathrm{diag}(\\hat s_j),

so the errors of the contrasts are correlated even when ``V`` is the identity.  mashr stores
``Shat = sqrt(diag(L S_j V S_j L^T))`` and the correlation ``LSVSLt = cov2cor(L S_j V S_j
L^T)`` (one R-1 x R-1 matrix when V is common and every row of Shat is the same, else one per
row), keeps the original ``Shat`` as ``Shat_orig``, the original ``V`` and ``L``, and sets
``alpha = 0``, ``Shat_alpha = 1``.  Every engine then uses the error covariance
``diag(Shat_j) LSVSLt_j diag(Shat_j) = L S_j V S_j L^T``.

Posterior.  For ``ref = "mean"`` the R-th deviation from the mean is not a free parameter
(the R deviations sum to zero), so mashr reports all R of them through
``A = rbind(I_{R-1}, -1)`` (names ``"<condition>-mean"``); a user ``A`` must then have R
columns (one per original condition) and is applied as ``A %*% rbind(I, -1)``.

This module holds pure functions (numpy/pandas); :func:`mashlib.model.data.mash_update_data` builds the
contrast :class:`~mashlib.model.data.MashData` from them.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .._errors import MashInputError

__all__ = ["contrast_matrix", "contrast_fields", "contrast_posterior_A", "contrast_reference",
           "cov2cor", "structural_zeros"]

_BLOCK_BYTES = 32 * 2 ** 20
_ZERO_TOL = 1e-12


def _is_index(ref) -> bool:
    if isinstance(ref, (bool, np.bool_)):
        return False
    if isinstance(ref, Integral):
        return True
    return isinstance(ref, Real) and float(ref).is_integer()


def _ref_position(R: int, ref, names: list) -> int:
    """0-based position of the reference condition (R: index first, then name)."""
    if _is_index(ref) and 1 <= int(ref) <= R:
        return int(ref) - 1
    if isinstance(ref, str):
        hits = [i for i, n in enumerate(names) if n == ref]
        if len(hits) > 1:
            raise MashInputError(
                f"ref: {len(hits)} conditions are named {ref!r}; give the reference by its "
                f"1-based index instead.")
        if hits:
            return hits[0]
        if ref.isdigit() and 1 <= int(ref) <= R:        # R: "2" %in% 1:R is TRUE
            return int(ref) - 1
    shown = names if len(names) <= 30 else names[:30] + ["..."]
    raise MashInputError(
        f"ref: {ref!r} is not a condition; use a condition name ({', '.join(shown)}), "
        f"its 1-based index 1..{R}, or 'mean'.")


def contrast_matrix(R: int, ref, name: Optional[Sequence] = None) -> pd.DataFrame:
    """Contrast matrix against a reference condition (mashr ``contrast_matrix``).

    Parameters
    ----------
    R : int
        Number of conditions (columns).
    ref : str or int
        The reference: a condition name, its **1-based** index (as R), or ``"mean"`` (no
        reference: each condition against the mean of all R).
    name : sequence of str, optional
        The R condition names (default ``"1".."R"``).

    Returns
    -------
    DataFrame, shape (R-1, R)
        ``L``.  For a reference condition :math:`r`: row :math:`i` is
        :math:`e_i - e_r` for every :math:`i \\ne r`, named ``"<name_i>-<name_r>"``.  For
        ``"mean"``: :math:`L = (I - \\tfrac1R 11^T)` without its LAST row, rows named
        ``"<name_i>-mean"``.  Columns are ``name``; ``L.attrs["reference"]`` is ``ref`` as
        given (R's ``attr(L, "reference")``).

    Raises
    ------
    MashInputError
        ``ref`` is not a condition (the message lists them), or ``name`` has the wrong length.
    """
    if not _is_index(R) or int(R) < 2:
        raise MashInputError(f"R: must be an integer >= 2 (the number of conditions), got {R!r}.")
    R = int(R)
    names = [str(i + 1) for i in range(R)] if name is None else [str(n) for n in name]
    if len(names) != R:
        raise MashInputError(f"name: has {len(names)} entries for R = {R} conditions.")
    if isinstance(ref, str) and ref == "mean":
        L = np.full((R, R), -1.0 / R)
        np.fill_diagonal(L, (R - 1) / R)
        L = L[:R - 1]
        rows = [f"{n}-mean" for n in names[:R - 1]]
    else:
        pos = _ref_position(R, ref, names)
        L = np.eye(R)
        L[:, pos] = -1.0
        keep = [i for i in range(R) if i != pos]
        L = L[keep]
        rows = [f"{names[i]}-{names[pos]}" for i in keep]
        if _is_index(ref):
            ref = int(ref)
    out = pd.DataFrame(L, index=rows, columns=names)
    out.attrs["reference"] = ref
    return out


def contrast_reference(L):
    """``attr(L, "reference")``: the reference stored on a contrast matrix (None if absent)."""
    return getattr(L, "attrs", {}).get("reference")


def cov2cor(S: np.ndarray) -> np.ndarray:
    """R's ``cov2cor`` on one (R, R) or a stack (..., R, R): unit diagonal set exactly."""
    d = 1.0 / np.sqrt(np.diagonal(S, axis1=-2, axis2=-1))
    C = d[..., :, None] * S * d[..., None, :]
    idx = np.arange(S.shape[-1])
    C[..., idx, idx] = 1.0
    return C


def contrast_fields(Bhat: np.ndarray, Shat: np.ndarray, V: np.ndarray, commonV: bool,
                    L) -> dict:
    """The transformed fields of contrast data (mashr ``mash_set_data_contrast``).

    Parameters
    ----------
    Bhat, Shat : ndarray (J, R)
        The data's (transformed-scale) estimates and standard errors.
    V : ndarray (R, R) or (R, R, J)
        The data's error correlation (R's layout).
    commonV : bool
    L : array_like or DataFrame (Q, R)

    Returns
    -------
    dict
        ``Bhat`` = :math:`\\hat B L^T` (J, Q); ``Shat`` (J, Q) =
        :math:`\\sqrt{\\mathrm{diag}(L S_j V_j S_j L^T)}`; ``Shat_orig`` = Shat;
        ``LSVSLt`` = its correlation, (Q, Q) when V is common and all rows of Shat are equal,
        else (Q, Q, J) as R; ``Shat_alpha`` = ones.  Rows are processed in blocks of about
        32 MB (vectorised within a block).
    """
    Lm = np.asarray(L.to_numpy() if isinstance(L, pd.DataFrame) else L, dtype=float)
    J, R = Bhat.shape
    if Lm.ndim != 2 or Lm.shape[1] != R:
        raise MashInputError(f"L: the contrast must have R = {R} columns (got shape {Lm.shape}).")
    Q = Lm.shape[0]
    Bc = Bhat @ Lm.T
    common = commonV and (J <= 1 or bool(np.all(Shat == Shat[:1])))
    if common:
        s = Shat[0]
        Sig = Lm @ (s[:, None] * V * s[None, :]) @ Lm.T
        Sc = np.broadcast_to(np.sqrt(np.diag(Sig)), (J, Q)).copy()
        LSVSLt = cov2cor(Sig)
    else:
        Sc = np.empty((J, Q))
        LSVSLt = np.empty((Q, Q, J))
        step = max(1, _BLOCK_BYTES // (8 * (R * R + Q * R + 2 * Q * Q)))
        for a in range(0, J, step):
            b = min(J, a + step)
            Vb = V[None] if commonV else np.moveaxis(V[:, :, a:b], 2, 0)
            SVS = Shat[a:b, :, None] * Vb * Shat[a:b, None, :]
            Sig = Lm @ SVS @ Lm.T                                     # (n, Q, Q)
            Sc[a:b] = np.sqrt(np.diagonal(Sig, axis1=1, axis2=2))
            LSVSLt[:, :, a:b] = np.moveaxis(cov2cor(Sig), 0, 2)
    return {"Bhat": Bc, "Shat": Sc, "Shat_orig": Shat, "Shat_alpha": np.ones((J, Q)),
            "LSVSLt": LSVSLt}


def contrast_posterior_A(L, A=None):
    """The linear map under which posteriors of contrast data are reported.

    For ``ref = "mean"`` (mashr ``compute_posterior_matrices``): ``rbind(I_{R-1}, -1)`` with
    rows ``"<condition>-mean"`` for all R original conditions, composed with a user ``A``
    (which must then have R columns, one per original condition).  For any other reference,
    or data that are not contrasts, ``A`` is returned unchanged.

    Parameters
    ----------
    L : DataFrame or None
        The data's contrast matrix (``MashData.L``).
    A : array_like or DataFrame, optional

    Returns
    -------
    DataFrame, ndarray or None
    """
    if L is None or contrast_reference(L) != "mean":
        return A
    Rm1, R = np.shape(L)
    temp = np.vstack([np.eye(Rm1), -np.ones((1, Rm1))])
    if A is None:
        cols = list(L.columns) if isinstance(L, pd.DataFrame) else [str(i + 1) for i in range(R)]
        return pd.DataFrame(temp, index=[f"{c}-mean" for c in cols])
    Aa = np.asarray(A.to_numpy() if isinstance(A, pd.DataFrame) else A, dtype=float)
    if Aa.ndim == 1:
        Aa = Aa[None]
    if Aa.ndim != 2 or Aa.shape[1] != R:
        raise MashInputError(
            f"A: with reference 'mean' A must have one column per original condition "
            f"(R = {R}), got shape {Aa.shape}.")
    idx = list(A.index) if isinstance(A, pd.DataFrame) else [str(i + 1) for i in range(Aa.shape[0])]
    return pd.DataFrame(Aa @ temp, index=idx)


def structural_zeros(A: np.ndarray, U: np.ndarray) -> np.ndarray:
    """(Q, K) mask: :math:`(Ab)_q` is exactly 0 under prior component k.

    Then its posterior variance is 0 too, and the component counts as null for contrast q
    (lfdr), whatever rounding noise a computed variance carries.

    True when :math:`a_q^T U_k a_q \\le 10^{-12} \\|a_q\\|^2 \\max|U_k|` (or ``U_k = 0``).
    """
    v = np.einsum("qr,krs,qs->qk", A, U, A)
    scale = (A * A).sum(axis=1)[:, None] * np.abs(U).max(axis=(1, 2))[None, :]
    return v <= _ZERO_TOL * scale
