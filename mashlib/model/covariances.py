"""Prior covariance matrices for mash (mashr ``R/compute_covs.R``, ``R/data2cov.R``, ``R/cov_udi.R``).

A covariance list ("Ulist") is an insertion-ordered ``dict[str, ndarray]`` of R x R
matrices with mashr's names (map §1.3, §1.4, §2.2 "Covariances").
"""
from __future__ import annotations

import itertools
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from .._errors import MashInputError
from .._validation import check_subset
from .data import MashData

__all__ = ["cov_canonical", "cov_pca", "cov_udi", "cov_empirical", "cov_from_factors",
           "normalize_Ulist", "normalize_cov", "scale_cov", "expand_cov", "check_covmat",
           "check_Ulist", "cov_all_zeros"]

_METHODS = ("null", "identity", "singletons", "equal_effects", "simple_het")


def _R_of(data) -> int:
    if isinstance(data, MashData):
        return data.n_conditions
    return int(np.asarray(data).shape[1])


def _match_method(name: str) -> str:
    """R ``match.arg`` partial matching against the canonical method names."""
    if name in _METHODS:
        return name
    hits = [m for m in _METHODS if m.startswith(name)]
    if len(hits) != 1:
        raise MashInputError(
            f"cov_methods: {name!r} does not match exactly one of {list(_METHODS)} "
            f"({'ambiguous' if hits else 'no match'}); use one of those names.")
    return hits[0]


def cov_canonical(data: MashData,
                  cov_methods: Iterable = ("identity", "singletons", "equal_effects", "simple_het")
                  ) -> dict:
    """Canonical covariance matrices (mashr ``cov_canonical``).

    Parameters
    ----------
    data : MashData
    cov_methods : iterable
        Method names, partially matched as R's ``match.arg`` against ``null``, ``identity``,
        ``singletons``, ``equal_effects``, ``simple_het``; or a mapping ``name -> callable``
        where ``callable(data)`` returns a matrix or a list of matrices.

    Returns
    -------
    dict
        ``identity`` = I; singletons ``e_r e_r^T`` named by condition when the data has
        condition names, else ``singletons_<r>``; ``equal_effects`` = 11^T;
        ``simple_het_1..3`` = correlation 0.25, 0.5, 0.75 with unit diagonal;
        ``null`` = 0.  For R conditions the default gives R + 5 matrices.
    """
    R = _R_of(data)
    named = isinstance(data, MashData) and data.conditions_named
    out: dict = {}
    items = list(cov_methods.items()) if isinstance(cov_methods, Mapping) else list(cov_methods)
    if isinstance(cov_methods, str):
        items = [cov_methods]
    for item in items:
        if isinstance(item, tuple):
            name, fn = item
            res = fn(data)
            if isinstance(res, dict):
                out.update(res)
            elif isinstance(res, (list, tuple)):
                for i, m in enumerate(res):
                    out[f"{name}_{i + 1}"] = np.asarray(m, float)
            else:
                out[name] = np.asarray(res, float)
            continue
        name = _match_method(str(item))
        if name == "null":
            out["null"] = cov_all_zeros(data)
        elif name == "identity":
            out["identity"] = np.eye(R)
        elif name == "singletons":
            for r in range(R):
                m = np.zeros((R, R))
                m[r, r] = 1.0
                out[data.conditions[r] if named else f"singletons_{r + 1}"] = m
        elif name == "equal_effects":
            out["equal_effects"] = np.ones((R, R))
        elif name == "simple_het":
            for i, c in enumerate((0.25, 0.5, 0.75)):
                m = np.full((R, R), c)
                np.fill_diagonal(m, 1.0)
                out[f"simple_het_{i + 1}"] = m
    return out


def cov_all_zeros(data) -> np.ndarray:
    """The R x R zero matrix (mashr's internal ``cov_all_zeros``; canonical method ``"null"``).

    ``data`` is a MashData or any (J, R) matrix.
    """
    R = _R_of(data)
    return np.zeros((R, R))


def cov_from_factors(f, name: str) -> dict:
    """Rank-one covariances ``f_k f_k^T`` from the **rows** of ``f``, named ``<name>_<k>``."""
    f = np.atleast_2d(np.asarray(f, float))
    return {f"{name}_{k + 1}": np.outer(f[k], f[k]) for k in range(f.shape[0])}


