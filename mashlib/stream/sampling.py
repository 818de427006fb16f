"""Vectorised posterior sampling and pairwise sharing from posterior samples (map §2.2).

mashr draws, per effect j, component counts from Multinomial(M, w_j) and then
``rmvnorm(mu_jk, C_jk)`` for each component, shuffling the result; it is an R loop
over effects. Here all effects of a chunk are drawn at once:

1. component labels c_jm ~ Categorical(w_j) for m = 1..M, by inverse CDF on the
   cumulative weights (equivalent in distribution to the multinomial counts then a
   shuffle);
2. x_jm = mu_{j c} + F_{j c} z_jm with z_jm ~ N(0, I) and F F^T = C_{j c}; F is the
   symmetric square root from a batched ``eigh`` (negative eigenvalues clipped at
   0), which is mvtnorm's default ``method = "eigen"``. A Cholesky factor is not
   used because mixture covariances are often singular (the null component is 0,
   rank-one components are singular).
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError
from .kernel import component_posteriors


def _sqrt_psd(C: np.ndarray) -> np.ndarray:
    """Batched symmetric PSD square root F with F F^T = C (eigenvalues clipped at 0)."""
    lam, Q = np.linalg.eigh(C)
    return Q * np.sqrt(np.maximum(lam, 0.0))[..., None, :]


def sample_posterior_chunk(Bhat, Shat, Shat_alpha, V, U, pi, nsamp: int, rng: np.random.Generator,
                           A=None) -> np.ndarray:
    """Draw ``nsamp`` posterior samples for each row of a chunk.

    Parameters
    ----------
    Bhat, Shat, Shat_alpha : ndarray, shape (n, R)
        Transformed data.
    V, U, pi
        Residual correlation (R, R), kept components (K, R, R) and weights (K,).
    nsamp : int
        Samples per row (M).
    rng : numpy.random.Generator
    A : ndarray (Q, R), optional

    Returns
    -------
    ndarray, shape (n, Q, M) -- mashr's ``PosteriorSamples`` layout.
    """
    # EZ: one transformed Shat for all rows, Shat_alpha varying: draw on the common scale
    # and multiply by Shat_alpha (x ~ N(a mu1, diag(a) U1 diag(a)) is a x1 with x1 ~ N(mu1, U1)).
    scale = None
    if (A is None and Bhat.shape[0] > 1 and bool(np.all(Shat == Shat[0]))
            and not bool(np.all(Shat_alpha == Shat_alpha[0]))):
        scale, Shat_alpha = Shat_alpha, np.ones_like(Shat_alpha)
    cp = component_posteriors(Bhat, Shat, Shat_alpha, V, U, pi, A, full_cov=True)
    w, mu, C = cp["w"], cp["mu"], cp["C"]
    n, K, Q = mu.shape
    F = _sqrt_psd(C)                                     # (K,Q,Q) common or (n,K,Q,Q)
    cw = np.cumsum(w, axis=1)
    cw[:, -1] = 1.0
    u = rng.random((n, nsamp))
    comp = (u[:, :, None] >= cw[:, None, :]).sum(axis=2)  # (n, M) labels in 0..K-1
    comp = np.minimum(comp, K - 1)
    z = rng.standard_normal((n, nsamp, Q))
    rows = np.arange(n)[:, None]
    m = mu[rows, comp]                                   # (n, M, Q)
    Fsel = F[comp] if cp["common"] else F[rows, comp]    # (n, M, Q, Q)
    x = m + np.einsum("nmab,nmb->nma", Fsel, z)
    if scale is not None:
        x *= scale[:, None, :]
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))


def _get(obj, names):
    for n in names:
        if hasattr(obj, "keys") and n in obj.keys():
            return obj[n]
        v = getattr(obj, n, None)
        if v is not None:
            return v
    res = getattr(obj, "result", None)
    if res is not None and res is not obj:
        return _get(res, names)
    return None


def get_pairwise_sharing_from_samples(m=None, factor: float = 0.5, lfsr_thresh: float = 0.05,
                                      FUN=None, *, samples=None, lfsr=None,
                                      block_rows: int | None = None):
    """Proportion of significant effects shared by magnitude, from posterior samples (mashr).

    For conditions i <= j, with a = effects significant (lfsr < ``lfsr_thresh``) in i
    or in j, and x_am the m-th posterior sample::

        S_ij = mean_{a} [ #{m : factor < FUN(x_aim)/FUN(x_ajm) < 1/factor} / M ]

    (a 0/0 ratio counts as not shared, as R's ``na.rm = TRUE`` inside the sum over the
    M samples); S is symmetric; an empty set a gives NaN. Computed over blocks of rows
    in one vectorised pass for all pairs, instead of mashr's R loop over pairs.

    Parameters
    ----------
    m : mash result, StreamResult or dict, optional
        Object holding ``PosteriorSamples`` (J, R, M) and ``lfsr`` (J, R) (directly or
        under ``.result``); alternatively give ``samples`` and ``lfsr``.
    factor : float in [0, 1]
        Effects within this factor of one another count as shared; 0 is sign sharing.
    lfsr_thresh : float
        Significance threshold.
    FUN : callable, optional
        Applied to the samples before the ratio (e.g. ``np.abs``); identity by default.
    samples, lfsr : array_like, optional
        The samples (J, R, M) (may be an ``np.memmap``) and lfsr (J, R).
    block_rows : int, optional
        Rows per block (default keeps each block near 64 MB).

    Returns
    -------
    ndarray or DataFrame, shape (R, R)
        A DataFrame named by condition when names are known.
    """
    names = None
    if m is not None:
        samples = _get(m, ("PosteriorSamples", "posterior_samples")) if samples is None else samples
        lfsr = _get(m, ("lfsr",)) if lfsr is None else lfsr
        names = _get(m, ("conditions",))
    if samples is None:
        raise MashInputError("samples: there are no posterior samples; recompute the posterior with "
                             "posterior_samples=n (n > 0), or use get_pairwise_sharing().")
    if lfsr is None:
        raise MashInputError("lfsr: needed to choose the significant effects; pass lfsr=.")
    if hasattr(lfsr, "columns") and names is None:
        names = [str(c) for c in lfsr.columns]
    lfsr = np.asarray(lfsr, dtype=float)
    if samples.ndim != 3 or samples.shape[:2] != lfsr.shape:
        raise MashInputError(f"samples: shape {samples.shape} does not match lfsr {lfsr.shape}; "
                             "expected (J, R, M) samples for a (J, R) lfsr.")
    if not 0 <= factor <= 1:
        raise MashInputError(f"factor: must lie in [0, 1], got {factor}.")
    J, R, M = samples.shape
    if block_rows is None:
        block_rows = max(1, int(64e6 // max(1, 8 * R * R * M)))
    num = np.zeros((R, R))
    den = np.zeros((R, R))
    upper = 1.0 / factor if factor > 0 else np.inf
    for a in range(0, J, block_rows):
        x = np.asarray(samples[a:a + block_rows], dtype=float)
        if FUN is not None:
            x = FUN(x)
        sig = lfsr[a:a + block_rows] < lfsr_thresh              # (n, R)
        keep = sig.any(axis=1)
        if not keep.any():
            continue
        x, sig = x[keep], sig[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = x[:, :, None, :] / x[:, None, :, :]          # (n, R, R, M): x_i / x_j
        frac = ((ratio > factor) & (ratio < upper)).sum(axis=3) / M
        mask = (sig[:, :, None] | sig[:, None, :]).astype(float)
        num += np.einsum("nij,nij->ij", mask, frac)
        den += mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = num / den
    iu = np.triu_indices(R)
    S = S.copy()
    S.T[iu] = S[iu]                                              # mirror the i <= j half
    if names is not None and len(names) == R:
        import pandas as pd
        return pd.DataFrame(S, index=list(names), columns=list(names))
    return S
