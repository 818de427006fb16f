"""The mash data object: :class:`MashData`, :func:`mash_set_data`, :func:`mash_update_data`.

Port of mashr 0.2.81 ``R/set_data.R`` (map §2.2 "Data object", pitfalls P1, P12, P13, P30).

Model.  For effect :math:`j` with observed estimates :math:`\\hat b_j` and standard errors
:math:`\\hat s_j` (length-R rows), mash assumes

.. math::  \\hat b_j / \\hat s_j^{\\alpha} \\mid b_j \\sim N_R(b_j,\\; S_j V S_j),
           \\qquad S_j = \\mathrm{diag}(\\hat s_j^{1-\\alpha}).

``alpha = 0`` is the exchangeable-effects (EE) model, ``alpha = 1`` the exchangeable
z-scores (EZ) model.  :func:`mash_set_data` stores the *transformed* quantities, exactly as
mashr: ``Bhat <- Bhat / Shat^alpha``, ``Shat <- Shat^(1-alpha)``, ``Shat_alpha = Shat^alpha``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri, stdtr   # norm.ppf / t.cdf without importing scipy.stats

from .._errors import MashInputError
from .._validation import check_subset
from .contrast import contrast_fields, contrast_matrix

__all__ = ["MashData", "mash_set_data", "mash_update_data", "check_positive_definite"]

_EPS = np.finfo(float).eps



def _short_list(names, n: int = 4) -> str:
    """``a, b, c, ... (+k)``: the first names of a long list, for a one-line repr."""
    names = [str(x) for x in names]
    return ", ".join(names[:n]) + (f", ... (+{len(names) - n})" if len(names) > n else "")


@dataclass
class MashData:
    """Data for a mash analysis (mashr's class ``"mash"`` data list).

    Attributes
    ----------
    Bhat, Shat, Shat_alpha : ndarray, shape (J, R)
        Transformed estimates, standard errors and ``Shat_orig**alpha`` (all ones when
        ``alpha == 0``).  NA cells carry ``Bhat = 0``, ``Shat = 1e6``, ``Shat_alpha = 1``.
    V : ndarray, shape (R, R) or (R, R, J)
        Residual correlation, common (``commonV``) or one per effect (R's ``R x R x J``
        layout).
    commonV : bool
    alpha : float
    conditions : list of str
        Condition names (column names of Bhat, or ``"1".."R"`` when none were given; see
        ``conditions_named``).
    row_ids : list of str or None
        Effect ids (row names), or None as in R when Bhat had no row names.
    conditions_named : bool
        Whether the names were supplied by the user (R: ``colnames(Bhat)`` non-NULL).  mashr
        names singleton covariances by condition only in that case.
    Shat_orig, L, LSVSLt : None, or for contrast data (:func:`mash_update_data` with ``ref``)
        the original Shat (J, R), the (R-1) x R contrast matrix (DataFrame, reference in
        ``L.attrs["reference"]``) and the error correlation of the contrasts
        ``cov2cor(L S_j V S_j L^T)``, (Q, Q) or (Q, Q, J).  Then ``V``/``commonV`` stay the
        original data's and the engines use :meth:`error_V_stack` (see
        :mod:`mashlib.model.contrast`).
    """

    Bhat: np.ndarray
    Shat: np.ndarray
    Shat_alpha: np.ndarray
    V: np.ndarray
    commonV: bool
    alpha: float
    conditions: list
    row_ids: Optional[list]
    conditions_named: bool = True
    Shat_orig: Optional[np.ndarray] = None
    L: Optional[pd.DataFrame] = None
    LSVSLt: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        J, R = self.Bhat.shape
        conds = _short_list(self.conditions)
        v = "common V" if self.commonV else "per-row V"
        extra = f", contrasts vs {self.L.attrs.get('reference')!r}" if self.L is not None else ""
        return f"MashData({J} effects x {R} conditions [{conds}], alpha={self.alpha:g}, {v}{extra})"

    @property
    def n_effects(self) -> int:
        """Number of effects J (rows)."""
        return int(self.Bhat.shape[0])

    @property
    def n_conditions(self) -> int:
        """Number of conditions R (columns)."""
        return int(self.Bhat.shape[1])

    def subset(self, rows) -> "MashData":
        """Return a new MashData restricted to ``rows`` (integer positions or a boolean mask)."""
        idx = check_subset(rows, self.n_effects, name="rows", min_rows=0)
        V = self.V if self.commonV else self.V[:, :, idx]
        ids = None if self.row_ids is None else [self.row_ids[i] for i in idx]
        extra = {}
        if self.L is not None:
            extra = {"Shat_orig": self.Shat_orig[idx],
                     "LSVSLt": self.LSVSLt if self.LSVSLt.ndim == 2 else self.LSVSLt[:, :, idx]}
        return dataclasses.replace(self, Bhat=self.Bhat[idx], Shat=self.Shat[idx],
                                   Shat_alpha=self.Shat_alpha[idx], V=V, row_ids=ids, **extra)

    # --- helpers used by the engine -------------------------------------------------
    def V_stack(self) -> np.ndarray:
        """V as (R, R) when common, else as a (J, R, R) stack (row-major over effects)."""
        return self.V if self.commonV else np.moveaxis(self.V, 2, 0)

    @property
    def error_commonV(self) -> bool:
        """Whether one error correlation serves every row: ``commonV``, or for contrast data
        whether ``LSVSLt`` is a single matrix."""
        return self.commonV if self.L is None else self.LSVSLt.ndim == 2

    def error_V_stack(self) -> np.ndarray:
        """Correlation of the errors of ``Bhat`` as used by the engines: :meth:`V_stack`, or
        for contrast data ``LSVSLt`` as (Q, Q) or a (J, Q, Q) stack."""
        if self.L is None:
            return self.V_stack()
        return self.LSVSLt if self.LSVSLt.ndim == 2 else np.moveaxis(self.LSVSLt, 2, 0)

    def is_common_cov_Shat(self) -> bool:
        """mashr ``is_common_cov_Shat``: every row of Shat is identical."""
        S = self.Shat
        return bool(S.shape[0] <= 1 or np.all(S == S[0]))

    def is_common_cov_Shat_alpha(self) -> bool:
        """mashr ``is_common_cov_Shat_alpha``: every row of Shat_alpha is identical."""
        S = self.Shat_alpha
        return bool(S.shape[0] <= 1 or np.all(S == S[0]))

    def is_common_cov(self) -> bool:
        """True when all effects share ``S_j V S_j`` and the back-transform (posterior path)."""
        return self.error_commonV and self.is_common_cov_Shat() and (
            self.alpha == 0 or self.is_common_cov_Shat_alpha())


def _as_matrix(x, name, shape=None):
    """Convert to a float (J, R) ndarray; return (array, colnames, rownames)."""
    cols = rows = None
    if isinstance(x, pd.DataFrame):
        cols = [str(c) for c in x.columns]
        if not isinstance(x.index, pd.RangeIndex):
            rows = [str(r) for r in x.index]
        x = x.to_numpy(dtype=float)
    try:
        arr = np.array(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise MashInputError(f"{name}: could not convert to a numeric matrix ({e}); "
                             "pass a numeric numpy array or DataFrame.") from None
    if arr.ndim == 0 and shape is not None:
        arr = np.full(shape, float(arr))
    if arr.ndim == 1 and shape is not None and arr.size == shape[0] * shape[1] and shape[1] == 1:
        arr = arr.reshape(shape)
    if arr.ndim != 2:
        raise MashInputError(f"{name}: expected a 2-D (effects x conditions) matrix, got "
                             f"shape {arr.shape}; reshape it to J x R.")
    return arr, cols, rows


def _first_cell(mask):
    j, r = np.argwhere(mask)[0]
    return int(j), int(r)


def _reset_or_raise(S, mask, reset, message):
    """``S`` with the cells in ``mask`` set to ``reset`` when ``reset > 0``, else raise.

    The :class:`MashInputError` text is ``message(j, r)`` for the first masked cell.
    """
    if reset > 0:
        return np.where(mask, reset, S)
    j, r = _first_cell(mask)
    raise MashInputError(message(j, r))


def check_positive_definite(V, name="V"):
    """Check a covariance/correlation matrix as mashr ``check_positive_definite`` (P1).

    Requires a finite, square matrix symmetric to mashr's ``isSymmetric`` tolerance
    (mean relative difference ``sum|V - V^T| / sum|V| < 100 eps``) whose Cholesky
    factorisation succeeds.

    Raises
    ------
    MashInputError
        Naming ``name``, the problem and a remedy.
    """
    V = np.asarray(V, dtype=float)
    if V.ndim != 2 or V.shape[0] != V.shape[1]:
        raise MashInputError(f"{name}: must be a square matrix, got shape {V.shape}.")
    if not np.all(np.isfinite(V)):
        raise MashInputError(f"{name}: contains NaN/Inf values; supply a finite matrix.")
    denom = np.sum(np.abs(V))
    if denom > 0 and np.sum(np.abs(V - V.T)) / denom > 100 * _EPS:
        raise MashInputError(f"{name}: is not symmetric; symmetrise it, e.g. (V + V.T) / 2.")
    try:
        np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        ev = np.linalg.eigvalsh((V + V.T) / 2).min()
        raise MashInputError(
            f"{name}: must be positive definite (Cholesky failed; smallest eigenvalue {ev:.3g}). "
            "Use a positive-definite estimate (e.g. near_pd, or vhat_identity).") from None
    return True


def _check_labels(M, conditions, name):
    """A labelled R x R DataFrame must carry the data's condition names in the same order."""
    if isinstance(M, pd.DataFrame) and conditions is not None:
        for axis, labels in (("columns", M.columns), ("index", M.index)):
            lab = [str(c) for c in labels]
            if not isinstance(labels, pd.RangeIndex) and lab != list(conditions):
                raise MashInputError(
                    f"{name}: {axis} {lab} do not match the data's conditions {list(conditions)}; "
                    f"reorder {name} to the conditions of Bhat.")


