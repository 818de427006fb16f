"""M-step updates of the udr prior covariances (udr 0.3-158, map §2.5).

Two settings.  *iid*: after :func:`mashlib.prior.udr` whitens the data (:math:`V = R^TR`,
:math:`x' = xR^{-1}`, :math:`U' = R^{-T}UR^{-1}`) every row follows
:math:`x' \\sim N(0, U' + I)`.  *non-iid*: :math:`x_i \\sim N(0, U + V_i)` with a row-specific
:math:`V_i` (stacked ``(n, m, m)``, or the implicit
:class:`RowScaledV`; rows are processed in blocks of about 32 MB, so memory is O(nm + block)
with the implicit form).  ``p`` is the column of responsibilities of the component.

All functions are vectorised over rows (batched inverses for the non-iid case).
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from ..._errors import MashInputError

_UNIROOT_TOL = np.finfo(float).eps ** 0.25   # R uniroot's default tol
_LBFGSB_FTOL = 1e7 * np.finfo(float).eps     # R optim's default factr


# ----------------------------------------------------------------------------- small helpers
def eig_desc(X):
    """Symmetric eigendecomposition with eigenvalues in decreasing order (R ``eigen``)."""
    lam, Q = np.linalg.eigh(0.5 * (X + X.T))
    return lam[::-1], Q[:, ::-1]


def safenormalize(p):
    """``p / sum(p)``, or ``1/n`` everywhere when the sum is not positive."""
    s = p.sum()
    return np.full(p.size, 1.0 / p.size) if s <= 0 else p / s


def get_mat_Q(U, minval=1e-8):
    """Q with :math:`QQ^T = U` over the eigenvalues above ``minval`` (udr ``get_mat_Q``)."""
    lam, Q = eig_desc(U)
    keep = lam > minval
    return Q[:, keep] * np.sqrt(lam[keep])


def getrank1(X):
    """:math:`\\sqrt{\\lambda_1} v_1`: the nearest rank-1 factor of a PSD matrix."""
    lam, Q = eig_desc(X)
    return np.sqrt(max(lam[0], 0.0)) * Q[:, 0]


def shrink_cov(T, minval=0.0, r=None):
    """Eigenvalue truncation: :math:`U = Q\\,\\mathrm{diag}(\\max(d-1, minval))\\,Q^T`.

    With ``r < m`` the eigenvalues past the r-th are set to ``minval``.
    """
    m = T.shape[0]
    r = m if r is None else min(r, m)
    d, Q = eig_desc(T)
    d = np.maximum(d - 1.0, minval)
    d[r:] = minval
    return (Q * d) @ Q.T


def ldet(A):
    """log |det A|."""
    return float(np.linalg.slogdet(A)[1])


# ----------------------------------------------------------------------------- iid updates
def ed_reg_iid(X, U, p, lam, sigma2, S0):
    """Bovy ED update in :math:`x \\sim N(0, U + I)`, with an inverse-Wishart penalty.

    .. math::
        A = (U+I)^{-1}U,\\quad B = U(I - A),\\quad
        U^{new} = \\frac{\\sum_i p_i A^T x_i x_i^T A + (\\sum p) B + \\sigma^2\\lambda S_0}
                        {\\sum p + \\lambda},
        \\qquad \\sigma^2_{new} = m / \\mathrm{tr}(S_0 U_{new}^{-1}) \\;[\\lambda \\ne 0].
    """
    m = X.shape[1]
    I = np.eye(m)
    A = np.linalg.solve(U + I, U)
    B = U @ (I - A)
    bmat = X @ A
    sp = p.sum()
    Un = ((bmat * p[:, None]).T @ bmat + sp * B + sigma2 * lam * S0) / (sp + lam)
    if lam != 0:
        sigma2 = m / np.trace(S0 @ np.linalg.inv(Un))
    return Un, sigma2


def ted(X, p, minval=0.0, r=None):
    """TED update: :math:`U = \\mathrm{shrink}(\\sum_i \\tilde p_i x_i x_i^T)`, :math:`\\tilde p = p/\\sum p`."""
    pn = safenormalize(p)
    T = (X * pn[:, None]).T @ X
    return shrink_cov(T, minval, r)


def _lbfgsb_scalar(fun, grad, x0, lo, hi):
    """R ``optim(par=x0, method="L-BFGS-B", lower=lo, upper=hi)`` on one variable."""
    res = optimize.minimize(lambda v: fun(v[0]), np.array([x0], float),
                            jac=lambda v: np.array([grad(v[0])]), method="L-BFGS-B",
                            bounds=[(lo, hi)],
                            options=dict(ftol=_LBFGSB_FTOL, gtol=0.0, maxiter=100, maxcor=5))
    return float(res.x[0])


def _argmin_poly(f, coefs, lo=1e-8, hi=1e6):
    """Minimiser of f on [lo, hi] among the real roots of the gradient polynomial and the ends."""
    r = np.roots(coefs)
    r = r[np.abs(r.imag) <= 1e-9 * np.maximum(1.0, np.abs(r.real))].real
    cand = np.r_[lo, hi, r[(r > lo) & (r < hi)]]
    return float(cand[np.argmin([f(c) for c in cand])])


def ted_penalized(X, p, lam, sigma2, penalty_type, alpha=0.5):
    """Penalised TED (udr ``ted_penalized_iw`` / ``ted_penalized_nu``).

    With :math:`S = \\sum p_i x_ix_i^T/\\sum p = Q\\,\\mathrm{diag}(d)\\,Q^T`, each eigenvalue
    :math:`u` of U minimises on [1e-8, 1e6]

    .. math::
        \\tfrac12\\big[P\\log(u+1) + Pd/(u+1) + \\lambda(\\log u + \\sigma^2/u)\\big] \\;(iw),\\qquad
        \\tfrac12\\big[P\\log(u+1) + Pd/(u+1) + \\lambda(\\alpha u/\\sigma^2 + (1-\\alpha)\\sigma^2/u)\\big]
        \\;(nu),

    :math:`P = \\sum p`; then :math:`\\sigma^2 = m/\\sum 1/u` (iw) or
    :math:`\\sqrt{\\alpha/(1-\\alpha)\\sum u/\\sum 1/u}` (nu).  udr runs ``optim(L-BFGS-B)`` from
    u = 1 (accurate to its ``factr``); here the gradient, times :math:`u^2(u+1)^2`, is a cubic
    (iw) or quartic (nu) polynomial whose real roots and the interval ends are compared, which
    gives the exact minimiser.  Returns (U, sigma2).
    """
    P = p.sum()
    S = (X * p[:, None]).T @ X / P
    d, Q = eig_desc(S)
    u = np.empty_like(d)
    for i, di in enumerate(d):
        if penalty_type == "iw":
            f = lambda v: 0.5 * (P * np.log(v + 1) + P * di / (v + 1) + lam * (np.log(v) + sigma2 / v))
            coefs = [P + lam, P - P * di + 2 * lam - lam * sigma2, lam - 2 * lam * sigma2,
                     -lam * sigma2]
        else:
            a4, c = lam * alpha / sigma2, lam * (1 - alpha) * sigma2
            f = lambda v: 0.5 * (P * np.log(v + 1) + P * di / (v + 1)
                                 + lam * (alpha / sigma2 * v + (1 - alpha) * sigma2 / v))
            coefs = [a4, 2 * a4 + P, a4 + P - P * di - c, -2 * c, -c]
        u[i] = _argmin_poly(f, coefs)
    U = (Q * u) @ Q.T
    if penalty_type == "iw":
        s2 = len(u) / np.sum(1 / u)
    else:
        s2 = np.sqrt(alpha / (1 - alpha) * np.sum(u) / np.sum(1 / u))
    return U, s2


def fa_unconstrained(X, U, p):
    """Factor-analysis EM update of an unconstrained U in :math:`N(0, U + I)` (+1e-8 I)."""
    r = U.shape[0]
    Q = get_mat_Q(U)
    d = Q.shape[1]
    Sigma = np.linalg.inv(Q.T @ Q + np.eye(d))
    bmat = X @ Q @ Sigma
    A = X.T @ (p[:, None] * bmat)
    B = bmat.T @ (p[:, None] * bmat) + p.sum() * Sigma
    Q = A @ np.linalg.inv(B)
    return Q @ Q.T + 1e-8 * np.eye(r)


def fa_scaled_iid(X, U0, Q, p, s):
    """EM update of the scale s of :math:`U = sQQ^T` in :math:`N(0, sU_0 + I)`.

    :math:`\\Sigma = (Q^TQ + I/s)^{-1}`, :math:`b_i = x_i^TQ\\Sigma`,
    :math:`s = \\sum_i p_i\\,\\mathrm{tr}(b_i^Tb_i + \\Sigma) / (r\\sum p)`.
    """
    if s == 0 or not np.any(U0 != 0) or Q.shape[1] == 0:
        return s
    r = Q.shape[1]
    Sigma = np.linalg.inv(Q.T @ Q + np.eye(r) / s)
    bmat = X @ Q @ Sigma
    trB = (bmat ** 2).sum(axis=1) + np.trace(Sigma)
    return float((trB * p).sum() / (p.sum() * r))


def fa_rank1_iid(X, u, p):
    """Factor-analysis EM update of the rank-1 factor u in :math:`N(0, uu^T + I)`."""
    sigma2 = 1.0 / (1.0 + u @ u)
    mu = sigma2 * (X @ u)
    theta = mu * p
    eta = p * (mu ** 2 + sigma2)
    return (theta[:, None] * X).sum(axis=0) / eta.sum()


def em_scaled_iid(X, U0, p, minval=0.0):
    """Scale s maximising :math:`\\sum p_i \\log N(x_i; 0, sU_0 + I)` (root of the gradient)."""
    lam, Q = eig_desc(U0)
    lam = np.where(lam < minval, minval, lam)
    Y2 = (X @ Q) ** 2

    def grad(s):
        return float((p * ((lam * Y2 / (s * lam + 1) ** 2).sum(axis=1)
                           - (lam / (s * lam + 1)).sum())).sum())
    if grad(0.0) <= 0:
        return 0.0
    if grad(1e6) > 0:
        raise MashInputError("scaled_update='em': the scale has no root in [0, 1e6] "
                             "(R's uniroot fails here too); use scaled_update='fa'")
    return float(optimize.brentq(grad, 0.0, 1e6, xtol=_UNIROOT_TOL))


# ----------------------------------------------------------------------------- non-iid updates
_BLOCK_BYTES = 32e6     # bytes of one (rows x components x m x m) block in the non-iid kernels


class RowScaledV:
    """Row covariances :math:`V_i = S_iVS_i`, :math:`S_i = \\mathrm{diag}(s_i)`, kept implicit.

    EE mash data with a common V: stores the (n, m) scales and one (m, m) V instead of an
    (n, m, m) array (compare :class:`mashlib.prior._ed_kernels._ScaledV`).  Behaves like that array
    for ``shape``, ``ndim``, ``len``, integer / slice indexing (blocks are built on demand with
    the same elementwise formula, so they equal the explicit array bit for bit) and
    ``np.asarray``.  :meth:`inv` gives :math:`V_i^{-1} = S_i^{-1}V^{-1}S_i^{-1}` in the same form.
    """

    ndim = 3

    def __init__(self, shat, V):
        self.shat = np.asarray(shat, dtype=float)
        self.V = np.asarray(V, dtype=float)

    @property
    def shape(self):
        n, m = self.shat.shape
        return (n, m, m)

    def __len__(self):
        return self.shat.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            d = self.shat[idx]
            return d[:, None] * self.V * d[None, :]
        if isinstance(idx, slice):
            d = self.shat[idx]
            return d[:, :, None] * self.V[None] * d[:, None, :]
        raise TypeError("RowScaledV supports integer and slice indexing only")

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def isfinite(self):
        return bool(np.all(np.isfinite(self.shat)) and np.all(np.isfinite(self.V)))

    def inv(self):
        return RowScaledV(1.0 / self.shat, np.linalg.inv(self.V))


def inv_rows(V):
    """:math:`V_i^{-1}` for all rows: structured for :class:`RowScaledV`, else batched."""
    return V.inv() if isinstance(V, RowScaledV) else np.linalg.inv(V)


def row_blocks(n, m, k=1):
    """(start, end) row blocks with about ``_BLOCK_BYTES`` per (rows, k, m, m) block."""
    step = max(1, int(_BLOCK_BYTES // (8 * m * m * max(k, 1))))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _inv_UV(U, V):
    """Batched :math:`(U + V_i)^{-1}` (symmetrised), V of shape (b, m, m)."""
    Ti = np.linalg.inv(U[None] + V)
    return 0.5 * (Ti + np.swapaxes(Ti, 1, 2))


def ed_notiid(X, U, V, p, lam=0.0, sigma2=1.0, S0=None):
    """Bovy ED update with row-specific :math:`V_i` (udr ``ed``), optionally IW-penalised.

    .. math::
        U^{new} = \\frac{\\sum_i p_i (UT_i^{-1}x_i)(UT_i^{-1}x_i)^T + \\sum_i p_i(U - UT_i^{-1}U)
                         + \\sigma^2\\lambda S_0}{\\sum p + \\lambda},\\qquad T_i = U + V_i .

    ``lam = 0`` is udr's update; ``lam > 0`` is mashlib's extension of ``ed_reg_iid`` to
    non-iid data (udr ignores lambda there), with :math:`\\sigma^2 = m/\\mathrm{tr}(S_0U^{-1})`.
    Rows are processed in blocks (:func:`row_blocks`); V may be a :class:`RowScaledV`.
    Returns (U, sigma2).
    """
    n, m = X.shape
    sp = p.sum()
    cc = np.zeros((m, m))
    Tsum = np.zeros((m, m))
    for s, e in row_blocks(n, m):
        Ti = _inv_UV(U, V[s:e])
        c = np.einsum("ab,ibc,ic->ia", U, Ti, X[s:e])          # U T_i^{-1} x_i
        pb = p[s:e]
        cc += (c * pb[:, None]).T @ c
        Tsum += np.einsum("i,iab->ab", pb, Ti)
    num = cc + sp * U - U @ Tsum @ U
    if lam == 0:
        return num / sp, sigma2
    Un = (num + sigma2 * lam * S0) / (sp + lam)
    return Un, m / np.trace(S0 @ np.linalg.inv(Un))


def fa_scaled_notiid(X, U0, V, Q, p, s, Vinv=None):
    """Scale update of :math:`U = sQQ^T` with row-specific :math:`V_i` (udr ``fa_scaled_notiid``).

    :math:`\\Sigma_i = (Q^TV_i^{-1}Q + I/s)^{-1}`, :math:`b_i = x_i^TV_i^{-1}Q\\Sigma_i`,
    :math:`s = \\sum_i p_i\\,\\mathrm{tr}(b_i^Tb_i + \\Sigma_i)/(r\\sum p)` (row blocks).
    """
    if s == 0 or not np.any(U0 != 0) or Q.shape[1] == 0:
        return s
    n, m = X.shape
    r = Q.shape[1]
    Vinv = inv_rows(V) if Vinv is None else Vinv
    tot = 0.0
    for a, e in row_blocks(n, m):
        VinvQ = Vinv[a:e] @ Q                              # (b, m, r)
        Sigma = np.linalg.inv(np.einsum("ar,iab->irb", Q, VinvQ) + np.eye(r) / s)
        b = np.einsum("ia,iar,irs->is", X[a:e], VinvQ, Sigma)
        trB = (b ** 2).sum(axis=1) + np.trace(Sigma, axis1=1, axis2=2)
        tot += (trB * p[a:e]).sum()
    return float(tot / (p.sum() * r))


def fa_rank1_notiid(X, u, V, p, Vinv=None):
    """Rank-1 factor update with row-specific :math:`V_i` (udr ``fa_rank1_notiid``, row blocks)."""
    n, m = X.shape
    Vinv = inv_rows(V) if Vinv is None else Vinv
    uw = np.zeros(m)
    Vw = np.zeros((m, m))
    for s, e in row_blocks(n, m):
        A = Vinv[s:e]
        utA = np.einsum("a,iab->ib", u, A)
        sigma2 = 1.0 / ((utA * u).sum(axis=1) + 1.0)
        mu = sigma2 * (utA * X[s:e]).sum(axis=1)
        Ax = np.einsum("iab,ib->ia", A, X[s:e])
        pb = p[s:e]
        uw += ((pb * mu)[:, None] * Ax).sum(axis=0)
        Vw += np.einsum("i,iab->ab", pb * (mu ** 2 + sigma2), A)
    return np.linalg.solve(Vw, uw)


def em_scaled_notiid(X, U0, V, p):
    """Scale s maximising :math:`\\sum_i p_i\\log N(x_i; 0, sU_0 + V_i)` (R: L-BFGS-B from 10)."""
    n, m = X.shape
    blocks = row_blocks(n, m)

    def negll(s):
        tot = 0.0
        for a, e in blocks:
            L = np.linalg.cholesky(s * U0[None] + V[a:e])
            z = np.linalg.solve(L, X[a:e, :, None])[..., 0]
            ll = (-0.5 * (z ** 2).sum(axis=1)
                  - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
                  - 0.5 * m * np.log(2 * np.pi))
            tot += (p[a:e] * ll).sum()
        return -float(tot)

    def grad(s):
        Bsum = np.zeros((m, m))
        quad = 0.0
        for a, e in blocks:
            B = np.linalg.inv(s * U0[None] + V[a:e])
            Y = np.einsum("ia,iab->ib", X[a:e], B)
            Bsum += np.einsum("i,iab->ab", p[a:e], B)
            quad += float(np.einsum("i,ia,ab,ib->", p[a:e], Y, U0, Y))
        return -(-np.trace(Bsum @ U0) + quad)
    return _lbfgsb_scalar(negll, grad, 10.0, 0.0, 1e6)


# ----------------------------------------------------------------------------- penalty
def compute_penalty(U, sigma2, lam, update_type, penalty_type, S0, alpha=0.5):
    """Log-penalty of one unconstrained component (udr ``compute_penalty``).

    ted + iw: :math:`-\\tfrac\\lambda2(\\sum\\log e - m\\log\\sigma^2 + \\sigma^2\\sum 1/e)`;
    ted + nu: :math:`-\\tfrac\\lambda2(\\alpha\\sum e/\\sigma^2 + (1-\\alpha)\\sigma^2\\sum 1/e)`;
    ed: :math:`-\\tfrac\\lambda2(\\log|U/\\sigma^2| + \\mathrm{tr}(S_0(U/\\sigma^2)^{-1}))`.
    """
    m = U.shape[0]
    if update_type == "ted":
        e = eig_desc(U)[0]
        if penalty_type == "nu":
            return -lam / 2 * (alpha * e.sum() / sigma2 + (1 - alpha) * sigma2 * (1 / e).sum())
        return -lam / 2 * (np.log(e).sum() - m * np.log(sigma2) + sigma2 * (1 / e).sum())
    W = U / sigma2
    return -lam / 2 * (ldet(W) + np.trace(S0 @ np.linalg.inv(W)))
