"""Pairwise sharing from posterior samples (mashr ``get_pairwise_sharing_from_samples``).

The sampler itself (mashr's ``posterior_samples``) is
:func:`mashlib.model.samples.sample_posterior_chunk`, re-exported here for the streaming
posterior; its module docstring gives the algorithm.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError
from ..model.samples import sample_posterior_chunk  # noqa: F401  (moved there; re-exported)


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
    if hasattr(lfsr, "columns"):          # the result's columns (contrast / A names)
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
