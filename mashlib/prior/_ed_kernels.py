"""Numeric kernels of extreme deconvolution (:mod:`mashlib.prior.ed`).

The model, the EM step and its three exact evaluations (joint diagonalisation, Woodbury,
direct) are described in the docstring of :mod:`mashlib.prior.ed`; this module holds the batched
pieces used by :func:`mashlib.extreme_deconvolution`:

* ``_ScaledV``: structured errors :math:`S_i = D_iVD_i` (per-row factors built per block);
* ``_factor_psd`` (V = W W^T on the column space), ``_whiten``, ``_row_lse`` /
  ``_posterior_q`` (responsibilities in one exponential pass), ``_Comp``;
* ``_spd_inv``: batched SPD inverse and log-determinant by recursive Schur complements
  (direct path);
* ``_estep_block`` / ``_accumulate`` / ``_estep`` / ``_mstep``: general-path E and M steps
  (Woodbury for rank <= R/2, direct above), batched over row blocks x components;
* ``_proportional`` (``_proportional_scaled``) / ``_rotate_groups`` / ``_estep_prop``: the
  joint-diagonalisation path for :math:`S_i = \\kappa_i S_0`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .._errors import MashInputError

_DBL_MIN = np.finfo(float).tiny
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_RANK_TOL = 1e-12      # eigenvalues below _RANK_TOL * max eigenvalue are treated as zero
_PROP_TOL = 1e-12      # S_i = kappa_i S_0 to this relative accuracy -> joint diagonalisation


def _factor_psd(V: np.ndarray, name: str) -> np.ndarray:
    """Return W (R x r) with W W^T = V, dropping eigenvalues below ``_RANK_TOL * max``.

    Raises MashInputError when V has an eigenvalue below ``-1e-8 * max(1, |lambda_max|)``.
    """
    V = 0.5 * (V + V.T)
    lam, Q = np.linalg.eigh(V)
    top = max(abs(lam[-1]), abs(lam[0])) if lam.size else 0.0
    if lam.size and lam[0] < -1e-8 * max(1.0, top):
        raise MashInputError(f"{name} is not positive semi-definite (smallest eigenvalue "
                             f"{lam[0]:.3g}); pass PSD covariance matrices")
    keep = lam > _RANK_TOL * top if top > 0 else np.zeros(lam.size, dtype=bool)
    return Q[:, keep] * np.sqrt(lam[keep])


class _ScaledV:
    """Structured error covariances :math:`S_i = D_iVD_i`, :math:`D_i = \\mathrm{diag}(d_i)`.

    A common correlation V with per-row standard errors (mashr's ``S_i V S_i``), stored as the
    (N, R) scales ``d`` (all > 0) and one (R, R) V instead of an (N, R, R) array: with
    :math:`V = L_VL_V^T`, :math:`\\mathrm{chol}(S_i) = D_iL_V`, so
    :math:`L_i^{-1} = L_V^{-1}D_i^{-1}` and :math:`\\log|S_i| = 2\\sum_r\\log d_{ir} + \\log|V|`.
    The kernels build the per-row factors of a row block on demand (:meth:`linv`,
    :meth:`cov`), so memory stays O(N R + block) instead of O(N R^2).
    """

    _CACHE_BYTES = 64e6    # row blocks of S_i kept between EM steps up to this size in all

    def __init__(self, d: np.ndarray, V: np.ndarray):
        self.d = np.asarray(d, dtype=float)
        self.V = np.asarray(V, dtype=float)
        self.Lvinv = None
        self._cov = {}

    def factor(self):
        """Factor V (``LinAlgError`` if not PD), set ``Lvinv``; return :math:`\\log|S_i|` (N,)."""
        Lv = np.linalg.cholesky(0.5 * (self.V + self.V.T))
        self.Lvinv = np.linalg.inv(Lv)
        return 2.0 * (np.log(self.d).sum(axis=1) + np.log(np.diag(Lv)).sum())

    def linv(self, s: int, e: int) -> np.ndarray:
        """:math:`L_i^{-1} = L_V^{-1}D_i^{-1}` for rows s:e, (e-s, R, R)."""
        return self.Lvinv[None] * (1.0 / self.d[s:e])[:, None, :]

    def cov(self, s: int, e: int) -> np.ndarray:
        """Symmetrised :math:`S_i = D_iVD_i` for rows s:e, (e-s, R, R) (the same every EM step:
        kept when all of them fit in ``_CACHE_BYTES``)."""
        S = self._cov.get((s, e))
        if S is None:
            d = self.d[s:e]
            S = d[:, :, None] * self.V[None] * d[:, None, :]
            S = 0.5 * (S + np.swapaxes(S, 1, 2))
            if 8.0 * self.d.size * self.V.shape[0] <= self._CACHE_BYTES:
                self._cov[(s, e)] = S
        return S

    def whiten(self, X: np.ndarray) -> np.ndarray:
        """:math:`L_i^{-1}x_i` for the rows of X (N, R)."""
        return (X / self.d) @ self.Lvinv.T


def _whiten(kind, Linv, X):
    """:math:`L_i^{-1}x` for rows of X (n, R) or component-stacked X (n, k, R)."""
    if kind == "diag":
        return Linv[:, None, :] * X if X.ndim == 3 else Linv * X
    if X.ndim == 2:
        return np.einsum("iab,ib->ia", Linv, X) if Linv.shape[0] > 1 else X @ Linv[0].T
    return (Linv[:, None] @ X[..., None])[..., 0] if Linv.shape[0] > 1 else X @ Linv[0].T


def _row_lse(logq: np.ndarray) -> np.ndarray:
    """Row log-sum-exp ignoring non-finite entries in the max scan (Bovy's ``logsum``)."""
    fin = np.isfinite(logq)
    mx = np.where(fin, logq, -np.inf).max(axis=1)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(under="ignore"):
        s = np.exp(logq - mx[:, None]).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.log(s) + mx


def _posterior_q(logq: np.ndarray):
    """Row log-sum-exp and normalised responsibilities :math:`q = e^{\\log q - lse}` in one
    exponential pass (rows whose maximum is not finite take :func:`_row_lse`'s careful path)."""
    mx = logq.max(axis=1)
    if not np.all(np.isfinite(mx)):
        lse = _row_lse(logq)
        with np.errstate(under="ignore", invalid="ignore"):
            q = np.exp(logq - lse[:, None])
        return lse, np.where(np.isfinite(q), q, 0.0)
    with np.errstate(under="ignore"):
        q = np.exp(logq - mx[:, None])
    sm = q.sum(axis=1)
    q /= sm[:, None]
    return np.log(sm) + mx, q


class _Comp:
    """Factor representation of the live components grouped by rank."""

    def __init__(self, Ws: list):
        self.W = Ws

    def groups(self, live: np.ndarray):
        by_r: dict = {}
        for j, W in enumerate(self.W):
            if live[j]:
                by_r.setdefault(W.shape[1], []).append(j)
        return [(r, np.asarray(idx), np.stack([self.W[j] for j in idx]))
                for r, idx in sorted(by_r.items())]


def _spd_inv(T: np.ndarray):
    r"""Batched inverse and log-determinant of SPD matrices T (B, n, n) by recursive Schur
    complements, all in batched matrix products (BLAS-3 on the stack).

    With :math:`T = \begin{pmatrix} A & B \\ B^T & C \end{pmatrix}`,
    :math:`S = C - B^TA^{-1}B` (SPD) and :math:`X = A^{-1}BS^{-1}`:

    .. math::

        T^{-1} = \begin{pmatrix} A^{-1} + XB^TA^{-1} & -X \\ -X^T & S^{-1} \end{pmatrix},
        \qquad \log|T| = \log|A| + \log|S|,

    down to closed forms for n <= 2 (Gaussian elimination without pivoting, stable for SPD
    matrices; about R^3 flops per matrix).  Raises ``LinAlgError`` if a pivot is not positive.

    Returns
    -------
    logdet : (B,)
    Tinv : (B, n, n)
    """
    n = T.shape[-1]
    if n == 1:
        t = T[:, 0, 0]
        if not np.all(t > 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return np.log(t), (1.0 / t)[:, None, None]
    if n == 2:
        a, b, c = T[:, 0, 0], T[:, 0, 1], T[:, 1, 1]
        det = a * c - b * b
        if not (np.all(a > 0) and np.all(det > 0)):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        out = np.empty_like(T)
        out[:, 0, 0] = c / det
        out[:, 1, 1] = a / det
        out[:, 0, 1] = out[:, 1, 0] = -b / det
        return np.log(det), out
    h = n // 2
    ldA, Ai = _spd_inv(T[:, :h, :h])
    Bm = T[:, :h, h:]
    AiB = Ai @ Bm
    ldS, Si = _spd_inv(T[:, h:, h:] - np.swapaxes(Bm, 1, 2) @ AiB)
    X = AiB @ Si
    out = np.empty_like(T)
    out[:, :h, :h] = Ai + X @ np.swapaxes(AiB, 1, 2)
    out[:, :h, h:] = -X
    out[:, h:, :h] = -np.swapaxes(X, 1, 2)
    out[:, h:, h:] = Si
    return ldA + ldS, out


def _estep_block(Z, Linv, logdetS, kind, mean, groups, logamp, K, direct=None):
    """E-step quantities for one block of rows (Z: whitened data, (nb, R)).

    Returns logq (nb, K) and, per rank group, (idx, r, u (nb, k, r), Ginv (nb|1, k, r, r)).
    Groups of rank ``r > R/2`` use :math:`T_{ij} = S_i + V_j` directly when ``direct`` =
    (Y block (nb, R), S block: (nb|1, R) variances or (nb|1, R, R)) is given: then the part is
    (idx, -1, w = T^{-1}(y - m) (k, nb, R), T^{-1} (k, nb, R, R), W (k, R, r)).
    """
    nb, R = Z.shape
    logq = np.full((nb, K), -np.inf)
    out = []
    for r, idx, W in groups:                     # W: (k, R, r)
        k = idx.size
        if direct is not None and 2 * r > R:
            Yb, Sb = direct
            U = W @ np.swapaxes(W, 1, 2)
            U = 0.5 * (U + np.swapaxes(U, 1, 2))                    # (k, R, R)
            if kind == "diag":
                T = np.broadcast_to(U[:, None], (k, nb, R, R)).copy()
                T[..., np.arange(R), np.arange(R)] += Sb[None]
            else:
                T = U[:, None] + Sb[None]                            # (k, nb|1, R, R)
                T = np.broadcast_to(T, (k, nb, R, R))
            res = np.broadcast_to(Yb[None], (k, nb, R)) if mean is None else \
                Yb[None] - mean[idx][:, None]
            ld, Ti = _spd_inv(T.reshape(k * nb, R, R))
            wv = (Ti @ res.reshape(k * nb, R, 1))[..., 0]                # T^{-1} (y - m)
            quad = np.einsum("ba,ba->b", res.reshape(k * nb, R), wv)
            logq[:, idx] = (logamp[idx][None, :] - R * _HALF_LOG_2PI
                            - 0.5 * (ld + quad).reshape(k, nb).T)
            wv = wv.reshape(k, nb, R)
            X = Ti.reshape(k, nb, R, R)
            out.append((idx, -1, wv, X, W))
            continue
        if mean is None:
            Wm = np.broadcast_to(Z[:, None, :], (nb, k, R))
        else:
            if kind == "scaled":
                Lv, dinv = Linv
                Wm = Z[:, None, :] - (mean[None, idx, :] * dinv[:, None, :]) @ Lv.T
            else:
                Wm = Z[:, None, :] - _whiten(kind, Linv, np.broadcast_to(
                    mean[None, idx, :], (Linv.shape[0], k, R)))
        quad = np.einsum("ika,ika->ik", Wm, Wm)
        ld = np.broadcast_to(logdetS[:, None], (nb, k))
        Ginv = u = None
        if r:
            Wc = np.moveaxis(W, 0, 1).reshape(R, k * r)            # (R, k*r)
            if kind == "diag":
                E = Linv[:, :, None] * Wc[None]                     # (n, R, k*r)
            elif kind == "scaled":                                  # L_V^-1 D_i^-1 W: one GEMM
                Lv, dinv = Linv
                E = (dinv[:, :, None] * Wc[None]).transpose(1, 0, 2).reshape(R, -1)
                E = (Lv @ E).reshape(R, nb, k * r).transpose(1, 0, 2)
            else:
                E = Linv @ Wc
            E = E.reshape(E.shape[0], R, k, r)
            if r == 1:
                E1 = E[..., 0]                                      # (n, R, k)
                IG = 1.0 + np.einsum("iak,iak->ik", E1, E1)         # (n, k)
                h = np.einsum("iak,ika->ik", E1, Wm) if E1.shape[0] > 1 else \
                    np.einsum("ak,ika->ik", E1[0], Wm)
                Ginv = (1.0 / IG)[..., None, None]
                u = (h / IG)[..., None]
                ld = ld + np.log(IG)
                quad = quad - h * h / IG
            else:
                Et = np.ascontiguousarray(E.transpose(0, 2, 3, 1))  # (n, k, r, R)
                IG = Et @ np.swapaxes(Et, -1, -2)
                IG += np.eye(r)
                IG = 0.5 * (IG + np.swapaxes(IG, -1, -2))
                h = (Et @ Wm[..., None])[..., 0]                    # (nb, k, r)
                ldG = np.linalg.slogdet(IG)[1]
                Ginv = np.linalg.inv(IG)
                u = (Ginv @ h[..., None])[..., 0]
                ld = ld + ldG
                quad = quad - np.einsum("ikr,ikr->ik", h, u)
        logq[:, idx] = logamp[idx][None, :] - R * _HALF_LOG_2PI - 0.5 * ld - 0.5 * quad
        out.append((idx, r, u, Ginv))
    return logq, out


def _accumulate(q, parts):
    """Per rank group: (idx, sum_i q (u u^T + Ginv) (k, r, r), sum_i q u (k, r))."""
    out = []
    for part in parts:
        if part[1] == -1:                        # direct: M = q I + W^T A W, us = W^T sum q w
            idx, _, wv, X, W = part                                    # wv (k, nb, R)
            qt = np.ascontiguousarray(q[:, idx].T)                     # (k, nb)
            k, nb, R = wv.shape
            qw = qt[..., None] * wv                                    # (k, nb, R)
            A = np.swapaxes(qw, 1, 2) @ wv                             # sum_i q w w^T
            A -= (qt[:, None, :] @ X.reshape(k, nb, R * R)).reshape(k, R, R)   # - sum_i q T^-1
            Wt = np.swapaxes(W, 1, 2)
            M = Wt @ A @ W
            r = W.shape[2]
            M[:, np.arange(r), np.arange(r)] += qt.sum(axis=1)[:, None]
            out.append((idx, M, (Wt @ qw.sum(axis=1)[..., None])[..., 0]))
            continue
        idx, r, u, Ginv = part
        if not r:
            continue
        qg = q[:, idx]                                             # (nb, k)
        qu = qg[..., None] * u                                     # (nb, k, r)
        M = np.swapaxes(qu, 0, 1).transpose(0, 2, 1) @ np.swapaxes(u, 0, 1)   # (k, r, r)
        if Ginv.shape[0] == 1:
            M += qg.sum(axis=0)[:, None, None] * Ginv[0]
        elif r == 1:
            M += np.einsum("ik,ik->k", qg, Ginv[..., 0, 0])[:, None, None]
        else:
            M += np.einsum("ik,ikrs->krs", qg, Ginv)
        out.append((idx, M, qu.sum(axis=0)))
    return out


def _estep(Z, Linv, logdetS, kind, common, mean, groups, logamp, K, blocks, pool,
           Y=None, S=None):
    """Whole E step over row blocks (optionally in threads): (sum lse, q sums, accumulators).

    With the data Y and error covariances S, groups of rank > R/2 use T = S + V directly."""
    R = Z.shape[1]
    need_S = any(2 * r > R for r, _, _ in groups)

    def run(se):
        s, e = se
        lb = np.repeat(logdetS, e - s) if logdetS.shape[0] == 1 else logdetS[s:e]
        if kind == "scaled":                     # S_i = D_i V D_i: this block's factors only
            Lb, kb = (Linv.Lvinv, 1.0 / Linv.d[s:e]), "scaled"
            direct = None if Y is None else (Y[s:e], S.cov(s, e) if need_S else None)
        else:
            Lb, kb = (Linv if common else Linv[s:e]), kind
            direct = None if Y is None else (Y[s:e], S if S.shape[0] == 1 else S[s:e])
        logq, parts = _estep_block(Z[s:e], Lb, lb, kb, mean, groups, logamp, K, direct)
        lse, q = _posterior_q(logq)
        return lse.sum(), q.sum(axis=0), _accumulate(q, parts)
    res = list(pool.map(run, blocks)) if pool is not None and len(blocks) > 1 else \
        [run(b) for b in blocks]
    total = sum(r[0] for r in res)
    qsum = np.sum([r[1] for r in res], axis=0)
    acc = res[0][2]
    for other in res[1:]:
        acc = [(idx, M + M2, u + u2) for (idx, M, u), (_, M2, u2) in zip(acc, other[2])]
    return total, qsum, acc


def _mstep(comp, acc, qsum, amp, mean, fa, fm, fc, w, R):
    """M step in place (amp, mean, fix flags, comp.W), exactly proj_EM_step's rules."""
    allfixed = fa & fm & fc
    qs = np.where(qsum < _DBL_MIN, 0.0, qsum)
    upd = ~allfixed & ~fa
    amp[upd] = qs[upd]
    dead = upd & (qs == 0.0)
    fa[dead] = fm[dead] = fc[dead] = True
    go = ~allfixed & ~dead & (qs > 0)
    if w > 0:                                        # rank-0 components gain w I
        for j in np.where(go & ~fc)[0]:
            if comp.W[j].shape[1] == 0:
                comp.W[j] = _factor_psd(w * np.eye(R) / (qs[j] + 1.0), f"xcovar[{j}]")
    for idx, M, us in acc:
        sel = go[idx]
        if not sel.any():
            continue
        j = idx[sel]
        q = qs[j]
        Mj = M[sel] / q[:, None, None]
        ub = us[sel] / q[:, None]
        Wg = np.stack([comp.W[t] for t in j])
        free = ~fm[j]
        if free.any():
            mean[j[free]] = mean[j[free]] + (Wg[free] @ ub[free][..., None])[..., 0]
            Mj[free] -= ub[free][:, :, None] * ub[free][:, None, :]
        Mj = 0.5 * (Mj + np.swapaxes(Mj, 1, 2))
        cv = ~fc[j]
        if not cv.any():
            continue
        if w > 0:
            for t in np.where(cv)[0]:
                Vn = (q[t] * (Wg[t] @ Mj[t] @ Wg[t].T) + w * np.eye(R)) / (q[t] + 1.0)
                comp.W[j[t]] = _factor_psd(Vn, f"xcovar[{j[t]}]")
            continue
        try:
            Lm = np.linalg.cholesky(Mj[cv])
        except np.linalg.LinAlgError:
            lam, Qm = np.linalg.eigh(Mj[cv])
            Lm = Qm * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]
        Wn = Wg[cv] @ Lm
        for t, jj in enumerate(j[cv]):
            comp.W[jj] = Wn[t]


# ----------------------------------------------------------------------------- proportional errors
def _proportional(kind: str, S: np.ndarray):
    """``(S0, kappa)`` when every :math:`S_i = \\kappa_i S_0` to ``_PROP_TOL``, else None.

    :math:`S_0` is row 0's covariance (R x R) and :math:`\\kappa_i = tr S_i / tr S_0`; the check is
    :math:`\\max|S_i - \\kappa_i S_0| \\le` ``_PROP_TOL`` :math:`\\kappa_i \\max_r S_{0,rr}` (rounding
    level: a common S, or standard errors that factor as row x condition, as in eQTL data).
    """
    d = S if kind == "diag" else np.diagonal(S, axis1=1, axis2=2)
    kappa = d.sum(axis=1) / d[0].sum()
    dev = np.abs(S - kappa.reshape((-1,) + (1,) * (S.ndim - 1)) * S[:1])
    dev = dev.reshape(S.shape[0], -1).max(axis=1)
    if not np.all(dev <= _PROP_TOL * kappa * d[0].max()):
        return None
    S0 = np.diag(S[0]) if kind == "diag" else S[0]
    return S0, kappa


def _proportional_scaled(sv: _ScaledV, block_bytes: float = 32e6):
    """:func:`_proportional` for :class:`_ScaledV` errors, checked block by block (same test)."""
    N, R = sv.d.shape
    diag = (sv.d * np.diag(sv.V)) * sv.d                        # diagonal of S_i
    kappa = diag.sum(axis=1) / diag[0].sum()
    S0 = sv.cov(0, 1)[0]
    lim = _PROP_TOL * kappa * diag[0].max()
    nb = max(1, int(block_bytes // (24.0 * R * R)))
    for s in range(0, N, nb):
        e = min(N, s + nb)
        dev = np.abs(sv.cov(s, e) - kappa[s:e, None, None] * S0[None])
        if not np.all(dev.reshape(e - s, -1).max(axis=1) <= lim[s:e]):
            return None
    return S0, kappa


def _rotate_groups(comp, groups, L0inv):
    """Joint diagonalisation of the live components with :math:`S_0`.

    For :math:`F_j = L_0^{-1}W_j = Q_j\\Sigma_jP_j^T` (thin SVD) the factor is rotated in place,
    :math:`W_j \\leftarrow W_jP_j` (same :math:`V_j`), so that :math:`L_0^{-1}W_j = Q_j\\Sigma_j`.
    Returns, per rank group, (r, idx, Q (k, R, r), lam = sigma^2 (k, r)).
    """
    out = []
    for r, idx, W in groups:
        if r == 0:
            out.append((0, idx, None, None))
            continue
        F = L0inv @ W                                          # (k, R, r)
        if r == 1:
            sig = np.sqrt(np.einsum("kab,kab->k", F, F))[:, None]
            Q = F / sig[:, None, :]
        else:
            Q, sig, Pt = np.linalg.svd(F, full_matrices=False)
            Wn = W @ np.swapaxes(Pt, 1, 2)
            for t, j in enumerate(idx):
                comp.W[j] = Wn[t]
        out.append((r, idx, Q, sig * sig))
    return out


def _estep_prop(Z, z2, kappa, ldS, mean_w, rgroups, logamp, K, blocks):
    """E step when :math:`S_i = \\kappa_iS_0`: every :math:`T_{ij}` is diagonal in the basis
    :math:`L_0Q_j`, so with :math:`p_{ij} = Q_j^T(z_i - \\tilde m_j)` (:math:`z = L_0^{-1}y`,
    :math:`\\tilde m = L_0^{-1}m`) and :math:`d_{ijr} = \\kappa_i + \\lambda_{jr}`:

    .. math::

        \\log|T_{ij}| = \\log|S_i| + \\textstyle\\sum_r \\log(1 + \\lambda_{jr}/\\kappa_i), \\quad
        r^T T^{-1} r = |z_i - \\tilde m_j|^2/\\kappa_i
                       - \\textstyle\\sum_r \\lambda_{jr}p_{ijr}^2 / (\\kappa_i d_{ijr}),

    and, in the rotated factor basis, :math:`(I+G_{ij})^{-1} = \\mathrm{diag}(\\kappa_i/d_{ij})`,
    :math:`u_{ij} = \\sqrt{\\lambda_j}\\,p_{ij}/d_{ij}`.  O(N sum_j r_j) per step plus one GEMM.
    """
    total, qsum = 0.0, np.zeros(K)
    acc = {}
    R = Z.shape[1]
    for s, e in blocks:
        Zb, kb, lb = Z[s:e], kappa[s:e], ldS[s:e]
        nb = e - s
        logq = np.full((nb, K), -np.inf)
        parts = []
        for r, idx, Q, lam in rgroups:
            k = idx.size
            if mean_w is None:
                rq = np.broadcast_to(z2[s:e, None], (nb, k))
                p = (Zb @ np.moveaxis(Q, 0, 1).reshape(R, k * r)).reshape(nb, k, r) if r else None
            else:
                D = Zb[:, None, :] - mean_w[idx][None]                  # (nb, k, R)
                rq = np.einsum("ika,ika->ik", D, D)
                p = np.einsum("ika,kar->ikr", D, Q) if r else None
            kap = kb[:, None]
            ld = lb[:, None]
            quad = rq / kap
            if r:
                kap3 = kb[:, None, None]
                d = kap3 + lam[None]                                    # (nb, k, r)
                ld = ld + np.log1p(lam[None] / kap3).sum(axis=-1)
                quad = quad - (lam[None] * p * p / (kap3 * d)).sum(axis=-1)
                parts.append((idx, np.sqrt(lam)[None] * p / d, kap3 / d))
            logq[:, idx] = logamp[idx][None, :] - R * _HALF_LOG_2PI - 0.5 * ld - 0.5 * quad
        lse, q = _posterior_q(logq)
        total += lse.sum()
        qsum += q.sum(axis=0)
        for idx, u, Gd in parts:
            qg = q[:, idx]                                              # (nb, k)
            qu = qg[..., None] * u
            M = np.moveaxis(qu, 0, -1) @ np.moveaxis(u, 0, 1)           # (k, r, r)
            dg = np.einsum("ik,ikr->kr", qg, Gd)
            r = u.shape[2]
            M[:, np.arange(r), np.arange(r)] += dg
            key = int(idx[0])
            if key in acc:
                acc[key][1] += M
                acc[key][2] += qu.sum(axis=0)
            else:
                acc[key] = [idx, M, qu.sum(axis=0)]
    return total, qsum, [tuple(v) for v in acc.values()]