#: largest |Bhat| / Shat mash can square: grid^2 U ~ 4 Bhat^2 must stay below the float maximum
MAGNITUDE_LIMIT = 1e152


def _check_magnitude(B, S):
    """Refuse (transformed) effects or SEs whose squares overflow double precision."""
    for arr, nm in ((B, "Bhat"), (S, "Shat")):
        with np.errstate(invalid="ignore"):
            big = np.abs(arr) > MAGNITUDE_LIMIT
        if big.any():
            j, r = _first_cell(big)
            raise MashInputError(
                f"{nm}: {arr[j, r]:.3g} at row {j}, condition {r} is above {MAGNITUDE_LIMIT:g} in "
                "absolute value; mash "
                "squares effects and standard errors, which overflows double precision. Express "
                "Bhat and Shat in other units (divide both by the same factor: posterior means and "
                "SDs scale with it, lfsr does not).")


def _p2z(pval, Bhat):
    z = np.abs(ndtri(pval / 2))
    return np.where(Bhat < 0, -z, z)


def _check_V(V, R, J):
    V = np.array(V, dtype=float)
    if V.ndim == 2:
        if V.shape != (R, R):
            raise MashInputError(f"V: shape {V.shape} does not match the {R} conditions of Bhat; "
                                 f"supply an {R} x {R} correlation matrix.")
        check_positive_definite(V, "V")
        return V, True
    if V.ndim == 3:
        if V.shape[:2] != (R, R):
            raise MashInputError(f"V: array shape {V.shape} must be R x R x J = {R} x {R} x {J}.")
        if V.shape[2] != J:
            raise MashInputError(f"V: the number of correlation matrices ({V.shape[2]}) does not "
                                 f"match the number of effects ({J}).")
        for j in range(J):  # validation only (once, at the boundary)
            try:
                check_positive_definite(V[:, :, j], f"V[:, :, {j}]")
            except MashInputError as e:
                raise MashInputError(f"{e} (effect row {j})") from None
        return V, False
    raise MashInputError(f"V: must be R x R or R x R x J, got {V.ndim} dimensions.")


