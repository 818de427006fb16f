"""Nearest positive-definite (correlation) matrix: Higham (2002) with Dykstra's correction.

A port of the algorithm of ``Matrix::nearPD`` (Matrix 1.5-3) implemented from

    N. J. Higham (2002), "Computing the nearest correlation matrix -- a problem
    from finance", IMA Journal of Numerical Analysis 22, 329-343,

and the step-by-step description in the porting map (section 2.9). The protocol's
``vhat_simple_specific`` residual correlation is ``near_pd(cov(null_z), corr=True,
conv_tol=1e-6, do_sym=True)`` (:func:`vhat_simple_specific`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._errors import MashConvergenceWarning, MashInputError
from .._validation import check_square

__all__ = ["NearPDResult", "near_pd", "vhat_simple_specific"]


@dataclass
class NearPDResult:
    """Result of :func:`near_pd` (the fields of R's ``nearPD`` object).

    Attributes
    ----------
    mat : numpy.ndarray or pandas.DataFrame
        The nearest positive-definite matrix (a DataFrame with the input's labels when
        the input was a DataFrame).
    eigenvalues : numpy.ndarray
        Eigenvalues of ``mat`` in decreasing order (after the posdefify floor when
        ``do2eigen``; otherwise those of the last projection).
    corr : bool
        Whether a correlation matrix was requested.
    normF : float
        Frobenius norm ``||x - mat||_F`` of the change.
    iterations : int
        Number of alternating-projection iterations.
    rel_tol : float
        Last relative change ``||Y - X||_inf / ||Y||_inf``.
    converged : bool
        Whether ``rel_tol <= conv_tol`` was reached within ``maxit`` iterations.
    """

    mat: np.ndarray | pd.DataFrame
    eigenvalues: np.ndarray
    corr: bool
    normF: float
    iterations: int
    rel_tol: float
    converged: bool
    labels: list | None = field(default=None, repr=False)


def _inf_norm(a: np.ndarray) -> float:
    """Maximum absolute row sum (R's ``norm(a, "I")``)."""
    return float(np.max(np.sum(np.abs(a), axis=1)))


def _is_symmetric(x: np.ndarray) -> bool:
    """R's ``isSymmetric`` for a numeric matrix: ``all.equal(x, t(x))`` (tolerance 100 eps)."""
    tol = 100 * np.finfo(float).eps
    differ = x != x.T
    if not differ.any():
        return True
    # all.equal.numeric: mean absolute difference over the differing entries, relative to
    # their mean absolute value when that exceeds the tolerance
    xy = np.abs(x - x.T)[differ].mean()
    xn = np.abs(x)[differ].mean()
    if np.isfinite(xn) and xn > tol:
        xy = xy / xn
    return bool(xy <= tol)


def near_pd(
    x,
    corr: bool = False,
    keep_diag: bool = False,
    do2eigen: bool = True,
    do_sym: bool = False,
    do_dykstra: bool = True,
    only_values: bool = False,
    ensure_symmetry: bool | None = None,
    eig_tol: float = 1e-6,
    conv_tol: float = 1e-7,
    posd_tol: float = 1e-8,
    maxit: int = 100,
) -> NearPDResult | np.ndarray:
    r"""Nearest positive-definite matrix (``Matrix::nearPD``), Higham's alternating projections.

    Starting from :math:`X_0 = x` (symmetrised, :math:`(x + x^\top)/2`, when it is not
    symmetric) and :math:`\Delta S_0 = 0`, each iteration computes

    .. math::

        Y_k &= X_k, \qquad R_k = Y_k - \Delta S_k \quad\text{(Dykstra correction)},\\
        R_k &= Q\,\mathrm{diag}(d)\,Q^\top,\qquad
        X_{k+1} = Q_p\,\mathrm{diag}(d_p)\,Q_p^\top,\quad p = \{i: d_i > \texttt{eig\_tol}\, d_1\},\\
        \Delta S_{k+1} &= X_{k+1} - R_k,

    then optionally symmetrises :math:`X_{k+1}` (``do_sym``) and projects onto the unit
    diagonal (``corr``: :math:`\mathrm{diag}(X)=1`) or restores the input diagonal
    (``keep_diag``). It stops when :math:`\|Y_k - X_{k+1}\|_\infty / \|Y_k\|_\infty \le`
    ``conv_tol`` (max absolute row sum) or after ``maxit`` iterations (a warning).

    With ``do2eigen`` the result is made strictly positive definite: with eigenvalues
    :math:`d_1 \ge \dots \ge d_n` and :math:`\varepsilon = \texttt{posd\_tol}\,|d_1|`, if
    :math:`d_n < \varepsilon` the eigenvalues are floored at :math:`\varepsilon`, the matrix
    rebuilt, and rescaled as :math:`D X D` with
    :math:`D = \mathrm{diag}(\sqrt{\max(\varepsilon, x^{old}_{ii}) / x^{new}_{ii}})` so
    the diagonal is kept; with ``corr`` the diagonal is then reset to 1.

    Parameters
    ----------
    x : array_like or pandas.DataFrame, shape (n, n)
        Approximately positive-definite symmetric matrix.
    corr : bool
        Find the nearest *correlation* matrix (unit diagonal).
    keep_diag : bool
        Keep the diagonal of ``x`` (ignored when ``corr``).
    do2eigen : bool
        Apply the final eigenvalue floor (posdefify step).
    do_sym : bool
        Symmetrise ``X`` after each projection.
    do_dykstra : bool
        Use Dykstra's correction (otherwise plain alternating projections).
    only_values : bool
        Return only the (floored) eigenvalues.
    ensure_symmetry : bool, optional
        Symmetrise the input first; default: when ``x`` is not symmetric (R's
        ``!isSymmetric(x)``).
    eig_tol, conv_tol, posd_tol : float
        Relative eigenvalue cut-off, convergence tolerance, final eigenvalue floor.
    maxit : int
        Maximum number of iterations.

    Returns
    -------
    NearPDResult or numpy.ndarray
        The result (``only_values``: the eigenvalues).

    Raises
    ------
    MashInputError
        ``x`` is not a finite square matrix, or is negative semi-definite (no
        eigenvalue above ``eig_tol * d_1``).

    Examples
    --------
    >>> r = near_pd([[1, .9, .7], [.9, 1, -.9], [.7, -.9, 1]], corr=True, do_sym=True,
    ...             conv_tol=1e-6)
    >>> round(float(r.mat[0, 1]), 5), r.iterations
    (0.55358, 13)
    """
    x, labels = check_square(x, "`x`")
    for nm, val in (("eig_tol", eig_tol), ("conv_tol", conv_tol), ("posd_tol", posd_tol)):
        if not (np.isfinite(val) and val >= 0):
            raise MashInputError(f"`{nm}` must be a non-negative number; got {val!r}.")
    if int(maxit) < 0:
        raise MashInputError(f"`maxit` must be a non-negative integer; got {maxit!r}.")
    n = x.shape[0]
    if ensure_symmetry is None:
        ensure_symmetry = not _is_symmetric(x)
    if ensure_symmetry:
        x = (x + x.T) / 2.0
    diag0 = np.diag(x).copy()
    d_s = np.zeros_like(x)
    X = x.copy()
    it = 0
    converged = False
    conv = np.inf
    d = np.linalg.eigvalsh(X)[::-1]
    idx = np.arange(n)
    while it < maxit and not converged:
        Y = X
        Rk = Y - d_s if do_dykstra else Y
        d, Q = np.linalg.eigh(Rk)
        d, Q = d[::-1], Q[:, ::-1]
        p = d > eig_tol * d[0]
        if not p.any():
            raise MashInputError(
                "`x` seems negative semi-definite (no eigenvalue above eig_tol * largest); "
                "nearPD cannot find a positive-definite matrix near it. Check the input matrix."
            )
        Qp = Q[:, p]
        X = (Qp * d[p]) @ Qp.T
        if do_dykstra:
            d_s = X - Rk
        if do_sym:
            X = (X + X.T) / 2.0
        if corr:
            X[idx, idx] = 1.0
        elif keep_diag:
            X[idx, idx] = diag0
        conv = _inf_norm(Y - X) / _inf_norm(Y)
        it += 1
        converged = conv <= conv_tol
    if not converged and maxit > 0:
        warnings.warn(
            f"near_pd did not converge in {it} iterations (relative change {conv:.3g} > "
            f"conv_tol {conv_tol}); increase `maxit` or `conv_tol`.",
            MashConvergenceWarning,
            stacklevel=2,
        )
    if do2eigen or only_values:
        d, Q = np.linalg.eigh(X)
        d, Q = d[::-1].copy(), Q[:, ::-1]
        eps = posd_tol * abs(d[0])
        if d[-1] < eps:
            d[d < eps] = eps
            if not only_values:
                o_diag = np.diag(X).copy()
                X = (Q * d) @ Q.T
                D = np.sqrt(np.maximum(eps, o_diag) / np.diag(X))
                X = D[:, None] * X * D[None, :]
        if only_values:
            return d
        if corr:
            X[idx, idx] = 1.0
        elif keep_diag:
            X[idx, idx] = diag0
    normF = float(np.linalg.norm(x - X, "fro"))
    mat = pd.DataFrame(X, index=labels, columns=labels) if labels is not None else X
    return NearPDResult(
        mat=mat,
        eigenvalues=np.asarray(d, dtype=float),
        corr=bool(corr),
        normF=normF,
        iterations=it,
        rel_tol=float(conv),
        converged=bool(converged),
        labels=labels,
    )


def vhat_simple_specific(null_z, conditions=None) -> pd.DataFrame:
    r"""Residual correlation ``vhat_simple_specific``: nearest correlation matrix of cov(null z).

    The protocol computes ``as.matrix(Matrix::nearPD(stats::cov(nullZ), conv.tol=1e-6,
    doSym=TRUE, corr=TRUE)$mat)`` on the null z-scores :math:`Z` (J x R, ``null.b /
    null.s`` after NA -> 0 / 1000), i.e. :func:`near_pd` of the sample covariance

    .. math:: C = \frac{1}{J-1} (Z - \bar Z)^\top (Z - \bar Z)

    with a unit diagonal. No z-thresholding is applied.

    Parameters
    ----------
    null_z : array_like or pandas.DataFrame, shape (J, R)
        Null-set z-scores (complete, no NaN).
    conditions : list of str, optional
        Condition names (default: the DataFrame's columns, else ``"1".."R"``).

    Returns
    -------
    pandas.DataFrame
        R x R correlation matrix labelled by conditions; ``.attrs`` holds
        ``n_null_rows``, ``iterations`` and ``converged``.

    Raises
    ------
    MashInputError
        Non-numeric or non-2-D input, missing values, or fewer than 2 rows.
    """
    Z, conditions = _null_z_matrix(null_z, conditions, "null_z")
    C = np.cov(Z, rowvar=False, ddof=1)
    res = near_pd(C, corr=True, conv_tol=1e-6, do_sym=True)
    out = pd.DataFrame(np.asarray(res.mat), index=conditions, columns=conditions)
    out.attrs.update(n_null_rows=int(Z.shape[0]), iterations=res.iterations,
                     converged=res.converged)
    return out


def _null_z_matrix(null_z, conditions, name: str, allow_nan: bool = False):
    """Validate a J x R null z matrix; return (ndarray, condition names)."""
    if isinstance(null_z, pd.DataFrame):
        if conditions is None:
            conditions = [str(c) for c in null_z.columns]
        null_z = null_z.to_numpy()
    try:
        Z = np.asarray(null_z, dtype=float)
    except (TypeError, ValueError):
        raise MashInputError(
            f"`{name}` must be a numeric matrix (rows = null effects, columns = conditions)."
        ) from None
    if Z.ndim != 2 or Z.shape[1] < 1:
        raise MashInputError(
            f"`{name}` must be a 2-D matrix (null effects x conditions); got shape {Z.shape}."
        )
    if Z.shape[0] < 2:
        raise MashInputError(
            f"`{name}` has {Z.shape[0]} row(s); at least 2 null rows are needed to estimate a "
            "correlation. Not enough null data: use `vhat_identity` instead."
        )
    if not allow_nan and not np.all(np.isfinite(Z)):
        r, c = np.argwhere(~np.isfinite(Z))[0]
        raise MashInputError(
            f"`{name}` has a missing or infinite value at row {r + 1}, condition {c + 1}; "
            "fill NA as the protocol does (b -> 0, s -> 1000) before computing z = b / s."
        )
    if conditions is None:
        conditions = [str(i + 1) for i in range(Z.shape[1])]
    conditions = list(conditions)
    if len(conditions) != Z.shape[1]:
        raise MashInputError(
            f"`conditions` has {len(conditions)} names but `{name}` has {Z.shape[1]} columns; "
            "give one name per condition."
        )
    return Z, conditions
