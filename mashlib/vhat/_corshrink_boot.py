r"""Bootstrap standard errors of Fisher-z correlations for CorShrink (``CorShrinkData(sd_boot = TRUE)``).

For ``nboot`` bootstrap samples (rows of the data drawn with replacement), the correlation
matrix :math:`C^{(b)}` is computed (pairwise-complete), each entry is clamped to
``[thresh_down, thresh_up]`` and Fisher-transformed, :math:`z^{(b)}_{ij} = \operatorname{atanh}
C^{(b)}_{ij}`, and the standard error of :math:`\hat z_{ij}` is the sample standard deviation of
:math:`z^{(1)}_{ij}, \dots, z^{(B)}_{ij}` (divisor :math:`B - 1`); the diagonal is set to 1.

R QUIRK, kept by default: CorShrink 0.1-6 clamps the bootstrap correlations to
:math:`[0.001, 0.999]` (``thresh_down = 0.001``, not :math:`-0.999`), so every negative bootstrap
correlation becomes 0.001: a clearly negative pair gets a bootstrap SD of (nearly) 0, which
CorShrink then treats as no information (SD :math:`10^8`) and shrinks the pair to 0. Pass
``thresh_down=-0.999`` for the symmetric clamp.

The resampling uses numpy's generator (``seed``), not R's, so the SDs match R's in distribution
only (see ``tests/vhat/test_corshrink_boot.py``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._errors import MashInputError

__all__ = ["bootcor_se"]


def bootcor_se(X, nboot=50, seed=None, thresh_up=0.999, thresh_down=0.001, cor_method="pearson"):
    """Bootstrap SDs of the Fisher-z correlations of the columns of ``X`` (an R x R array).

    Parameters
    ----------
    X : ndarray (N, R)
        Samples in rows (NaN allowed: pairwise-complete correlations).
    nboot : int
        Number of bootstrap resamples (CorShrink's default 50).
    seed : int, numpy Generator or None
    thresh_up, thresh_down : float
        Clamp of the bootstrap correlations (CorShrink: 0.999 and 0.001, see the module docstring).
    cor_method : {"pearson", "spearman", "kendall"}
    """
    X = np.asarray(X, float)
    nboot = int(nboot)
    if nboot < 2:
        raise MashInputError(f"`nboot` = {nboot} must be at least 2 bootstrap resamples.")
    if not thresh_down < thresh_up:
        raise MashInputError(f"`thresh_down` ({thresh_down}) must be below `thresh_up` ({thresh_up}).")
    rng = np.random.default_rng(seed)
    N, R = X.shape
    miss = np.isnan(X).any()
    Z = np.empty((nboot, R, R))
    for b in range(nboot):  # 50 small correlation matrices
        Xb = X[rng.integers(0, N, N)]
        if miss or cor_method != "pearson":
            C = pd.DataFrame(Xb).corr(method=cor_method, min_periods=1).to_numpy()
        else:
            C = np.corrcoef(Xb, rowvar=False)
        Z[b] = np.arctanh(np.clip(C, thresh_down, thresh_up))
    sd = np.nanstd(Z, axis=0, ddof=1)
    # a pair whose every bootstrap value was clamped to the same bound has SD exactly 0 (as R's
    # sd()); numpy's two-pass std can leave ~1e-19 there, which would read as infinite precision
    sd[np.nanmax(Z, axis=0) == np.nanmin(Z, axis=0)] = 0.0
    np.fill_diagonal(sd, 1.0)
    return sd
