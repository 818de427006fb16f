"""Posterior summaries for mash, batched over rows and mixture components.

Port of mashr ``R/posterior.R`` / ``src/mash.h::mash_compute_posterior{,_comcov}``
(map §2.2 "Posterior", pitfalls P6, P12, P22, P28, P30).

For effect j and kept component p (transformed scale, ``Sigma_j = S_j V S_j``):

.. math::
    U_1 = U_p (\\Sigma_j^{-1} U_p + I)^{-1}, \\qquad \\mu_1 = U_1 \\Sigma_j^{-1} \\hat b_j,

back-transformed to the Bhat scale with ``s = Shat_alpha_j``: ``mu = s * mu1``,
``C = diag(s) U_1 diag(s)``, and through an optional Q x R matrix A: ``mu_A = A mu``,
``C_A = A C A^T``.  With ``sigma = sqrt(diag C_A)`` and weights ``w_jp`` (posterior
component probabilities):

* ``PosteriorMean = sum_p w mu``, ``PosteriorSD = sqrt(sum_p w (mu^2 + sigma^2) - PM^2)``
* ``lfdr = sum_p w 1[sigma == 0]`` (exact zero test: singleton/null components give exact
  zero rows; with A, also where ``a_q^T U_p a_q`` is 0 structurally, see
  :func:`mashlib.model.contrast.structural_zeros`), ``NegativeProb = sum_p w Phi(-mu/sigma) 1[sigma > 0]``
* ``lfsr = compute_lfsr(NegativeProb, lfdr)``
* ``PosteriorCov_j = sum_p w (C_A + mu mu^T) - PM PM^T``.

The matrices are evaluated with the spectral factorisation of
:mod:`mashlib.model.likelihood` (``mu1 = N (e*u)``, ``U1 = N diag(e) N^T``), so one small
eigendecomposition per (row, base covariance) serves all grid scales.

:func:`posterior_chunk` is the row-chunk kernel (pure numpy, no MashData): streaming or
Dask drivers call it on blocks of rows.  :func:`compute_posterior_matrices` loops it over
row chunks under a memory budget.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
from scipy.special import ndtr, logsumexp

from .._blas import single_blas_thread
from ..eb.mixdist import compute_lfsr  # noqa: F401  (re-exported: lfsr of a mixture posterior)
from .contrast import structural_zeros
from ._dr1 import dr1_loglik, dr1_posterior
from .likelihood import (ComponentBasis, DEFAULT_MEMORY_BYTES, component_loglik,
                         diagonal_errors, group_spectra, whiten_rows, LOG_2PI)

__all__ = ["posterior_chunk", "compute_posterior_matrices", "compute_posterior_weights",
           "compute_lfsr"]


def compute_posterior_weights(pi, loglik):
    """Posterior component probabilities ``w_jp ∝ pi_p exp(loglik_jp)``.

    Computed in log space (log-sum-exp), so a row whose kept components all underflow in
    mashr's ``pi * exp(lik)`` (giving 0/0 = NaN there, P6) still gets finite weights.
    """
    pi = np.asarray(pi, float)
    with np.errstate(divide="ignore"):
        lw = np.log(pi)[None, :] + loglik
    lse = logsumexp(lw, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.exp(lw - lse)


def _stack(U):
    if isinstance(U, Mapping):
        return np.stack([np.asarray(v, float) for v in U.values()])
    U = np.asarray(U, float)
    return U[None] if U.ndim == 2 else U


def posterior_chunk(Bhat, Shat, Shat_alpha, V, U_kept, pi_kept=None, A=None,
                    output_posterior_cov: bool = False, weights=None,
                    basis: Optional[ComponentBasis] = None) -> dict:
    """Posterior matrices for one block of rows (the kernel behind every driver).

    The BLAS thread pool is left as it is: the drivers set it (``compute_posterior_matrices``
    runs single-threaded, the streaming engine takes a ``blas_threads`` argument).

    Parameters
    ----------
    Bhat, Shat, Shat_alpha : ndarray, shape (c, R)
        Transformed-scale data rows (``MashData`` fields for these rows).
    V : ndarray, shape (R, R) or (c, R, R)
        Residual correlation (common, or one per row).
    U_kept : ndarray (K, R, R) or dict
        The kept mixture components (already scaled by their grid value; the null is a
        zero matrix).
    pi_kept : ndarray (K,), optional
        Their mixture weights; posterior weights are computed from the likelihood.
        Ignored when ``weights`` is given.
    A : ndarray (Q, R), optional
        Linear transform of the effects (mashr ``A``).
    output_posterior_cov : bool
        Also return ``PosteriorCov`` with shape (c, Q, Q) — rows first, unlike R's
        Q x Q x J array.
    weights : ndarray (c, K), optional
        Precomputed posterior weights (rows sum to 1).
    basis : ComponentBasis, optional
        Precomputed factorisation of ``U_kept`` (reuse across chunks).

    Returns
    -------
    dict
        ``PosteriorMean``, ``PosteriorSD``, ``lfdr``, ``NegativeProb``, ``lfsr`` (c, Q)
        and optionally ``PosteriorCov`` (c, Q, Q).
    """
    Bhat = np.asarray(Bhat, float)
    Shat = np.asarray(Shat, float)
    sa = np.asarray(Shat_alpha, float)
    V = np.asarray(V, float)
    c, R = Bhat.shape
    if basis is None:
        basis = ComponentBasis.from_stack(_stack(U_kept))
    K = basis.n_components
    common = V.ndim == 2 and (c <= 1 or bool(np.all(Shat == Shat[0])))
    if c > 1 and bool(np.all(sa == sa[0])) and common:
        sa = sa[:1]
    W = whiten_rows(Bhat, Shat, V, common)
    closed = diagonal_errors(W)             # diagonal + rank-one bases: closed forms (dr1)
    groups = []
    for g, sel, pos in basis.components_by_group():
        if closed and g.mode == "dr1":
            groups.append((g, sel, pos, None))
        else:
            groups.append((g, sel, pos, group_spectra(g, W)))
    null_sel = np.flatnonzero(basis.base_of < 0)
    if weights is None:
        ll = np.empty((c, K))
        if null_sel.size:
            ll[:, null_sel] = (-0.5 * R * LOG_2PI - 0.5 * W["logdet"] - 0.5 * W["bb"])[:, None]
        for g, sel, pos, spec in groups:
            if spec is None:
                ll[:, sel] = dr1_loglik(W, basis.scale[sel], pos, g.delta, g.zeta)
                continue
            gam, om, u, N = spec
            omp = om if np.isscalar(om) else om[:, pos]
            ll[:, sel], _ = component_loglik(W, basis.scale[sel], gam[:, pos], omp, u[:, pos])
        weights = compute_posterior_weights(pi_kept, ll)
    weights = np.asarray(weights, float)
    Amat = None if A is None else np.asarray(A, float)
    Q = R if Amat is None else Amat.shape[0]
    # (A b)_q is exactly 0 under a component whose prior variance a_q' U a_q is 0: null, not
    # rounding noise (e.g. differences of conditions under equal_effects); see mashlib.model.contrast
    Zb = None if Amat is None else structural_zeros(Amat, basis.bases)   # (Q, n_bases)
    PM = np.zeros((c, Q))
    E2 = np.zeros((c, Q))
    ZP = np.zeros((c, Q))
    NP = np.zeros((c, Q))
    PC = np.zeros((c, Q, Q)) if output_posterior_cov else None
    if null_sel.size:
        ZP += weights[:, null_sel].sum(axis=1)[:, None]
    for g, sel, pos, spec in groups:
        w = weights[:, sel]                                            # (c, Pg)
        if spec is None:
            mu, var, csum = dr1_posterior(W, sa, basis.scale[sel], pos, g.delta, g.zeta, Amat,
                                          PC is not None, weights[:, sel])
            if PC is not None:
                PC += csum
        else:
            mu, var = _spectral_moments(spec, pos, basis.scale[sel], weights[:, sel], sa, Amat,
                                        c, PC)
        if Zb is not None:
            zs = Zb[:, basis.base_of[sel]].T[None]                     # (1, Pg, Q)
            if zs.any():
                mu, var = np.where(zs, 0.0, mu), np.where(zs, 0.0, var)
        PM += np.einsum("jp,jpq->jq", w, mu)
        E2 += np.einsum("jp,jpq->jq", w, mu * mu) + (
            w @ var[0] if var.shape[0] == 1 else np.einsum("jp,jpq->jq", w, var))
        sd = np.sqrt(var)
        zero = sd == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            neg = ndtr(-mu / np.where(zero, 1.0, sd))
        if zero.any():
            neg = np.where(zero, 0.0, neg)
            z = zero.astype(float)
            ZP += w @ z[0] if z.shape[0] == 1 else np.einsum("jp,jpq->jq", w, z)
        NP += np.einsum("jp,jpq->jq", w, neg)
        if PC is not None:
            PC += np.einsum("jp,jpq,jps->jqs", w, mu, mu, optimize=True)
    psd = np.sqrt(np.maximum(E2 - PM * PM, 0.0))
    out = {"PosteriorMean": PM, "PosteriorSD": psd, "lfdr": ZP, "NegativeProb": NP,
           "lfsr": compute_lfsr(NP, ZP)}
    if PC is not None:
        PC -= PM[:, :, None] * PM[:, None, :]
        out["PosteriorCov"] = PC
    return out


def _spectral_moments(spec, pos, scale, weights, sa, Amat, c, PC):
    """Means (c, Pg, Q) and variances ((c|1), Pg, Q) of one group's components from its
    spectra (``mu1 = N (e*u)``, ``U1 = N diag(e) N^T``); adds the group's weighted
    :math:`\\sum_p w_p C_{A,p}` to ``PC`` when given."""
    gam, om, u, N = spec
    # components of this group laid out as (base slot k, grid slot l), zero-padded
    Kg = gam.shape[1]
    lslot = np.zeros(pos.size, np.intp)
    cnt = np.zeros(Kg, np.intp)
    for i, k in enumerate(pos):      # loop over components, not rows
        lslot[i] = cnt[k]
        cnt[k] += 1
    Lm = int(cnt.max())
    scl = np.zeros((Kg, Lm))
    scl[pos, lslot] = scale
    cs = scl[None, :, None, :]                                    # (1, Kg, 1, L)
    omg = om if np.isscalar(om) else om[..., None]
    e = cs * omg / (1.0 + cs * gam[..., None])                     # ((c|1), Kg, r, L)
    NA = sa[:, None, :, None] * N                                  # ((c|1), Kg, R, r)
    if Amat is not None:
        NA = np.moveaxis(np.tensordot(Amat, NA, axes=([1], [2])), 0, 2)
    mu_b = np.matmul(NA, e * u[..., None])                         # (c, Kg, Q, L)
    var_b = np.maximum(np.matmul(NA * NA, e), 0.0)                 # P22: clamp as R's R path
    # back to the kept components only (no padding) for the elementwise work
    mu = np.swapaxes(mu_b, -1, -2)[:, pos, lslot]                  # (c, Pg, Q)
    var = np.swapaxes(var_b, -1, -2)[:, pos, lslot]                # ((c|1), Pg, Q)
    if PC is not None:
        Wt = np.zeros((c, Kg, Lm))
        Wt[:, pos, lslot] = weights
        ew = (e * Wt[:, :, None, :]).sum(axis=3)                   # (c, Kg, r)
        NAb = np.broadcast_to(NA, (c,) + NA.shape[1:])
        PC += np.einsum("jkqr,jkr,jksr->jqs", NAb, ew, NAb, optimize=True)
    return mu, var


def _chunk_size(basis: ComponentBasis, R: int, Q: int, cov: bool, memory_bytes: int, J: int):
    per = 0.0
    for g, sel, pos in basis.components_by_group():
        Lm = np.bincount(pos).max()
        Kg = g.bases.size
        per += Kg * (Q * Lm * 8 + R * g.r * 3 + Q * g.r * 2 + g.r * Lm * 3 + g.r * g.r * 2)
    per += basis.n_components * 4 + 3 * R * R + (Q * Q * 4 if cov else 0)
    return int(max(1, min(J, memory_bytes // max(8.0 * per, 1.0))))


@single_blas_thread
def compute_posterior_matrices(data, U_kept, pi_kept=None, A=None,
                               output_posterior_cov: bool = False, weights=None,
                               memory_bytes: int = DEFAULT_MEMORY_BYTES) -> dict:
    """Posterior matrices for all rows of ``data``, chunked over rows.

    Parameters
    ----------
    data : MashData
    U_kept, pi_kept, A, output_posterior_cov, weights
        As :func:`posterior_chunk`; ``weights`` is (J, K) when given.
    memory_bytes : int
        Working-memory budget per chunk.

    Returns
    -------
    dict of ndarrays: (J, Q) matrices and optionally ``PosteriorCov`` (J, Q, Q).
    """
    basis = ComponentBasis.from_stack(_stack(U_kept))
    J, R = data.Bhat.shape
    Q = R if A is None else np.asarray(A).shape[0]
    chunk = _chunk_size(basis, R, Q, output_posterior_cov, memory_bytes, J)
    Vs = data.error_V_stack()
    parts = []
    for a in range(0, J, chunk):
        b = min(J, a + chunk)
        V = Vs if data.error_commonV else Vs[a:b]
        parts.append(posterior_chunk(
            data.Bhat[a:b], data.Shat[a:b], data.Shat_alpha[a:b], V, None, pi_kept, A,
            output_posterior_cov, None if weights is None else weights[a:b], basis=basis))
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