def cov_pca(data: MashData, npc: int, subset=None) -> dict:
    """PCA covariances (mashr ``cov_pca``): SVD of the uncentred ``Bhat[subset]``.

    With ``Bhat_s = U D W^T``: ``PCA_k = w_k w_k^T`` (k = 1..npc) and
    ``tPCA = W_npc D_npc^2 W_npc^T / n_subset``.

    Raises
    ------
    MashInputError
        Unless ``1 < npc <= R``.
    """
    R = data.n_conditions
    if not (1 < npc <= R):
        raise MashInputError(f"npc: must satisfy 1 < npc <= R = {R}, got {npc}.")
    B = data.Bhat if subset is None else data.Bhat[check_subset(subset, data.n_effects, what="cov_pca")]
    _, d, wt = np.linalg.svd(B, full_matrices=False)
    W = wt[:npc].T
    out = cov_from_factors(W.T, "PCA")
    out["tPCA"] = (W * d[:npc] ** 2) @ W.T / B.shape[0]
    return out


def cov_empirical(data: MashData, subset=None) -> dict:
    """Empirical (uncentred) covariance ``{"empirical": Bhat_s^T Bhat_s / n}``.

    Not a mashr export: the "empirical covariance" of the mash paper; equal to ``tPCA``
    with all R components.
    """
    B = data.Bhat if subset is None else data.Bhat[check_subset(subset, data.n_effects,
                                                                what="cov_empirical")]
    return {"empirical": B.T @ B / B.shape[0]}


def _udi_model_matrix(R: int) -> list:
    """All U/D/I labellings with at least one D, in R ``expand.grid`` order (first varies fastest)."""
    rows = []
    for combo in itertools.product("UDI", repeat=R):
        lab = combo[::-1]
        if "D" in lab:
            rows.append(lab)
    return rows


def cov_udi(data: MashData, model=None) -> dict:
    """Unassociated/Directly/Indirectly associated covariances (mashr ``cov_udi``).

    For a labelling with D (direct), U (unassociated), I (indirect) sets:
    :math:`U_0 = V_{DD} - V_{DU} V_{UU}^{-1} V_{UD}`, ``res[D,D] = U0``; with
    ``Ic = (U, D)`` and ``B_D`` the D columns of :math:`V_{Ic,Ic}^{-1}`:
    ``res[I,D] = V_{I,Ic} B_D U0`` and ``res[I,I] = V_{I,Ic} B_D U0 B_D^T V_{Ic,I}``.
    Named ``cov_udi_<labels>``.
    """
    R = data.n_conditions
    if not data.commonV:
        raise MashInputError("data: cov_udi needs a common V (R x R).")
    V = data.V
    if model is None:
        models = _udi_model_matrix(R)
    else:
        arr = np.atleast_2d(np.asarray(model, dtype=str))
        models = [tuple(r) for r in arr]
    out = {}
    for lab in models:
        lab = np.asarray(lab)
        if lab.size != R or not set(lab) <= {"U", "D", "I"}:
            raise MashInputError(f"model: {''.join(lab)} must be a length-{R} vector of U, D, I.")
        D, U, I = (np.flatnonzero(lab == c) for c in "DUI")
        if D.size == 0:
            raise MashInputError(f"model: {''.join(lab)} must have at least one direct (D) association.")
        res = np.zeros((R, R))
        VDD, VDU, VUU = V[np.ix_(D, D)], V[np.ix_(D, U)], V[np.ix_(U, U)]
        U0 = VDD - VDU @ np.linalg.solve(VUU, VDU.T) if U.size else VDD
        res[np.ix_(D, D)] = U0
        Ic = np.concatenate([U, D])
        BD = np.linalg.inv(V[np.ix_(Ic, Ic)])[:, U.size:]
        VIIc = V[np.ix_(I, Ic)]
        res[np.ix_(I, D)] = VIIc @ BD @ U0
        res[np.ix_(D, I)] = res[np.ix_(I, D)].T
        res[np.ix_(I, I)] = VIIc @ BD @ U0 @ BD.T @ VIIc.T
        out["cov_udi_" + "".join(lab)] = res
    return out


def normalize_cov(U: np.ndarray) -> np.ndarray:
    """Divide U by its largest diagonal element, unless that is 0 (mashr ``normalize_cov``)."""
    m = np.max(np.diag(U))
    return U / m if m != 0 else U


def normalize_Ulist(Ulist: Mapping) -> dict:
    """Apply :func:`normalize_cov` to each matrix."""
    return {k: normalize_cov(np.asarray(v, float)) for k, v in Ulist.items()}


