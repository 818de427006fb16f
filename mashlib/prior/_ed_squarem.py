r"""SQUAREM acceleration of the extreme-deconvolution EM (:func:`mashlib.prior.ed.extreme_deconvolution`).

The EM map :math:`\theta \mapsto F(\theta)` of :mod:`mashlib.prior.ed` converges linearly and, on
mash data, slowly (about 1,850 steps on the protocol's example and on sim_protocol).  SQUAREM
(Varadhan & Roland 2008, Scand. J. Statist. 35:335-353, scheme S3) extrapolates two EM steps:

.. math::

    r = F(\theta_0) - \theta_0, \quad v = F(F(\theta_0)) - 2F(\theta_0) + \theta_0, \quad
    \alpha = \min\big(\alpha_{max}, \max(1, \|r\| / \|v\|)\big), \quad
    \theta' = \theta_0 + 2\alpha r + \alpha^2 v,

followed by one EM step from :math:`\theta'` (the stabilisation step, whose E step gives
:math:`\bar\ell(\theta')`).  The point is accepted only if
:math:`\bar\ell(\theta') \ge \bar\ell(F(\theta_0))`, else the cycle falls back to the plain
:math:`F(F(\theta_0))`; so the average log-likelihood never decreases between accepted points.
:math:`\alpha_{max}` starts at 1 and is multiplied (divided) by 4 after a step that used it
(a rejected step), as the reference implementation.  :math:`\alpha = 1` is exactly two EM steps.

Parameterisation (the extrapolation works on any smooth reparameterisation of the map; this one
makes every extrapolated point feasible): free weights by :math:`\log\alpha_j` (renormalised
afterwards), free means as they are, and each free covariance on its column space, which EM
never leaves when ``w = 0``: with :math:`B_j` an orthonormal basis of :math:`\mathrm{span}(W_j)`
(``w > 0``: :math:`B_j = I`), :math:`V_j = B_j M_j B_j^T` and :math:`M_j` is extrapolated through
its matrix logarithm :math:`\log M_j = Q\,\mathrm{diag}(\log\lambda)Q^T`, so
:math:`M_j' = \exp(\cdot)` is positive definite with the same rank as :math:`V_j`.  A component
whose weight, fix flags or rank change during the cycle, or whose :math:`M_j` is (numerically)
singular, is not extrapolated in that cycle (it takes its :math:`F(F(\theta_0))` value).

Stopping rule: mashr's, applied to plain EM steps only: stop at the first EM step (from the
second on) :math:`\theta \to F(\theta)` with :math:`\bar\ell(F(\theta)) - \bar\ell(\theta) \le`
``tol``; the result is the M-step output of that step and ``avgloglik`` its E-step value, as
in the plain loop.  Fixed points of :math:`F` are the same, so both loops stop near the same
maximum; the accelerated one is usually closer to it (its last steps are shorter).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["squarem_ed"]

_log = logging.getLogger("mashlib")
_EIG_FLOOR = 1e-12      # M_j with lambda_min <= _EIG_FLOOR * lambda_max is not extrapolated
_LOG_SPAN = 40.0        # extrapolated log-parameters stay within this of the three iterates


@dataclass
class _EDState:
    """EM parameters: weights, means, covariance factors (V_j = W_j W_j^T) and fix flags."""

    amp: np.ndarray
    mean: np.ndarray
    W: list
    fa: np.ndarray
    fm: np.ndarray
    fc: np.ndarray


def _logm(Ms: np.ndarray):
    """Matrix log of a stack of SPD (k, r, r); None where numerically singular."""
    Ms = 0.5 * (Ms + np.swapaxes(Ms, 1, 2))
    lam, Q = np.linalg.eigh(Ms)
    ok = lam[:, 0] > _EIG_FLOOR * np.maximum(lam[:, -1], 0.0)
    ok &= lam[:, -1] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.log(np.where(ok[:, None], lam, 1.0))
    return (Q * ll[:, None, :]) @ np.swapaxes(Q, 1, 2), ok


def _coords(states, w_pos: bool, R: int):
    """Per rank group of extrapolatable components: (idx, B, [log M for each state])."""
    s0 = states[0]
    K = s0.amp.size
    same = np.ones(K, dtype=bool)
    for s in states[1:]:
        same &= (s.fa == s0.fa) & (s.fm == s0.fm) & (s.fc == s0.fc)
        same &= np.array([s.W[j].shape == s0.W[j].shape for j in range(K)])
    cand = same & ~s0.fc & np.array([W.shape[1] > 0 for W in s0.W])
    groups = []
    by_r: dict = {}
    for j in np.flatnonzero(cand):
        by_r.setdefault(s0.W[j].shape[1], []).append(j)
    for r, idx in by_r.items():
        idx = np.asarray(idx)
        if w_pos:
            B = np.broadcast_to(np.eye(R), (idx.size, R, R))
        else:
            B = np.linalg.qr(np.stack([s0.W[j] for j in idx]))[0]              # (k, R, r)
        Bt = np.swapaxes(B, 1, 2)
        logs, ok = [], np.ones(idx.size, dtype=bool)
        for s in states:
            C = Bt @ np.stack([s.W[j] for j in idx])                              # (k, rb, r)
            lg, o = _logm(C @ np.swapaxes(C, 1, 2))
            logs.append(lg)
            ok &= o
        if ok.any():
            groups.append((idx[ok], B[ok], [lg[ok] for lg in logs]))
    return groups, same


def _extrapolate(states, alpha: float, w_pos: bool, R: int):
    """The S3 point :math:`\\theta_0 + 2\\alpha r + \\alpha^2 v` as an :class:`_EDState`."""
    s0, s1, s2 = states
    out = _EDState(s2.amp.copy(), s2.mean.copy(), list(s2.W), s2.fa, s2.fm, s2.fc)

    def ext(x0, x1, x2, log=False):
        r, v = x1 - x0, x2 - 2.0 * x1 + x0
        y = x0 + 2.0 * alpha * r + alpha * alpha * v
        if log:
            lo = np.minimum(np.minimum(x0, x1), x2) - _LOG_SPAN
            hi = np.maximum(np.maximum(x0, x1), x2) + _LOG_SPAN
            y = np.clip(y, lo, hi)
        return y

    groups, same = _coords(states, w_pos, R)
    wfree = same & ~s0.fa & (s0.amp > 0) & (s1.amp > 0) & (s2.amp > 0)
    if wfree.sum() > 1:
        with np.errstate(divide="ignore"):
            la = ext(np.log(s0.amp[wfree]), np.log(s1.amp[wfree]), np.log(s2.amp[wfree]), True)
        a = np.exp(la - la.max())
        out.amp[wfree] = a / a.sum() * s2.amp[wfree].sum()
    mfree = same & ~s0.fm
    if mfree.any():
        out.mean[mfree] = ext(s0.mean[mfree], s1.mean[mfree], s2.mean[mfree])
    for idx, B, (l0, l1, l2) in groups:
        lg = ext(l0, l1, l2, True)
        lg = 0.5 * (lg + np.swapaxes(lg, 1, 2))
        mu, Q = np.linalg.eigh(lg)
        Wn = B @ (Q * np.exp(0.5 * mu)[:, None, :])                              # (k, R, rb)
        for t, j in enumerate(idx):
            out.W[j] = Wn[t]
    return out


def _norms(states, w_pos: bool, R: int):
    """:math:`\\|r\\|^2` and :math:`\\|v\\|^2` in the extrapolation coordinates."""
    s0, s1, s2 = states
    groups, same = _coords(states, w_pos, R)
    sr2 = sv2 = 0.0

    def add(x0, x1, x2):
        nonlocal sr2, sv2
        r, v = x1 - x0, x2 - 2.0 * x1 + x0
        sr2 += float(np.sum(r * r))
        sv2 += float(np.sum(v * v))

    wfree = same & ~s0.fa & (s0.amp > 0) & (s1.amp > 0) & (s2.amp > 0)
    if wfree.sum() > 1:
        add(np.log(s0.amp[wfree]), np.log(s1.amp[wfree]), np.log(s2.amp[wfree]))
    mfree = same & ~s0.fm
    if mfree.any():
        add(s0.mean[mfree], s1.mean[mfree], s2.mean[mfree])
    for _, _, (l0, l1, l2) in groups:
        add(l0, l1, l2)
    return sr2, sv2


def squarem_ed(em, st: _EDState, tol: float, maxiter: float, w_pos: bool, trace: list,
               verbose: bool = False, step_max0: float = 1.0, mstep: float = 4.0):
    """Run the accelerated EM from ``st`` (see the module docstring).

    Parameters
    ----------
    em : callable
        ``em(state) -> (average log-likelihood at state, F(state))`` (one EM step).
    st : _EDState
        Starting point.
    tol, maxiter : float
        mashr's stopping rule on plain EM steps, and the maximum number of EM steps (E steps
        of extrapolated points count).
    w_pos : bool
        The regulariser ``w > 0`` (covariances then extrapolated on all of R^R).
    trace : list
        Appended with the average log-likelihood of every E step, in order.

    Returns
    -------
    (state, avgloglik, niter)
    """
    R = st.mean.shape[1]
    step_max = step_max0
    niter = 0
    prev = None            # log-likelihood of the point whose EM image is st (a plain step)
    ncycle = 0

    def step(s):
        nonlocal niter
        ll, s1 = em(s)
        niter += 1
        trace.append(ll)
        return ll, s1

    while True:
        l0, st1 = step(st)
        if (prev is not None and l0 - prev <= tol) or niter >= maxiter:
            return st1, l0, niter
        l1, st2 = step(st1)
        if l1 - l0 <= tol or niter >= maxiter:
            return st2, l1, niter
        ncycle += 1
        sr2, sv2 = _norms((st, st1, st2), w_pos, R)
        alpha = np.sqrt(sr2 / sv2) if sv2 > 0 else 1.0
        alpha = float(min(step_max, max(1.0, alpha)))
        if verbose and ncycle % 5 == 0:
            _log.info("ED (SQUAREM) EM step %d: average log-likelihood %.10g, step %.3g",
                      niter, l1, alpha)
        if alpha == 1.0:                          # exactly two EM steps: continue from st2
            st, prev = st2, l1
            if step_max == 1.0:
                step_max = mstep * step_max
            continue
        try:
            ste = _extrapolate((st, st1, st2), alpha, w_pos, R)
            with np.errstate(all="ignore"):
                le, ste1 = step(ste)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            le, ste1 = -np.inf, None
        if np.isfinite(le) and le >= l1:          # accept: never below F(theta_0)
            st, prev = ste1, le
            if alpha == step_max:
                step_max = mstep * step_max
        else:                                     # reject: the plain F(F(theta_0))
            st, prev = st2, l1
            step_max = max(step_max0, step_max / mstep)
        if niter >= maxiter:
            # the last evaluated image: ste1 when accepted, else st2 (its E step not run)
            return st, (le if st is ste1 else l1), niter
