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

This module is the one sampler of the package: :func:`mashlib.mash.mash` and
:func:`mashlib.mash.mash_compute_posterior_matrices` call :func:`draw_posterior_samples`, the
streaming posterior (:mod:`mashlib.scale`) calls :func:`sample_posterior_chunk` per chunk.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError

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


def sample_posterior_chunk(Bhat, Shat, Shat_alpha, V, U, pi, nsamp: int,
                           rng: np.random.Generator | None = None, A=None, *, u=None,
                           z=None) -> np.ndarray:
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

    Returns
    -------
    ndarray, shape (n, Q, M) -- mashr's ``PosteriorSamples`` layout.
    """
    # EZ: one transformed Shat for all rows, Shat_alpha varying: draw on the common scale
    # and multiply by Shat_alpha (x ~ N(a mu1, diag(a) U1 diag(a)) is a x1 with x1 ~ N(mu1, U1)).
    scale = None
    if (A is None and np.ndim(V) == 2 and Bhat.shape[0] > 1 and bool(np.all(Shat == Shat[0]))
            and not bool(np.all(Shat_alpha == Shat_alpha[0]))):
        scale, Shat_alpha = Shat_alpha, np.ones_like(Shat_alpha)
    cp = component_posteriors(Bhat, Shat, Shat_alpha, V, U, pi, A, full_cov=True)
    w, mu, C = cp["w"], cp["mu"], cp["C"]
    n, K, Q = mu.shape
    F = _sqrt_psd(C)                                     # (K,Q,Q) common or (n,K,Q,Q)
    cw = np.cumsum(w, axis=1)
    cw[:, -1] = 1.0
    if u is None:
        u = rng.random((n, nsamp))
    comp = (u[:, :, None] >= cw[:, None, :]).sum(axis=2)  # (n, M) labels in 0..K-1
    comp = np.minimum(comp, K - 1)
    if z is None:
        z = rng.standard_normal((n, nsamp, Q))
    rows = np.arange(n)[:, None]
    m = mu[rows, comp]                                   # (n, M, Q)
    Fsel = F[comp] if cp["common"] else F[rows, comp]    # (n, M, Q, Q)
    x = m + np.einsum("nmab,nmb->nma", Fsel, z)
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
    per_row = 8.0 * (nsamp * Q * (Q + 4) + nsamp * K + K * (R * R * (0 if common else 4)
                                                              + Q * Q * (0 if common else 2) + 3 * R))
    step = int(max(1, min(J, memory_bytes // max(per_row, 1.0))))
    ru, rz = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    u = ru.random((J, nsamp))
    Vs = data.error_V_stack()
    out = np.empty((J, Q, nsamp))
    for a in range(0, J, step):
        b = min(J, a + step)
        V = Vs if data.error_commonV else Vs[a:b]
        out[a:b] = sample_posterior_chunk(data.Bhat[a:b], data.Shat[a:b], data.Shat_alpha[a:b], V,
                                          U, pi, nsamp, A=A, u=u[a:b],
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