def scale_cov(Ulist: Mapping, grid: Sequence[float]) -> dict:
    """``grid_l^2 U_k`` named ``<name>.<l>`` (l 1-based); the outer loop runs over the grid."""
    out = {}
    for l, g in enumerate(np.asarray(grid, float)):
        for k, U in Ulist.items():
            out[f"{k}.{l + 1}"] = (g * g) * np.asarray(U, float)
    return out


def expand_cov(Ulist: Mapping, grid: Sequence[float], usepointmass: bool = True) -> dict:
    """mashr ``expand_cov``: ``{"null": 0}`` (if usepointmass) then :func:`scale_cov`.

    P = 1 + K L components, names ``null``, ``<U>.<l>``.
    """
    R = np.asarray(next(iter(Ulist.values()))).shape[0]
    out = {"null": np.zeros((R, R))} if usepointmass else {}
    out.update(scale_cov(Ulist, grid))
    return out


def check_covmat(U, name: str = "U", R: Optional[int] = None, psd: bool = True) -> np.ndarray:
    """Check one prior covariance as mashr's ``check_covmat_basics`` + ``issemidef`` (P3).

    Requires a finite square numeric matrix, symmetric within mashr's ``isSymmetric``
    tolerance (mean relative difference < 100 eps), of size R x R when ``R`` is given, with
    all eigenvalues > -1e-8 when ``psd``.

    Returns
    -------
    ndarray
        The matrix as float.
    """
    try:
        U = np.asarray(U, dtype=float)
    except (TypeError, ValueError):
        raise MashInputError(f"Ulist[{name!r}]: is not a numeric matrix.") from None
    if U.ndim != 2:
        raise MashInputError(f"Ulist[{name!r}]: is not a matrix (shape {U.shape}).")
    if not np.all(np.isfinite(U)):
        raise MashInputError(f"Ulist[{name!r}]: cannot contain NA/NaN/Inf values.")
    if U.shape[0] != U.shape[1]:
        raise MashInputError(f"Ulist[{name!r}]: is not a square matrix (shape {U.shape}).")
    if R is not None and U.shape[0] != R:
        raise MashInputError(f"Ulist[{name!r}]: is {U.shape[0]} x {U.shape[1]} but the data have "
                             f"R = {R} conditions; matrices in Ulist must be {R} x {R}.")
    denom = np.sum(np.abs(U))
    if denom > 0 and np.sum(np.abs(U - U.T)) / denom > 100 * np.finfo(float).eps:
        raise MashInputError(f"Ulist[{name!r}]: is not a symmetric matrix; symmetrise it "
                             "((U + U.T) / 2).")
    if psd:
        ev = np.linalg.eigvalsh((U + U.T) / 2)
        if ev.min() <= -1e-8:
            raise MashInputError(
                f"Ulist[{name!r}]: is not positive semi-definite (smallest eigenvalue "
                f"{ev.min():.3g} <= -1e-8); all prior covariances must be PSD (clip negative "
                "eigenvalues or add a small multiple of the identity).")
    return U


def check_Ulist(Ulist: Mapping, R: Optional[int] = None, conditions=None) -> dict:
    """Validate a whole covariance list (non-empty mapping of PSD R x R matrices).

    When ``conditions`` is given, matrices passed as labelled DataFrames must carry exactly
    those condition names, in order.
    """
    if isinstance(Ulist, np.ndarray) and Ulist.ndim == 2:
        Ulist = {"U_1": Ulist}
    if isinstance(Ulist, (list, tuple)):
        Ulist = {f"U_{i + 1}": u for i, u in enumerate(Ulist)}
    if not isinstance(Ulist, Mapping):
        raise MashInputError("Ulist: must be a dict name -> R x R matrix.")
    if len(Ulist) == 0:
        raise MashInputError("Ulist: is empty; supply at least one prior covariance "
                             "(e.g. cov_canonical(data)).")
    if conditions is not None:
        import pandas as pd
        for k, v in Ulist.items():
            if isinstance(v, pd.DataFrame) and not isinstance(v.columns, pd.RangeIndex):
                for axis, labels in (("columns", v.columns), ("index", v.index)):
                    if [str(c) for c in labels] != list(conditions):
                        raise MashInputError(
                            f"Ulist[{k!r}]: {axis} {[str(c) for c in labels]} do not match the "
                            f"data's conditions {list(conditions)}; reorder the matrix.")
    return {str(k): check_covmat(v, str(k), R) for k, v in Ulist.items()}
