r"""Uniform-mixture (ash) machinery for the unimodal ebnm families (map §2.3, §2.7).

Prior :math:`g = \sum_k \pi_k U[a_k, b_k]` (a component with :math:`a_k = b_k` is a
point mass). With :math:`x_i \sim N(\theta_i, s_i^2)`:

.. math::

    f_k(x) = \frac{\Phi((x-a_k)/s) - \Phi((x-b_k)/s)}{b_k - a_k}, \qquad
    f_k(x) = N(x; a_k, s^2) \text{ if } a_k = b_k,

computed in log space (``log_ndtr`` of the tail with the smaller magnitude, then
``log1p(-exp(.))``). Given component k the posterior is :math:`N(x, s^2)` truncated to
:math:`[a_k, b_k]`; its moments use
:math:`E[Z\mid\alpha<Z<\beta] = (\phi(\alpha)-\phi(\beta))/(\Phi(\beta)-\Phi(\alpha))` and
:math:`E[Z^2\mid\cdot] = 1 + (\alpha\phi(\alpha)-\beta\phi(\beta))/(\Phi(\beta)-\Phi(\alpha))`
with all ratios formed in log space and clamped to :math:`[\alpha,\beta]` (resp.
:math:`[\min(\alpha^2,\beta^2)\mathbb 1_{\alpha\beta>0}, \max(\alpha^2,\beta^2)]`).

The fit follows ashr's ``estimate_mixprop`` with ``optmethod="mixSQP"``: Dirichlet
"nullbiased" penalty (``nullweight`` on the point mass), the all-null shortcut
(π = (1, 0, …) when the gradient condition holds), mix-SQP from π = 1
(:func:`mashlib.eb.mixopt.mix_sqp`), π ← max(π, 0); posterior summaries use the
components with π > 1e-10 (renormalised, ashr's ``prune``).
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def _log_interval_prob(alpha, beta):
    r""":math:`\log(\Phi(\beta) - \Phi(\alpha))` for :math:`\alpha \le \beta`, elementwise and stable."""
    # use the lower tail when the interval is mostly negative, the upper tail otherwise
    flip = (alpha + beta) > 0
    lo = np.where(flip, -beta, alpha)
    hi = np.where(flip, -alpha, beta)
    lhi = sc.log_ndtr(hi)
    llo = sc.log_ndtr(lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return lhi + np.log1p(-np.exp(llo - lhi))


def unimix_loglik_matrix(x, s, a, b):
    """``log f_k(x_i)`` (n, K) for uniform components ``[a_k, b_k]`` (point mass if equal)."""
    x = x[:, None]
    s = s[:, None]
    a = a[None, :]
    b = b[None, :]
    pm = a == b
    width = np.where(pm, 1.0, b - a)
    lp = _log_interval_prob((a - x) / s, (b - x) / s) - np.log(width)
    lpm = -_LOG_SQRT_2PI - np.log(s) - 0.5 * ((x - a) / s) ** 2
    return np.where(pm, lpm, lp)


def trunc_std_moments(alpha, beta):
    r"""Mean and second moment of :math:`Z \sim N(0,1)` truncated to :math:`[\alpha, \beta]`."""
    lZ = _log_interval_prob(alpha, beta)
    lpa = -_LOG_SQRT_2PI - 0.5 * alpha * alpha
    lpb = -_LOG_SQRT_2PI - 0.5 * beta * beta
    with np.errstate(over="ignore", invalid="ignore"):
        ra = np.exp(lpa - lZ)
        rb = np.exp(lpb - lZ)
        E = ra - rb
        ta = np.where(np.isfinite(alpha), alpha * ra, 0.0)
        tb = np.where(np.isfinite(beta), beta * rb, 0.0)
        E2 = 1.0 + ta - tb
    bad = ~np.isfinite(E) | ~np.isfinite(E2)
    mid = 0.5 * (alpha + beta)
    E = np.where(bad, mid, E)
    E2 = np.where(bad, mid * mid, E2)
    E = np.clip(E, alpha, beta)
    same = alpha * beta > 0
    lo2 = np.where(same, np.minimum(alpha * alpha, beta * beta), 0.0)
    E2 = np.clip(E2, np.maximum(lo2, E * E), np.maximum(alpha * alpha, beta * beta))
    return E, E2


def unimix_posterior(x, s, pi, a, b, want, lL=None):
    """Posterior mean / sd / second moment / lfsr under a uniform mixture (all s finite)."""
    keep = pi > 1e-10  # ashr prune
    pi, a, b = pi[keep] / pi[keep].sum(), a[keep], b[keep]
    if lL is None:
        lL = unimix_loglik_matrix(x, s, a, b)
    else:
        lL = lL[:, keep]
    with np.errstate(divide="ignore"):
        lw = lL + np.log(pi)[None, :]
    w = np.exp(lw - sc.logsumexp(lw, axis=1, keepdims=True))
    X = x[:, None]
    S = s[:, None]
    pm = (a == b)[None, :]
    alpha = (a[None, :] - X) / S
    beta = (b[None, :] - X) / S
    Ez, E2z = trunc_std_moments(np.where(pm, 0.0, alpha), np.where(pm, 1.0, beta))
    m1 = np.where(pm, a[None, :], X + S * Ez)
    m2 = np.where(pm, a[None, :] ** 2, X * X + 2 * X * S * Ez + S * S * E2z)
    out = {}
    mean = np.sum(w * m1, axis=1)
    if "posterior_mean" in want:
        out["mean"] = mean
    if want & {"posterior_sd", "posterior_second_moment"}:
        mean2 = np.maximum(np.sum(w * m2, axis=1), mean * mean)
        if "posterior_sd" in want:
            out["sd"] = np.sqrt(np.maximum(mean2 - mean * mean, 0.0))
        if "posterior_second_moment" in want:
            out["second_moment"] = mean2
    if "lfsr" in want:
        out["lfsr"] = _lfsr(w, x, s, a, b)
    return out


def _lfsr(w, x, s, a, b):
    """ashr ``compute_lfsr(NegativeProb, ZeroProb)`` for a uniform mixture about 0."""
    X = x[:, None]
    S = s[:, None]
    zero = (a == 0) & (b == 0)
    A = a[None, :]
    B = b[None, :]
    # P(theta < 0 | comp k): 1 if b <= 0 (non-point), 0 if a >= 0, else ratio of interval probs
    lnum = _log_interval_prob((A - X) / S, (np.minimum(B, 0.0) - X) / S)
    lden = _log_interval_prob((A - X) / S, (B - X) / S)
    with np.errstate(invalid="ignore"):
        frac = np.exp(lnum - lden)
    frac = np.where(B <= 0, 1.0, np.where(A >= 0, 0.0, frac))
    frac = np.where(np.isnan(frac), 0.5, frac)
    pmass = (a == b)[None, :]
    frac = np.where(pmass, (A < 0).astype(float), frac)
    ZP = np.sum(w[:, zero], axis=1)
    NP = np.maximum(np.sum(w * frac, axis=1), 0.0)
    return np.where(NP > 0.5 * (1.0 - ZP), 1.0 - NP, NP + ZP)


def unimix_prior_moments(pi, a, b):
    """Mean, second moment and lfsr of the prior itself (for s = inf)."""
    keep = pi > 1e-10
    pi, a, b = pi[keep] / pi[keep].sum(), a[keep], b[keep]
    mean = np.sum(pi * (a + b) / 2)
    mean2 = np.sum(pi * (a * a + a * b + b * b) / 3)
    zero = (a == 0) & (b == 0)
    ZP = pi[zero].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        negfrac = np.where(b <= 0, 1.0, np.where(a >= 0, 0.0, -a / (b - a)))
    negfrac = np.where(a == b, (a < 0).astype(float), negfrac)
    NP = np.sum(pi * negfrac)
    lfsr = 1.0 - NP if NP > 0.5 * (1.0 - ZP) else NP + ZP
    return mean, mean2, lfsr


def fit_mixprop(lL, prior, control=None):
    """ashr ``estimate_mixprop`` with mixSQP (map §2.3 step 7); returns pi (K,)."""
    from ..mixopt import mix_sqp

    mx = lL.max(axis=1, keepdims=True)
    L = np.exp(lL - mx)
    K = L.shape[1]
    keep = ~((L.max(axis=0) == 0) & (prior <= 1))
    pi = np.zeros(K)
    Lk, pk = L[:, keep], prior[keep]
    # null shortcut: pi = (1, 0, ...) is optimal when the directional derivatives allow it
    if keep[0] and pk.size > 1 and np.max(pk[1:]) <= 1:
        L1 = Lk[:, :1]
        ratio = Lk / np.where(L1 < 1e-99, L1 + 1e-99, L1)
        if np.min(Lk.shape[0] - ratio.sum(axis=0) + pk[0] - 1) >= 0:
            pi[np.flatnonzero(keep)[0]] = 1.0
            return pi
    if pk.size == 1:
        pi[keep] = 1.0
        return pi
    ctrl = {} if control is None else dict(control)
    pihat, _ = mix_sqp(Lk, pk, pi_init=np.ones(pk.size), control=ctrl)
    pi[keep] = np.maximum(pihat, 0.0)
    return pi / pi.sum()


def sample_unimix(x, s, pi, a, b, nsamp, rng):
    """Posterior draws (nsamp, n) under a uniform mixture; s = inf draws from the prior."""
    from scipy.stats import truncnorm

    keep = pi > 1e-10
    pi, a, b = pi[keep] / pi[keep].sum(), a[keep], b[keep]
    fin = np.isfinite(s)
    n = x.size
    lw = np.tile(np.log(pi), (n, 1))
    if fin.any():
        lw[fin] += unimix_loglik_matrix(x[fin], s[fin], a, b)
    w = np.exp(lw - sc.logsumexp(lw, axis=1, keepdims=True))
    cw = np.cumsum(w, axis=1)
    u = rng.random((nsamp, n, 1))
    k = np.minimum((u > cw[None]).sum(axis=2), pi.size - 1)
    ak, bk = a[k], b[k]
    out = np.empty((nsamp, n))
    sf = np.where(fin, s, 1.0)[None, :]
    X = np.broadcast_to(x[None, :], (nsamp, n))
    pmk = ak == bk
    finb = np.broadcast_to(fin[None, :], (nsamp, n))
    draw_tn = finb & ~pmk
    if draw_tn.any():
        lo = (ak[draw_tn] - X[draw_tn]) / np.broadcast_to(sf, (nsamp, n))[draw_tn]
        hi = (bk[draw_tn] - X[draw_tn]) / np.broadcast_to(sf, (nsamp, n))[draw_tn]
        z = truncnorm.rvs(lo, hi, random_state=rng)
        out[draw_tn] = X[draw_tn] + np.broadcast_to(sf, (nsamp, n))[draw_tn] * z
    prior_draw = ~finb & ~pmk
    if prior_draw.any():
        out[prior_draw] = ak[prior_draw] + rng.random(int(prior_draw.sum())) * (bk[prior_draw] - ak[prior_draw])
    out[pmk] = ak[pmk]
    return np.clip(out, ak, bk)
