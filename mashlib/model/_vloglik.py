r"""Per-effect log-likelihoods of a fitted mash model in one pass (mashr ``calc_vloglik``,
``calc_nullloglik``, ``calc_alt_loglik``; map §2.2, pitfall P30).

With the row-normalised likelihood :math:`\tilde L_{jp} = \ell_{jp} - f_j`
(:math:`f_j = \max_p \ell_{jp}`, so every :math:`\tilde L_{jp} \le 0` with a 0 in each row)
and the Jacobian :math:`\log|J_j| = \sum_r \log \hat s^{\alpha}_{jr}`:

.. math::

    \text{vloglik}_j &= \log \textstyle\sum_p \pi_p e^{\tilde L_{jp}} + f_j - \log|J_j|, \\
    \text{null}_j &= \tilde L_{j0} + f_j - \log|J_j|, \qquad
    \text{alt}_j = \log \textstyle\sum_{p>0} w_p e^{\tilde L_{jp}} + f_j - \log|J_j|,

:math:`w = \pi_{1:}/(1-\pi_0)` (uniform when :math:`\pi_0 = 1`).  Because
:math:`e^{\tilde L} \in [0, 1]`, both sums are one product of each block of
:math:`E = e^{\tilde L}` with the two weight vectors (one GEMM, no max/shift/log passes as a
generic log-sum-exp needs); a row whose sum underflows (< 1e-280: every weighted component
far below the row maximum) is redone with log-sum-exp.  Only the columns with a non-zero
weight are exponentiated (after a fit, a few dozen of hundreds); ``E`` itself is reused when
the caller has it.

:func:`needed_components` gives the columns these quantities depend on under fixed
weights (those with :math:`\pi_p > 0`, and the null): a fixed-g fit evaluates only them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["vlogliks", "needed_components"]

_TINY = 1e-280
_BLOCK_BYTES = 32 * 2 ** 20


def needed_components(pi: np.ndarray, usepointmass: bool):
    """Columns that vloglik / null / alt log-likelihoods need under fixed ``pi``.

    Returns sorted indices (the null, column 0, always when ``usepointmass``), or None when
    every column is needed (``pi_0 = 1``: the alternative then weights the rest uniformly).
    """
    pi = np.asarray(pi, float)
    if usepointmass and pi[0] == 1:
        return None
    keep = pi > 0
    if usepointmass:
        keep[0] = True
    return np.flatnonzero(keep)


def vlogliks(pi, lm: dict, Shat_alpha, usepointmass: bool, E=None):
    """vloglik, null_loglik, alt_loglik (the last two None without a point mass).

    Parameters
    ----------
    pi : ndarray (P,)
        Mixture weights of the columns of ``lm["loglik_matrix"]``.
    lm : dict
        ``loglik_matrix`` (J, P) row-normalised log-likelihoods and ``lfactors`` (J,).
    Shat_alpha : ndarray (J, R)
    usepointmass : bool
        Column 0 is the null point mass.
    E : ndarray (J, P), optional
        ``exp(loglik_matrix)`` when already computed.
    """
    L, lf = lm["loglik_matrix"], lm["lfactors"]
    pi = np.asarray(pi, float)
    J, P = L.shape
    jac = np.log(Shat_alpha).sum(axis=1)
    W = pi[:, None]
    if usepointmass:
        rest = pi[1:]
        w = np.full(rest.size, 1.0 / rest.size) if pi[0] == 1 else rest / (1 - pi[0])
        W = np.column_stack([pi, np.concatenate([[0.0], w])])
    Ls = L
    if E is None:          # only the columns with a non-zero weight enter the sums
        used = np.flatnonzero((W != 0).any(axis=1))
        if used.size < P:
            Ls, W = L[:, used], W[used]
    sums = np.empty((J, W.shape[1]))
    step = max(1, int(_BLOCK_BYTES // (8 * max(Ls.shape[1], 1))))
    with np.errstate(under="ignore"):
        for a in range(0, J, step):
            Eb = np.exp(Ls[a:a + step]) if E is None else E[a:a + step]
            sums[a:a + step] = Eb @ W
    redo = ~(sums > _TINY).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(sums)
        if redo.any():
            from scipy.special import logsumexp  # noqa: PLC0415  (rare rows only)
            lW = np.log(W)
            for i in np.flatnonzero(redo):
                out[i] = logsumexp(Ls[i][:, None] + lW, axis=0)
    base = lf - jac
    vl = out[:, 0] + base
    if not usepointmass:
        return vl, None, None
    return vl, L[:, 0] + base, out[:, 1] + base