def mash_set_data(Bhat, Shat=None, alpha=0.0, df=np.inf, pval=None, V=None,
                  zero_check_tol=_EPS, zero_Bhat_Shat_reset=0.0, zero_Shat_reset=0.0,
                  conditions: Optional[Sequence[str]] = None,
                  row_ids: Optional[Sequence[str]] = None) -> MashData:
    """Create a :class:`MashData` object (mashr ``mash_set_data``).

    Parameters
    ----------
    Bhat : array_like or DataFrame, shape (J, R)
        Observed effects.  DataFrame column names become ``conditions`` and a non-default
        index becomes ``row_ids``.  NaN marks a missing cell (R's NA): it must be NaN in
        ``Shat`` too; such cells get ``Bhat = 0``, ``Shat = 1e6`` after the transform (P13).
    Shat : array_like, scalar or None
        Standard errors (scalar expanded).  Default 1 (z-scores) when ``pval`` is None.
    alpha : float
        0 = EE, 1 = EZ; general ``alpha`` as mashr.
    df : float or array_like
        Degrees of freedom of ``Bhat/Shat``; finite values convert t to z:
        ``Shat = Bhat / p2z(2 pt(-|Bhat/Shat|, df))``.
    pval : array_like, optional
        p-values instead of Shat: ``Shat = Bhat / (|qnorm(p/2)| sign(Bhat))``.
    V : array_like, optional
        R x R (common) or R x R x J residual correlation; default identity.  Must be
        symmetric positive definite.
    zero_check_tol, zero_Bhat_Shat_reset, zero_Shat_reset : float
        mashr's zero-SE rule (P12), including its quirks: the joint test uses ``Bhat <= tol``
        (not ``|Bhat|``) and, once any cell has both near zero, other zero-Shat cells are
        left untouched.
    conditions, row_ids : sequence of str, optional
        Override the names taken from DataFrames.

    Returns
    -------
    MashData

    Raises
    ------
    MashInputError
        For shape mismatch, NaN/Inf outside the NA rule, zero or negative SEs (unless a reset
        applies), non-PD V.
    """
    B, bcols, brows = _as_matrix(Bhat, "Bhat")
    J, R = B.shape
    if Shat is None and pval is None:
        Shat = 1.0
    if pval is not None and Shat is not None:
        raise MashInputError("Shat/pval: either Shat or pval can be specified, not both.")
    if pval is not None and np.any(np.isfinite(np.asarray(df, dtype=float))):
        raise MashInputError("df/pval: either df or pval can be specified, not both.")
    if pval is not None:
        P, _, _ = _as_matrix(pval, "pval", (J, R))
        if P.shape != (J, R):
            raise MashInputError(f"pval: shape {P.shape} does not match Bhat {B.shape}.")
        if np.any(P == 0):
            j, r = _first_cell(P == 0)
            raise MashInputError(f"pval: zero p-value at row {j}, condition {r} (infinite z-score); "
                                 "supply Shat instead or floor the p-values.")
        with np.errstate(divide="ignore", invalid="ignore"):
            S = B / _p2z(P, B)
    else:
        S, scols, srows = _as_matrix(Shat, "Shat", (J, R))
        if S.shape != (J, R):
            raise MashInputError(f"Shat: shape {S.shape} does not match Bhat {B.shape}; "
                                 "Bhat and Shat must both be J x R (or Shat a scalar).")
        if bcols is not None and scols is not None and bcols != scols:
            bad = next(i for i, (a, b) in enumerate(zip(bcols, scols)) if a != b) \
                if len(bcols) == len(scols) else 0
            raise MashInputError(
                f"Shat: condition names differ from Bhat's (column {bad}: Bhat {bcols[bad]!r} vs "
                f"Shat {scols[bad]!r}); reorder Shat's columns to match Bhat.")
        if brows is not None and srows is not None and brows != srows:
            bad = next(i for i, (a, b) in enumerate(zip(brows, srows)) if a != b)
            raise MashInputError(
                f"Shat: row ids differ from Bhat's (row {bad}: {brows[bad]!r} vs {srows[bad]!r}); "
                "align the rows of Bhat and Shat.")
        if bcols is None and scols is not None:
            bcols = scols
        if brows is None and srows is not None:
            brows = srows
    if conditions is not None:
        conditions = [str(c) for c in conditions]
        if len(conditions) != R:
            raise MashInputError(f"conditions: {len(conditions)} names for {R} columns of Bhat.")
        bcols = conditions
    if row_ids is not None:
        row_ids = [str(r) for r in row_ids]
        if len(row_ids) != J:
            raise MashInputError(f"row_ids: {len(row_ids)} ids for {J} rows of Bhat.")
        brows = row_ids
    for arr, nm in ((B, "Bhat"), (S, "Shat")):
        if np.any(np.isinf(arr)):
            j, r = _first_cell(np.isinf(arr))
            raise MashInputError(f"{nm}: cannot contain Inf values (row {j}, condition {r}); "
                                 "remove or fix those effects.")
    na_b, na_s = np.isnan(B), np.isnan(S)
    # zero SE rule (comparisons with NaN are False, as R's which() drops NA)
    with np.errstate(invalid="ignore"):
        zero = S <= zero_check_tol
        if zero.any():
            both = zero & (B <= zero_check_tol)
            if both.any():
                S = _reset_or_raise(S, both, zero_Bhat_Shat_reset, lambda j, r: (
                    f"Shat: {S[j, r]:g} at row {j}, condition {r} is at or below zero_check_tol "
                    f"({zero_check_tol:g}) while Bhat there is {B[j, r]:g} (also <= the tolerance, "
                    "mashr's joint zero rule). Fix the standard errors (rescale Bhat and Shat "
                    "together if they are tiny), lower zero_check_tol, or set zero_Bhat_Shat_reset "
                    "to a positive SE (the protocol uses 1000)."))
            else:
                S = _reset_or_raise(S, zero, zero_Shat_reset, lambda j, r: (
                    f"Shat: zero or negative standard error at row {j}, condition {r} "
                    f"(value {S[j, r]:g} <= {zero_check_tol:g}). Set Shat to a positive number, "
                    "lower zero_check_tol, or use zero_Shat_reset."))
    if V is None:
        V = np.eye(R)
    _check_labels(V, bcols, "V")
    V, commonV = _check_V(V, R, J)
    dfa = np.asarray(df, dtype=float)
    if np.any(np.isfinite(dfa)):
        dfm = np.broadcast_to(dfa, (J, R))
        with np.errstate(divide="ignore", invalid="ignore"):
            S = B / _p2z(2 * stdtr(dfm, -np.abs(B / S)), B)
    sbhat_not_null = not np.all(S == 1)
    if sbhat_not_null and not np.array_equal(na_b, np.isnan(S)):
        bad = na_b ^ np.isnan(S)
        j, r = _first_cell(bad)
        which = "Bhat" if na_b[j, r] else "Shat"
        raise MashInputError(
            f"{which}: NaN (missing) at row {j}, condition {r} but not in the other matrix; the "
            "missing-data pattern of Bhat and Shat must agree (set both to NaN, or fill them).")
    if alpha != 0 and sbhat_not_null:
        Sa = S ** alpha
        B = B / Sa
        S = S ** (1 - alpha)
    else:
        Sa = np.ones((J, R))
    _check_magnitude(B, S)
    na = na_b
    if na.any():
        B = np.where(na, 0.0, B)
        S = np.where(na, 1e6, S)
        Sa = np.where(na, 1.0, Sa)
    named = bcols is not None
    conds = list(bcols) if named else [str(i + 1) for i in range(R)]
    return MashData(Bhat=B, Shat=np.asarray(S, float), Shat_alpha=np.asarray(Sa, float), V=V,
                    commonV=commonV, alpha=float(alpha), conditions=conds,
                    row_ids=None if brows is None else list(brows), conditions_named=named)


