"""Posterior samples of mash effects (mashr ``posterior_samples = M``), vectorised.

mashr (``compute_posterior_matrices_*_R``) draws, per effect j, component counts
``Z_j ~ Multinomial(M, w_j)`` from the posterior component weights, then ``rmvnorm`` from
each component's posterior :math:`N(A\\mu_{jk}, A C_{jk} A^T)` and shuffles: an R loop over
effects.  Here all rows of a block are drawn at once:

1. labels :math:`c_{jm} \\sim \\mathrm{Categorical}(w_j)`, :math:`m = 1..M`, by inverse CDF on
   the cumulative weights (the same distribution as the multinomial counts then a shuffle);
2. :math:`x_{jm} = \\mu_{jc} + F_{jc} z_{jm}`, :math:`z_{jm} \\sim N(0, I)`,
   :math:`F F^T = C_{jc}` from a batched ``eigh`` (negative eigenvalues clipped at 0; mvtnorm's
   default ``method = "eigen"``): mixture covariances are often singular (the null component
   is 0, rank-one components), so no Cholesky factor.

Component posteriors (row j, kept component k; :math:`\\Sigma_j = S_j V_j S_j`, or the
contrast errors :math:`L S_j V S_j L^T`; :math:`T = \\Sigma_j + U_k`):
:math:`\\mu^{(1)} = U_k T^{-1}\\hat b_j`, :math:`U^{(1)} = U_k - U_k T^{-1} U_k`, back-transformed
by :math:`a_j` = ``Shat_alpha``: :math:`\\mu = a_j \\odot \\mu^{(1)}`,
:math:`C = \\mathrm{diag}(a_j) U^{(1)} \\mathrm{diag}(a_j)`, then through A.

This module is the one sampler of the package: :func:`mashlib.model.fit.mash` and
:func:`mashlib.model.fit.mash_compute_posterior_matrices` call :func:`draw_posterior_samples`, the
streaming posterior (:mod:`mashlib.stream`) calls :func:`sample_posterior_chunk` per chunk.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError
from .likelihood import ComponentBasis, loglik_rows
from .posterior import compute_posterior_weights

__all__ = ["component_posteriors", "sample_posterior_chunk", "draw_posterior_samples",
           "get_samples"]

LOG2PI = np.log(2.0 * np.pi)
_BLOCK_BYTES = 64 * 2 ** 20


def _is_common(X: np.ndarray) -> bool:
    return X.shape[0] <= 1 or bool(np.all(X == X[:1]))


def component_posteriors(Bhat, Shat, Shat_alpha, V, U, pi, A=None, full_cov=True):
    """Per-row, per-component posterior pieces (used by sampling and the fallback kernel).

    Parameters
    ----------
    Bhat, Shat, Shat_alpha : ndarray, shape (n, R)
        Transformed data of one chunk.
    V : ndarray, shape (R, R) or (n, R, R)
        Residual correlation, common or one per row.
    U : ndarray, shape (K, R, R); pi : ndarray, shape (K,)
        Kept components and weights.
    A : ndarray, shape (Q, R), optional
        Linear transform of the effects.
    full_cov : bool
        Return the component posterior covariances ``C`` (else only their diagonals).

    Returns
    -------
    dict with ``w`` (n, K) posterior weights, ``mu`` (n, K, Q) and either ``C``
    (n, K, Q, Q) or (K, Q, Q) when the rows share one covariance, or ``var`` (n, K, Q).
    """
    n, R = Bhat.shape
    V = np.asarray(V, dtype=float)
    common = V.ndim == 2 and _is_common(Shat) and _is_common(Shat_alpha)
    if common:
        s = Shat[0]
        Sigma = s[:, None] * V * s[None, :]
        L = np.linalg.cholesky(Sigma[None] + U)                    # (K, R, R)
        Linv = np.linalg.inv(L)                                    # triangular inverse
        z = np.einsum("kab,nb->nka", Linv, Bhat)                   # L^{-1} b
        loglik = (-0.5 * R * LOG2PI - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(-1)
                  - 0.5 * np.einsum("nka,nka->nk", z, z))
        W = Linv @ U                                               # L^{-1} U, (K, R, R)
        mu1 = np.einsum("kab,nka->nkb", W, z)                      # U T^{-1} b
        U1 = U - np.swapaxes(W, 1, 2) @ W
    else:
        Vb = V if V.ndim == 3 else V[None]
        Sigma = Shat[:, :, None] * Vb * Shat[:, None, :]           # (n, R, R)
        L = np.linalg.cholesky(Sigma[:, None] + U[None])           # (n, K, R, R)
        Linv = np.linalg.inv(L)
        z = np.einsum("nkab,nb->nka", Linv, Bhat)
        loglik = (-0.5 * R * LOG2PI - np.log(np.diagonal(L, axis1=2, axis2=3)).sum(-1)
                  - 0.5 * np.einsum("nka,nka->nk", z, z))
        W = Linv @ U[None]
        del L, Linv
        mu1 = np.einsum("nkab,nka->nkb", W, z)
        U1 = U[None] - np.swapaxes(W, 2, 3) @ W
        del W
    loglik -= loglik.max(axis=1, keepdims=True)
    w = pi[None, :] * np.exp(loglik)
    w /= w.sum(axis=1, keepdims=True)
    sa = Shat_alpha
    mu = mu1 * sa[:, None, :]
    if common:
        a = sa[0]
        C = U1 * a[None, :, None] * a[None, None, :]
    else:
        C = U1 * sa[:, None, :, None] * sa[:, None, None, :]
    if A is not None:
        A = np.asarray(A, dtype=float)
        mu = mu @ A.T
        C = A @ C @ A.T
    out = {"w": w, "mu": mu, "common": common}
    if full_cov:
        out["C"] = C
    else:
        var = np.diagonal(C, axis1=-2, axis2=-1)
        out["var"] = np.broadcast_to(var, mu.shape) if common else var
    return out


def _sqrt_psd(C: np.ndarray) -> np.ndarray:
    """Batched PSD factor F with F F^T = C (eigenvalues clipped at 0)."""
    lam, Q = np.linalg.eigh(C)
    return Q * np.sqrt(np.maximum(lam, 0.0))[..., None, :]


def _pairs(comp: np.ndarray, K: int):
    """Group the draws by (row, component): sort order, group starts/sizes, row and component."""
    n, M = comp.shape
    key = (np.arange(n)[:, None] * K + comp).ravel()
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    counts = np.diff(np.r_[starts, ks.size])
    return order, starts, counts, ks[starts] // K, ks[starts] % K


def _pair_posteriors(Bhat, Shat, Sa, V, U, j, k, A):
    """Posterior mean (G, Q) and covariance (G, Q, Q) of the (row j, component k) pairs."""
    R = Bhat.shape[1]
    Vj = V[None] if V.ndim == 2 else V[j]
    T = Shat[j, :, None] * Vj * Shat[j, None, :] + U[k]
    L = np.linalg.cholesky(T)
    Y = np.linalg.solve(L, np.concatenate([U[k], Bhat[j, :, None]], axis=2))   # L^-1 [U b]
    W, zb = Y[..., :R], Y[..., R]
    mu = np.einsum("gab,ga->gb", W, zb) * Sa[j]                               # U T^-1 b
    C = (U[k] - np.swapaxes(W, 1, 2) @ W) * Sa[j][:, :, None] * Sa[j][:, None, :]
    if A is not None:
        mu = mu @ A.T
        C = A @ C @ A.T
    return mu, C


def sample_posterior_chunk(Bhat, Shat, Shat_alpha, V, U, pi, nsamp: int,
                           rng: np.random.Generator | None = None, A=None, *, u=None,
                           z=None, basis: ComponentBasis | None = None) -> np.ndarray:
    """Draw ``nsamp`` posterior samples for each row of a chunk.

    Parameters
    ----------
    Bhat, Shat, Shat_alpha : ndarray, shape (n, R)
        Transformed data.
    V, U, pi
        Residual correlation (R, R) or (n, R, R), kept components (K, R, R) and weights (K,).
    nsamp : int
        Samples per row (M).
    rng : numpy.random.Generator, optional
        Source of ``u`` and ``z`` when they are not given.
    A : ndarray (Q, R), optional
    u, z : ndarray, optional
        The uniforms (n, M) choosing the components and the standard normals (n, M, Q), to
        make the draw independent of how rows are split into chunks.
    basis : ComponentBasis, optional
        Factorisation of ``U`` (reuse across chunks).

    Returns
    -------
    ndarray, shape (n, Q, M) -- mashr's ``PosteriorSamples`` layout.

    Notes
    -----
    The component weights come from the engine's likelihood (:func:`mashlib.model.likelihood.loglik_rows`).
    With one error covariance for all rows each component's posterior covariance is factored
    once; otherwise only the (row, component) pairs actually drawn are, and the draws of each
    pair are multiplied by its factor in one small product (pairs bucketed by draw count rounded
    up to a power of 2): ~ n M Q^2 flops, no (n, M, Q, Q) temporary.
    """
    Bhat, Shat = np.asarray(Bhat, float), np.asarray(Shat, float)
    V, U, pi = np.asarray(V, float), np.asarray(U, float), np.asarray(pi, float)
    A = None if A is None else np.asarray(A, float)
    # EZ: one transformed Shat for all rows, Shat_alpha varying: draw on the common scale
    # and multiply by Shat_alpha (x ~ N(a mu1, diag(a) U1 diag(a)) is a x1 with x1 ~ N(mu1, U1)).
    scale = None
    if (A is None and V.ndim == 2 and Bhat.shape[0] > 1 and bool(np.all(Shat == Shat[0]))
            and not bool(np.all(Shat_alpha == Shat_alpha[0]))):
        scale, Shat_alpha = Shat_alpha, np.ones_like(Shat_alpha)
    Sa = np.asarray(Shat_alpha, float)
    n, R = Bhat.shape
    K = U.shape[0]
    Q = R if A is None else A.shape[0]
    if basis is None:
        basis = ComponentBasis.from_stack(U)
    ll, _ = loglik_rows(Bhat, Shat, V, basis, V.ndim == 2 and _is_common(Shat))
    w = compute_posterior_weights(pi, ll)
    cw = np.cumsum(w, axis=1)
    cw[:, -1] = 1.0
    if u is None:
        u = rng.random((n, nsamp))
    comp = np.minimum((u[:, :, None] >= cw[:, None, :]).sum(axis=2), K - 1)   # (n, M)
    if z is None:
        z = rng.standard_normal((n, nsamp, Q))
    if V.ndim == 2 and _is_common(Shat) and _is_common(Sa):
        s, a = Shat[0], Sa[0]
        L = np.linalg.cholesky(s[:, None] * V * s[None, :] + U)                # (K, R, R)
        W = np.linalg.solve(L, U)                                              # L^-1 U
        Mk = np.swapaxes(W, 1, 2) @ np.linalg.inv(L)                           # U T^-1
        C = (U - np.swapaxes(W, 1, 2) @ W) * a[:, None] * a[None, :]
        mu = np.einsum("kab,nb->nka", Mk, Bhat) * Sa[:, None, :]               # (n, K, R)
        if A is not None:
            mu, C = mu @ A.T, A @ C @ A.T
        x = mu[np.arange(n)[:, None], comp]                                   # (n, M, Q)
        for k in range(K):  # loop over components (not rows): one factor each
            r, mm = np.nonzero(comp == k)
            if r.size:
                x[r, mm] += z[r, mm] @ _sqrt_psd(C[k]).T
    else:
        order, starts, counts, pj, pk = _pairs(comp, K)
        mu, C = _pair_posteriors(Bhat, Shat, Sa, V, U, pj, pk, A)
        F = _sqrt_psd(C)                                                      # (pairs, Q, Q)
        x = np.empty((n, nsamp, Q))
        xf, zf = x.reshape(n * nsamp, Q), z.reshape(n * nsamp, Q)
        xf[order] = np.repeat(mu, counts, axis=0)
        bucket = np.ceil(np.log2(counts)).astype(np.intp)
        for b in np.unique(bucket):                      # <= log2(M) + 1 buckets
            g = np.flatnonzero(bucket == b)
            slot = np.arange(1 << int(b))[None]
            valid = slot < counts[g][:, None]
            draws = order[np.where(valid, starts[g][:, None] + slot, 0)]      # (pairs_b, P)
            Zb = np.where(valid[..., None], zf[draws], 0.0)                   # (pairs_b, P, Q)
            xf[draws[valid]] += (Zb @ np.swapaxes(F[g], 1, 2))[valid]
    if scale is not None:
        x *= scale[:, None, :]
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))


def draw_posterior_samples(data, U_kept, pi_kept, nsamp: int, seed=123, A=None,
                           memory_bytes: int = _BLOCK_BYTES) -> np.ndarray:
    """``nsamp`` posterior samples of every effect of ``data`` (mashr ``PosteriorSamples``).

    Parameters
    ----------
    data : MashData
        Any mash data (common or per-row V, EE/EZ, contrasts).
    U_kept : ndarray (K, R, R)
        The kept, grid-scaled components (the null as a zero matrix).
    pi_kept : ndarray (K,)
        Their prior weights (the posterior weights are recomputed from the likelihood, as
        ``mash`` computes them).
    nsamp : int
        Samples per effect M (> 0).
    seed : int or numpy SeedSequence
        The draws depend only on ``seed`` (not on the memory budget): the uniforms (J, M)
        choosing the components come from one child stream, the normals (J, M, Q) from
        another, both in row order.  Unlike mashr, the global random state is untouched.
    A : ndarray (Q, R), optional
        Sample :math:`A b` instead of b.
    memory_bytes : int
        Working memory per row block.

    Returns
    -------
    ndarray, shape (J, Q, M)
        R's ``PosteriorSamples`` layout (``samples[j, q, m]``).
    """
    nsamp = int(nsamp)
    if nsamp <= 0:
        raise MashInputError(f"posterior_samples: must be a positive integer, got {nsamp}.")
    U = np.asarray(U_kept, dtype=float)
    pi = np.asarray(pi_kept, dtype=float)
    J, R = data.Bhat.shape
    Q = R if A is None else np.asarray(A).shape[0]
    K = U.shape[0]
    common = data.error_commonV and data.is_common_cov_Shat()
    per_row = 8.0 * (nsamp * (Q * 6 + K + 4) + K * (3 * R + 2)
                     + (0 if common else min(K, nsamp) * (6 * R * R + 3 * Q * Q)))
    step = int(max(1, min(J, memory_bytes // max(per_row, 1.0))))
    basis = ComponentBasis.from_stack(U)
    ru, rz = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    u = ru.random((J, nsamp))
    Vs = data.error_V_stack()
    out = np.empty((J, Q, nsamp))
    for a in range(0, J, step):
        b = min(J, a + step)
        V = Vs if data.error_commonV else Vs[a:b]
        out[a:b] = sample_posterior_chunk(data.Bhat[a:b], data.Shat[a:b], data.Shat_alpha[a:b], V,
                                          U, pi, nsamp, A=A, u=u[a:b], basis=basis,
                                          z=rz.standard_normal((b - a, nsamp, Q)))
    return out


def get_samples(m):
    """Posterior samples of a mash fit (mashr ``get_samples``).

    Parameters
    ----------
    m : MashResult, dict of posterior matrices, or StreamResult
        A fit made with ``posterior_samples = M > 0``.

    Returns
    -------
    ndarray, shape (J, Q, M), or None when there are no samples (as R's NULL).
    """
    res = getattr(m, "result", m)
    try:
        return res["PosteriorSamples"] if "PosteriorSamples" in res else None
    except TypeError:
        raise MashInputError("m: expected a mash fit (MashResult), a posterior-matrices dict or "
                             "a StreamResult.") from None
