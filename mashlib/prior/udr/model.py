"""Ultimate deconvolution (udr 0.3-158): :func:`ud_init` and :func:`ud_fit`.

Model (map §2.5).  For rows :math:`x_i \\in R^m`,

.. math::  x_i \\mid \\theta_i \\sim N_m(\\theta_i, V_i), \\qquad
           \\theta_i \\sim \\textstyle\\sum_k w_k N_m(0, U_k),

with U_k *scaled* (:math:`s_k U_{0k}`, only s estimated), *rank1* (:math:`u_ku_k^T`) or
*unconstrained*.  The rows are *iid* when every :math:`V_i = V` (EZ mash data, or EE data
whose Shat rows are all equal), *non-iid* otherwise (EE: :math:`V_i = S_iVS_i`).

EM (``ud_fit``), per iteration: responsibilities
:math:`P_{ik} \\propto w_k N(x_i; 0, U_k + V_i)`; optional residual update of V (iid only);
prior-covariance updates (``ed``, ``ted``, ``fa``, ``em``, ``none``; iid updates run on the
whitened data :math:`x' = xR^{-1}`, :math:`V = R^TR`) for the components with
:math:`\\sum_i P_{ik} > ` ``update_threshold``; :math:`w = \\bar P`; then
:math:`\\ell = \\sum_i \\log\\sum_k w_k N(x_i; 0, U_k + V_i)` plus the log-penalty.  The loop stops
when the penalised log-likelihood increases by less than ``tol_lik`` (a decrease also stops it).

Memory (mashr #125): for EE mash data with a common V the non-iid :math:`V_i = S_iVS_i` are
kept implicit (:class:`mashlib.prior.udr.updates.RowScaledV`: (n, m) scales + one V), and the
E-step and every non-iid update run over row blocks of about 32 MB, accumulating the sums
the M-step needs; peak memory is O(nm + nk + block) instead of O(nm^2) per array.

Departures from udr, each explicit (never silent):

* **P17** (iid scaled components: udr updates ``s`` but never rescales ``mat``, so the fit
  never sees the scale).  Default ``control["scaled_iid"] = "rescale"``: ``mat = s * U0`` after
  each update (a proper EM).  ``"udr"`` reproduces R exactly.
* **Penalty on non-iid data** (udr silently ignores ``lambda``).  Here the ED update is
  penalised with the same inverse-Wishart prior on :math:`U/\\sigma^2` (closed form, see
  :func:`mashlib.prior.udr.updates.ed_notiid`) and the penalty enters the objective.  Pass
  ``lambda_=0`` to reproduce R on such data.
* ``ted``/``fa`` unconstrained updates on non-iid data raise :class:`MashInputError` (as R).
  ``penalty_type="nu"`` with the ``ed`` update, a non-zero lambda with an update other than
  ``ed``/``ted``, and ``S0`` with ``ted`` raise too (R ignores or crashes).
* ``control["tol"]`` is unused by udr's stopping rule; it is used here only with
  ``control["use_tol"] = True`` (stop also when max |Δw|, |ΔU|, |ΔV| < tol).
* udr checks only the last V_i for positive semi-definiteness (loop bug); all are checked.
* EE data are iid when every Shat row equals the first (udr's test recycles the first row
  column-major, P19, and sends identical rows with unequal columns down the non-iid path).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from ..._blas import single_blas_thread
from ..._errors import MashInputError
from . import updates as up

__all__ = ["UdComponent", "UdFit", "ud_init", "ud_fit_control_default"]

_LOG2PI = np.log(2.0 * np.pi)


@dataclass
class UdComponent:
    """One prior covariance (udr's list with attribute ``covtype``).

    Attributes
    ----------
    covtype : {"scaled", "rank1", "unconstrained"}
    mat : ndarray (m, m)
        The matrix used by the likelihood.
    s : float
        Scale (scaled) or IW/nuclear-norm scale :math:`\\sigma^2` (unconstrained).
    U0, Q : ndarray
        Scaled only: the fixed shape and :math:`QQ^T = U_0`.
    vec : ndarray
        Rank-1 only: ``mat = vec vec^T``.
    """

    covtype: str
    mat: np.ndarray
    s: float = 1.0
    U0: Optional[np.ndarray] = None
    Q: Optional[np.ndarray] = None
    vec: Optional[np.ndarray] = None

    def copy(self):
        return UdComponent(self.covtype, self.mat.copy(), self.s,
                           None if self.U0 is None else self.U0.copy(),
                           None if self.Q is None else self.Q.copy(),
                           None if self.vec is None else self.vec.copy())

    def transformed(self, A):
        """Covariance of :math:`A^Tx` when Cov(x) = this component (udr transform_*)."""
        if self.covtype == "scaled":
            U0 = A.T @ self.U0 @ A
            return UdComponent("scaled", self.s * U0, self.s, U0, up.get_mat_Q(U0))
        if self.covtype == "rank1":
            v = A.T @ self.vec
            return UdComponent("rank1", np.outer(v, v), vec=v)
        return UdComponent("unconstrained", A.T @ self.mat @ A, self.s)


@dataclass
class UdFit:
    """An ultimate-deconvolution fit (udr class ``ud_fit``).

    Attributes
    ----------
    X : ndarray (n, m)
    V : ndarray (m, m) when iid, else (n, m, m) or, for EE mash data with a common V,
        a :class:`mashlib.prior.udr.updates.RowScaledV` (:math:`V_i = S_iVS_i` kept implicit:
        (n, m) scales and one (m, m) V; indexable like the (n, m, m) array)
    U : dict name -> UdComponent
    w : ndarray (k,)
        Mixture weights, in the order of ``U`` (``w_named`` gives a Series).
    loglik, loglik_penalized, logplt : float
    progress : DataFrame
        iter, loglik, loglik_pen, delta_w, delta_v, delta_u, timing (one row per iteration,
        appended across calls).
    P : ndarray (n, k)
        Responsibilities at the current parameters.
    niter : int
        Iterations of the last :func:`ud_fit` call.
    control : dict
        Settings used by the last call.
    """

    X: np.ndarray
    V: np.ndarray
    U: dict
    w: np.ndarray
    loglik: float
    loglik_penalized: float = -np.inf
    logplt: float = np.nan
    progress: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["iter", "loglik", "loglik_pen", "delta_w", "delta_v", "delta_u", "timing"]))
    P: Optional[np.ndarray] = None
    niter: int = 0
    control: dict = field(default_factory=dict)

    @property
    def iid(self) -> bool:
        """Whether all rows share one residual covariance V."""
        return self.V.ndim == 2

    @property
    def Ulist(self) -> dict:
        """name -> prior covariance matrix (udr ``get_Ulist``; pecotmr's ``map(U, "mat")``)."""
        return {n: c.mat for n, c in self.U.items()}

    @property
    def w_named(self) -> pd.Series:
        """Mixture weights named by component."""
        return pd.Series(self.w, index=list(self.U))


def ud_fit_control_default() -> dict:
    """udr's ``ud_fit_control_default()`` with Python names (``lambda`` -> ``lambda_``)."""
    return dict(weights_update=None, resid_update=None, scaled_update=None, rank1_update=None,
                unconstrained_update=None, version="R", maxiter=20, minval=1e-8, tol=1e-6,
                tol_lik=1e-3, zero_threshold=1e-15, update_threshold=1e-3, lambda_=0.0,
                S0=None, penalty_type="iw", scaled_iid="rescale", use_tol=False)


# ----------------------------------------------------------------------------- likelihood
def _logdens(X, U, V):
    """n x k matrix of :math:`\\log N(x_i; 0, U_k + V_i)`, batched Cholesky.

    Non-iid V (an (n, m, m) array or :class:`mashlib.prior.udr.updates.RowScaledV`) is processed in
    row blocks of about ``udr_updates._BLOCK_BYTES`` per (rows, k, m, m) array.
    """
    n, m = X.shape
    k = U.shape[0]
    out = np.empty((n, k))
    if V.ndim == 2:
        L = np.linalg.cholesky(U + V[None])                       # (k, m, m)
        Linv = np.linalg.inv(L)
        ld = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        for j in range(k):                                        # k small; rows batched
            z = X @ Linv[j].T
            out[:, j] = -0.5 * np.einsum("ia,ia->i", z, z) - ld[j] - 0.5 * m * _LOG2PI
        return out
    for s, e in up.row_blocks(n, m, k):                           # V: array or RowScaledV
        L = np.linalg.cholesky(U[None] + V[s:e][:, None])          # (b, k, m, m)
        Xb = np.broadcast_to(X[s:e, None, :, None], (e - s, k, m, 1))
        z = np.linalg.solve(L, Xb)[..., 0]
        out[s:e] = (-0.5 * (z * z).sum(axis=2)
                    - np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=2) - 0.5 * m * _LOG2PI)
    return out


def _stack(U: Mapping) -> np.ndarray:
    return np.stack([c.mat for c in U.values()])


def _loglik_and_P(X, w, U, V):
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    W = _logdens(X, _stack(U), V) + lw[None, :]
    a = W.max(axis=1)
    E = np.exp(W - a[:, None])
    s = E.sum(axis=1)
    return float((np.log(s) + a).sum()), E / s[:, None]


# ----------------------------------------------------------------------------- ud_init
def _issemidef(X, minval=-1e-8):
    return bool(np.all(np.linalg.eigvalsh(0.5 * (X + X.T)) > minval))


def _makeposdef(X, minval=1e-8):
    d, Q = up.eig_desc(X)
    if np.all(d > minval):
        return X
    d = np.maximum(d, minval)
    return (Q * d) @ Q.T


def _as_list(U, name):
    if U is None:
        return None
    if isinstance(U, Mapping):
        return {str(k): np.asarray(v, dtype=float) for k, v in U.items()}
    if isinstance(U, np.ndarray) and U.ndim == 2:
        return [np.asarray(U, dtype=float)]
    return [np.asarray(v, dtype=float) for v in U]


def _data_XV(dat, V):
    """udr's handling of a mash object or a matrix -> (X, V)."""
    if hasattr(dat, "Bhat") and hasattr(dat, "Shat"):
        if V is not None:
            warnings.warn("ud_init: V is ignored because the mash data supplies it")
        Bhat = np.asarray(dat.Bhat, dtype=float)
        Shat = np.asarray(dat.Shat, dtype=float)
        Vd = np.asarray(dat.V, dtype=float)
        alpha = float(getattr(dat, "alpha", 0.0))
        commonV = bool(getattr(dat, "commonV", Vd.ndim == 2))
        if alpha == 1:
            return Bhat / Shat, (Vd if Vd.ndim == 2 else np.moveaxis(Vd, 2, 0))
        if alpha != 0:
            raise MashInputError(f"ud_init: data.alpha = {alpha}; udr supports alpha 0 (EE) or "
                                 f"1 (EZ) only")
        n, m = Bhat.shape
        if commonV:
            shat = Shat[0]
            # udr recycles shat column-major in this test (P19), so identical rows with
            # unequal columns are judged non-iid (and TED then fails); compare rows instead
            if np.max(np.abs(Shat - shat[None, :])) < 1e-15:
                return Bhat, shat[:, None] * Vd * shat[None, :]
            if np.all(Shat > 0) and np.all(np.isfinite(Shat)):
                return Bhat, up.RowScaledV(Shat, Vd)      # O(n m), never (n, m, m)
            return Bhat, Shat[:, :, None] * Vd[None] * Shat[:, None, :]
        Vi = np.moveaxis(Vd, 2, 0)
        return Bhat, Shat[:, :, None] * Vi * Shat[:, None, :]
    X = np.asarray(dat, dtype=float)
    if X.ndim != 2:
        raise MashInputError("ud_init: dat should be a mash data object or a numeric matrix")
    if V is None:
        return X, np.eye(X.shape[1])
    if isinstance(V, (list, tuple)):
        V = np.stack([np.asarray(v, dtype=float) for v in V])
    return X, np.asarray(V, dtype=float)


@single_blas_thread
def ud_init(dat, V=None, n_rank1: Optional[int] = None, n_unconstrained: Optional[int] = None,
            U_scaled=None, U_rank1=None, U_unconstrained=None, seed=None,
            control: Optional[dict] = None) -> UdFit:
    """Initialise an ultimate-deconvolution fit (udr ``ud_init``).

    Parameters
    ----------
    dat : MashData or array (n, m)
        mash data (EZ: X = Bhat/Shat, V = data.V; EE: X = Bhat, V = S V S, common when all
        Shat rows are equal, with udr's column-major recycling test) or a data matrix.
    V : array (m, m), (n, m, m) or list, optional
        Residual covariance(s) for a matrix ``dat`` (default I).
    n_rank1, n_unconstrained : int, optional
        Numbers of random initial rank-1 (:math:`zz^T`, z ~ N(0, I)) and unconstrained
        (Wishart(max(4, m), I)) matrices; defaults 0 and 50, the values the protocol uses
        (udr's own ``ud_init`` default is 8 unconstrained).  Exclusive with U_rank1 /
        U_unconstrained.
    U_scaled, U_rank1, U_unconstrained : dict, list or array, optional
        Initial matrices (inject R's to reproduce a reference run).  U_scaled defaults to
        ``indep = I`` and ``equal = 11^T + 1e-4 I``.  Non-PSD matrices are floored at 1e-8
        eigenvalues (with a warning), as udr.
    seed : int or numpy Generator, optional
        Seed of the numpy generator for the random matrices (R's stream is not reproducible).
    control : dict, optional
        Unused except for validation (udr uses it for ``version``).

    Returns
    -------
    UdFit
        With w = 1/k, the initial log-likelihood and responsibilities.
    """
    X, V = _data_XV(dat, V)
    if not np.all(np.isfinite(X)):
        raise MashInputError("ud_init: X should not have missing or infinite values")
    n, m = X.shape
    if n < 2 or m < 2:
        raise MashInputError(f"ud_init: X is {n} x {m}; it needs at least 2 rows and 2 columns")
    finite = V.isfinite() if isinstance(V, up.RowScaledV) else np.all(np.isfinite(V))
    if not finite:
        raise MashInputError("ud_init: V should not contain missing or infinite values")
    if V.ndim == 2:
        if V.shape != (m, m):
            raise MashInputError(f"ud_init: V has shape {V.shape}, expected {m} x {m}")
        if not _issemidef(V):
            V = _makeposdef(V)
            warnings.warn("V was modified because it was not positive semi-definite")
    else:
        if V.shape != (n, m, m):
            raise MashInputError(f"ud_init: V should be {m} x {m} or one {m} x {m} matrix per "
                                 f"row of X ({n}), got shape {V.shape}")
        bad = []
        for s, e in up.row_blocks(n, m):
            Vb = V[s:e]
            lam = np.linalg.eigvalsh(0.5 * (Vb + np.swapaxes(Vb, 1, 2)))
            bad.append(s + np.where(lam.min(axis=1) <= -1e-8)[0])
        bad = np.concatenate(bad)
        if bad.size:
            V = np.array(V, dtype=float)                  # explicit copy (also RowScaledV)
            for i in bad:
                V[i] = _makeposdef(V[i])
            warnings.warn(f"V was modified because {bad.size} matrices were not positive "
                          f"semi-definite (first: row {bad[0]})")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_rank1 is not None and U_rank1 is not None:
        raise MashInputError("ud_init: give at most one of n_rank1 and U_rank1")
    if n_unconstrained is not None and U_unconstrained is not None:
        raise MashInputError("ud_init: give at most one of n_unconstrained and U_unconstrained")
    U_rank1 = _as_list(U_rank1, "U_rank1")
    if U_rank1 is None:
        U_rank1 = [np.outer(z, z) for z in rng.standard_normal((int(n_rank1 or 0), m))]
    U_unconstrained = _as_list(U_unconstrained, "U_unconstrained")
    if U_unconstrained is None:
        df = max(4, m)
        nu = 50 if n_unconstrained is None else int(n_unconstrained)
        U_unconstrained = []
        for _ in range(nu):
            G = rng.standard_normal((df, m))
            U_unconstrained.append(G.T @ G)
    U_scaled = _as_list(U_scaled, "U_scaled")
    if U_scaled is None:
        U_scaled = {"indep": np.eye(m), "equal": np.ones((m, m)) + 1e-4 * np.eye(m)}
    U: dict = {}
    for kind, lst, prefix in (("scaled", U_scaled, "scaled_"), ("rank1", U_rank1, "rank1_"),
                              ("unconstrained", U_unconstrained, "unconstrained")):
        items = list(lst.items()) if isinstance(lst, dict) else \
            [(f"{prefix}{i + 1}", v) for i, v in enumerate(lst)]
        modified = False
        for name, M in items:
            if M.shape != (m, m) or not np.all(np.isfinite(M)):
                raise MashInputError(f"ud_init: U_{kind}[{name!r}] should be a finite {m} x {m} "
                                     f"matrix (got shape {M.shape})")
            if name in U:
                raise MashInputError(f"ud_init: duplicate component name {name!r}")
            if kind != "rank1" and not _issemidef(M):
                M = _makeposdef(M)
                modified = True
            if kind == "scaled":
                U[name] = UdComponent("scaled", M.copy(), 1.0, M.copy(), up.get_mat_Q(M))
            elif kind == "rank1":
                v = up.getrank1(M)
                U[name] = UdComponent("rank1", np.outer(v, v), vec=v)
            else:
                U[name] = UdComponent("unconstrained", M.copy(), 1.0)
        if modified:
            warnings.warn(f"U_{kind} was modified because one or more matrices were not "
                          f"positive semi-definite")
    if not U:
        raise MashInputError("ud_init: the prior has no components")
    k = len(U)
    w = np.full(k, 1.0 / k)
    loglik, P = _loglik_and_P(X, w, U, V)
    return UdFit(X=X, V=V, U=U, w=w, loglik=loglik, P=P)