def mash_update_data(mashdata: MashData, ref=None, V=None) -> MashData:
    """Set the reference condition and/or replace V (mashr ``mash_update_data``).

    Parameters
    ----------
    mashdata : MashData
    ref : str or int, optional
        Turn the data into contrasts against a reference (common-baseline analysis): a
        condition name, its **1-based** index (as R), or ``"mean"``.  The result holds
        :math:`\\hat B L^T` with ``L = contrast_matrix(R, ref, conditions)`` and correlated
        errors :math:`L S_j V S_j L^T` (see :mod:`mashlib.model.contrast`); its conditions are the
        contrast names (``"Adipose-Brain"``, ... or ``"Adipose-mean"``, ...).
    V : array_like, optional
        New R x R or R x R x J correlation of the original conditions (checked positive
        definite), applied before ``ref``.  On contrast data the contrast errors are
        recomputed from ``Shat_orig``, ``L`` and the new V (mashr intends this but stops with
        "The contrast is not correct").

    Returns
    -------
    MashData

    Raises
    ------
    MashInputError
        ``ref`` not a condition (the message lists them), ``ref`` given for data that are
        already contrasts, V of the wrong shape or not positive definite.
    """
    if not isinstance(mashdata, MashData):
        raise MashInputError("mashdata: is not a MashData object; build it with mash_set_data.")
    if ref is not None and mashdata.L is not None:
        raise MashInputError(
            f"ref: the data are already contrasts (reference "
            f"{mashdata.L.attrs.get('reference')!r}); call mash_update_data on the original data.")
    out = mashdata
    if V is not None:
        R0 = mashdata.n_conditions if mashdata.L is None else mashdata.L.shape[1]
        J = mashdata.n_effects
        if isinstance(V, pd.DataFrame):
            conds = mashdata.conditions if mashdata.L is None else list(mashdata.L.columns)
            if mashdata.conditions_named:
                _check_labels(V, conds, "V")
            V = V.to_numpy(dtype=float)
        Vc, commonV = _check_V(V, R0, J)
        out = dataclasses.replace(mashdata, V=Vc, commonV=commonV)
        if out.L is not None:
            f = contrast_fields(np.zeros((J, R0)), out.Shat_orig, Vc, commonV, out.L)
            out = dataclasses.replace(out, Shat=f["Shat"], LSVSLt=f["LSVSLt"])
    if ref is not None:
        L = contrast_matrix(out.n_conditions, ref, out.conditions)
        f = contrast_fields(out.Bhat, out.Shat, out.V, out.commonV, L)
        out = dataclasses.replace(out, Bhat=f["Bhat"], Shat=f["Shat"], Shat_alpha=f["Shat_alpha"],
                                  alpha=0.0, conditions=list(L.index), conditions_named=True,
                                  Shat_orig=f["Shat_orig"], L=L, LSVSLt=f["LSVSLt"])
    return out
