"""Truncated-Eigenvalue EM (TEEM) for data-driven covariances (mashr ``cov_ed(algorithm = "teem")``).

Port of mashr 0.2.81 ``src/mash.h`` class ``TEEM`` (Y. Yang and M. Stephens) and
``R/ed.R::teem_wrapper``.

Model.  TEEM works on z-scores :math:`x_i = \\hat b_i / \\hat s_i` and assumes
:math:`x_i \\sim \\sum_k w_k N_R(0, T_k)` with :math:`T_k = U_k + I` (the errors of a z-score
have unit variance; ``data$V`` is ignored and no :math:`n^{-1/2} I` is added, unlike
``bovy_wrapper``).  One iteration, from :math:`T_k = U_k^{init} + I`, :math:`w` = ``w_init``:

.. math::

    p_{ik} &\\propto w_k N(x_i; 0, T_k) \\quad (\\text{softmax over } k) \\\\
    T_k &\\leftarrow \\mathrm{shrink}\\Big(\\textstyle\\sum_i p_{ik} x_i x_i^T / \\sum_i p_{ik}\\Big),
    \\qquad w_k \\leftarrow \\textstyle\\sum_i p_{ik} / n

where :math:`\\mathrm{shrink}` replaces every eigenvalue :math:`\\le 1` by :math:`1 +`
``eigen_tol`` (so :math:`U_k = T_k - I` stays positive semi-definite).  After each iteration
the objective :math:`\\sum_i \\log \\sum_k w_k N(x_i; 0, T_k)` (at the new parameters) and
:math:`d = \\max_k |w_k - w_k^{old}|` are recorded; the loop stops at the first iteration with
:math:`d <` ``converge_tol`` or after ``maxiter`` iterations.  Returned: :math:`U_k = T_k - I`.

Vectorised over rows and components (one Cholesky per component and iteration).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

__all__ = ["TeemFit", "fit_teem"]

_LOG2PI = np.log(2.0 * np.pi)
logger = logging.getLogger("mashlib")


@dataclass
class TeemFit:
    """Result of :func:`fit_teem` (mashr ``teem_wrapper``'s list).

    Attributes
    ----------
    U : ndarray (K, R, R)
        Fitted covariances :math:`T_k - I`.
    w : ndarray (K,)
        Mixture weights.
    objective : ndarray (niter,)
        Log-likelihood after each iteration (the last is the final log-likelihood).
    maxd : ndarray (niter,)
        :math:`\\max_k |w_k - w_k^{old}|` of each iteration.
    """

    U: np.ndarray
    w: np.ndarray
    objective: np.ndarray = field(repr=False)
    maxd: np.ndarray = field(repr=False)

    @property
    def niter(self) -> int:
        """Number of iterations run."""
        return int(self.objective.size)

    @property
    def loglik(self) -> float:
        """Final log-likelihood (``objective[-1]``)."""
        return float(self.objective[-1])


def _log_dens(X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(n, K) matrix of ``log N(x_i; 0, T_k)`` (one Cholesky per component, BLAS products)."""
    R = X.shape[1]
    L = np.linalg.cholesky(T)                                          # (K, R, R)
    Linv = np.linalg.inv(L)
    Z = np.matmul(X[None], np.swapaxes(Linv, 1, 2))                    # (K, n, R)
    return (-0.5 * R * _LOG2PI - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)[None]
            - 0.5 * np.einsum("kna,kna->nk", Z, Z))


def _shrink(T: np.ndarray, eps: float) -> np.ndarray:
    """Eigenvalues <= 1 replaced by 1 + eps (batched over components)."""
    lam, Q = np.linalg.eigh(T)
    lam = np.where(lam > 1.0, lam, 1.0 + eps)
    S = (Q * lam[:, None, :]) @ np.swapaxes(Q, 1, 2)
    return 0.5 * (S + np.swapaxes(S, 1, 2))


def fit_teem(X, w_init, U_init, maxiter: int = 5000, converge_tol: float = 1e-7,
             eigen_tol: float = 1e-7, verbose: bool = False) -> TeemFit:
    """Run TEEM on z-scores (mashr ``fit_teem_rcpp``).

    Parameters
    ----------
    X : ndarray (n, R)
        z-scores of the rows used.
    w_init : ndarray (K,)
        Initial weights.
    U_init : ndarray (K, R, R)
        Initial covariances (PSD).
    maxiter : int
    converge_tol : float
        Stop when the largest change of a weight is below this.
    eigen_tol : float
        Eigenvalues of :math:`T_k` at or below 1 are set to ``1 + eigen_tol``.
    verbose : bool
        Log the objective every iteration (logger ``mashlib``, INFO).

    Returns
    -------
    TeemFit
    """
    X = np.asarray(X, dtype=float)
    w = np.asarray(w_init, dtype=float).copy()
    n, R = X.shape
    T = np.asarray(U_init, dtype=float) + np.eye(R)[None]
    obj = np.zeros(int(maxiter))
    maxd = np.zeros(int(maxiter))
    it = 0
    ld = _log_dens(X, T)                # the E-step of iteration t+1 uses the parameters the
    for it in range(int(maxiter)):      # objective of iteration t was evaluated at: reuse it
        w0 = w
        with np.errstate(divide="ignore"):
            lp = np.log(w)[None] + ld
        P = np.exp(lp - lp.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        colsum = P.sum(axis=0)
        live = colsum > 0                   # a component with no weight keeps its T (R: NaN)
        XP = X[:, None, :] * P[:, live, None]                             # (n, K', R)
        Tn = np.tensordot(XP, X, axes=([0], [0])) / colsum[live, None, None]
        T = T.copy()
        T[live] = _shrink(Tn, eigen_tol)
        w = colsum / n
        ld = _log_dens(X, T)
        with np.errstate(divide="ignore"):
            f = float(logsumexp(np.log(w)[None] + ld, axis=1).sum())
        d = float(np.max(np.abs(w - w0)))
        obj[it], maxd[it] = f, d
        if verbose:
            logger.info("TEEM iteration %d: objective %.10g, max weight change %.3g", it + 1, f, d)
        if d < converge_tol:
            break
    U = T - np.eye(R)[None]
    return TeemFit(U=U, w=w, objective=obj[:it + 1].copy(), maxd=maxd[:it + 1].copy())
