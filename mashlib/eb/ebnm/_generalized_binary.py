r"""ebnm's ``generalized_binary`` family (Liu, Carbonetto, Willwerscheid & Stephens 2023, "Dissecting
tumor transcriptional heterogeneity from single-cell RNA-seq data by generalized binary covariance
decomposition").

Prior: a point mass at 0 and a normal truncated to :math:`[0, \infty)` whose sd is a fixed multiple
:math:`r` (``scale``, default 0.1) of its mode :math:`\mu > 0`:

.. math::
    g = \pi_0\,\delta_0 + (1 - \pi_0)\, N_{[0,\infty)}(\mu, (r\mu)^2).

With :math:`\sigma = r\mu`, :math:`v_1 = s^2 + \sigma^2`, :math:`m = (x\sigma^2 + \mu s^2)/v_1` and
:math:`\tau = s\sigma/\sqrt{v_1}` the slab's marginal density is

.. math::
    f_1(x) = N(x; \mu, v_1)\,\Phi(m/\tau)\,/\,\Phi(1/r),

and given the slab :math:`\theta \sim N_{[0,\infty)}(m, \tau^2)`. :math:`(\pi_0, \mu)` maximise
:math:`\sum_i \log[\pi_0 N(x_i; 0, s_i^2) + (1-\pi_0) f_1(x_i)]`: the log-likelihood is concave in
:math:`\pi_0` for fixed :math:`\mu`, so :math:`\pi_0` is profiled out (vectorised safeguarded Newton in
:math:`\pi_0`), the profile is scanned over a 32-point log-spaced grid of :math:`\mu` in
:math:`[\min_i s_i/10, \max_i x_i]` and refined by bounded Brent around the best grid point.
lfsr is :math:`P(\theta_i = 0 \mid x_i)` (the slab is positive). ``fitted_g`` is a
:class:`~mashlib.eb.TNormalMix` with components ``(0, 0, -inf, inf)`` and
``(mu, r mu, 0, inf)``, as R's ``tnormalmix``.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import special as sc

from ..._errors import MashInputError
from ..mixdist import compute_lfsr
from ..mixdist_t import TNormalMix, tnormalmix_comp_posterior, tnormalmix_posterior
from ._core import _LOG_2PI, DEFAULT_OUTPUT, check_fix_g, check_output, check_xs
from ._mixpost import finish_result

__all__ = ["ebnm_generalized_binary"]


def _slab_loglik(x, s, mu, r):
    """(n, G) log f_1(x_i) for a vector of modes ``mu`` (G,)."""
    mu = np.atleast_1d(mu)[None, :]
    s2 = (s * s)[:, None]
    sig2 = (r * mu) ** 2
    v1 = s2 + sig2
    m = (x[:, None] * sig2 + mu * s2) / v1
    tau = np.sqrt(s2 * sig2 / v1)
    return (-0.5 * (_LOG_2PI + np.log(v1) + (x[:, None] - mu) ** 2 / v1)
            + sc.log_ndtr(m / tau) - sc.log_ndtr(1.0 / r))


def _profile_pi0(l0, l1, iters=60):
    r"""Maximise :math:`\sum_i\log(\pi_0 e^{l_0} + (1-\pi_0)e^{l_1})` over :math:`\pi_0 \in [0,1]`, per column.

    ``l0`` (n,), ``l1`` (n, G). Concave in :math:`\pi_0`: safeguarded Newton on the bracket
    [0, 1] with the endpoints' KKT conditions checked first. Returns ``(pi0 (G,), loglik (G,))``.
    """
    d = np.exp(np.clip(l0[:, None] - l1, -700, 700))  # f0 / f1
    G = l1.shape[1]
    # derivative at pi0: sum (d - 1) / (1 + pi0 (d - 1))
    dm1 = d - 1.0
    g0 = dm1.sum(axis=0)                               # at pi0 = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = np.sum(dm1 / d, axis=0)                   # at pi0 = 1
    p = np.full(G, 0.5)
    lo, hi = np.zeros(G), np.ones(G)
    for _ in range(iters):
        den = 1.0 + p[None, :] * dm1
        gr = np.sum(dm1 / den, axis=0)
        h = -np.sum((dm1 / den) ** 2, axis=0)
        lo = np.where(gr > 0, p, lo)
        hi = np.where(gr < 0, p, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(h < 0, -gr / h, 0.0)
        pn = p + step
        bad = ~((pn > lo) & (pn < hi)) | ~np.isfinite(pn)
        pn = np.where(bad, 0.5 * (lo + hi), pn)
        if np.max(np.abs(pn - p)) < 1e-13:
            p = pn
            break
        p = pn
    p = np.where(g0 <= 0, 0.0, np.where(g1 >= 0, 1.0, p))
    with np.errstate(divide="ignore"):
        ll = np.sum(np.logaddexp(np.log(p)[None, :] + l0[:, None], np.log1p(-p)[None, :] + l1), axis=0)
    return p, ll


def _fit(x, s, r, mode_val):
    l0 = -0.5 * (_LOG_2PI + np.log(s * s) + x * x / (s * s))
    if mode_val is not None:
        p, ll = _profile_pi0(l0, _slab_loglik(x, s, mode_val, r))
        return float(p[0]), float(mode_val), float(ll[0])
    lo = np.min(s) / 10.0
    hi = max(np.max(x), 10.0 * lo)
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 32))
    p, ll = _profile_pi0(l0, _slab_loglik(x, s, grid, r))
    j = int(np.argmax(ll))
    a_, b_ = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]

    def nprof(lmu):
        return -_profile_pi0(l0, _slab_loglik(x, s, np.exp(lmu), r))[1][0]

    res = optimize.minimize_scalar(nprof, bounds=(np.log(a_), np.log(b_)), method="bounded",
                                   options={"xatol": 1e-10})
    mu = float(np.exp(res.x)) if -res.fun >= ll[j] else float(grid[j])
    p, ll = _profile_pi0(l0, _slab_loglik(x, s, mu, r))
    return float(p[0]), mu, float(ll[0])


def _g(pi0, mu, r):
    return TNormalMix(pi=np.array([pi0, 1.0 - pi0]), mean=np.array([0.0, mu]), sd=np.array([0.0, r * mu]),
                      a=np.array([-np.inf, 0.0]), b=np.array([np.inf, np.inf]))


def ebnm_generalized_binary(x, s=1, mode="estimate", scale=0.1, g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                            optmethod=None, control=None):
    r"""EBNM with the generalized-binary prior :math:`\pi_0\delta_0 + (1-\pi_0)N_{[0,\infty)}(\mu, (r\mu)^2)`.

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (``s = inf``: missing, posterior = prior).
    mode : float or "estimate"
        The mode :math:`\mu > 0` of the truncated normal (the point mass stays at 0).
    scale : float
        The fixed ratio :math:`r = \sigma/\mu` (default 0.1); it cannot be estimated.
    g_init : TNormalMix, optional
        A fitted_g of this family; with ``fix_g=True`` only posteriors are computed.
    fix_g : bool
    output : iterable of str
    optmethod, control : ignored

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`~mashlib.eb.TNormalMix`; lfsr is the posterior null
        probability.
    """
    fname = "ebnm_generalized_binary"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    if isinstance(scale, str):
        raise MashInputError(f"{fname}: scale={scale!r}: the sd/mode ratio cannot be estimated; pass a positive "
                             "number (default 0.1)")
    r = float(scale)
    if not (np.isfinite(r) and r > 0):
        raise MashInputError(f"{fname}: scale={scale!r} must be a positive ratio sd/mode (default 0.1)")
    if isinstance(mode, str):
        if mode != "estimate":
            raise MashInputError(f"{fname}: mode={mode!r} must be a positive number or 'estimate'")
        mode_val = None
    else:
        mode_val = float(mode)
        if not (np.isfinite(mode_val) and mode_val > 0):
            raise MashInputError(f"{fname}: mode={mode!r} must be positive (the mode of the truncated normal)")
    check_fix_g(fix_g, g_init, fname)
    if g_init is not None and not (isinstance(g_init, TNormalMix) and np.size(g_init.pi) == 2):
        raise MashInputError(f"{fname}: g_init must be the two-component TNormalMix of an earlier "
                             f"generalized_binary fit, got {type(g_init).__name__}")
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]
    if fix_g:
        g = g_init
    else:
        if xf.size == 0:
            raise MashInputError(f"{fname}: every s is infinite; pass g_init with fix_g=True")
        pi0, mu, _ = _fit(xf, sf, r, mode_val)
        g = _g(pi0, mu, r)
    gp = g.prune(0.0) if np.any(g.pi == 0) else g
    with np.errstate(divide="ignore"):
        lL = gp.loglik_matrix(xf, sf) + np.log(gp.pi)[None, :]
    ll = float(np.sum(sc.logsumexp(lL, axis=1)))

    def post(need):
        p = tnormalmix_posterior(xf, sf, gp.pi, gp.mean, gp.sd, gp.a, gp.b)
        out = {"mean": p.mean, "sd": p.sd, "second_moment": np.maximum(p.second_moment, p.mean ** 2),
               "lfsr": compute_lfsr(p.prob_negative, p.prob_zero)}
        key = {"posterior_mean": "mean", "posterior_sd": "sd", "posterior_second_moment": "second_moment",
               "lfsr": "lfsr"}
        return {key[k]: out[key[k]] for k in need}

    def prior():
        pm, p2, _ = tnormalmix_comp_posterior(np.array([np.nan]), np.array([np.inf]), gp.mean, gp.sd, gp.a, gp.b)
        m, m2 = float(gp.pi @ pm[0]), float(gp.pi @ p2[0])
        return {"mean": m, "sd": np.sqrt(max(m2 - m * m, 0.0)), "second_moment": m2,
                "lfsr": float(gp.pi[(gp.sd == 0) & (gp.mean == 0)].sum())}

    def sampler(nsamp, rng):
        return _sample(x, s, gp, nsamp, rng)

    return finish_result("generalized_binary", want, x, s, fin, post, prior, g, sampler, ll, fname)


def _sample(x, s, g, nsamp, rng):
    """Posterior draws (nsamp, n) under a TNormalMix prior (s = inf: from the prior)."""
    from scipy.stats import truncnorm

    fin = np.isfinite(s)
    n = x.size
    lw = np.tile(np.log(g.pi), (n, 1))
    if fin.any():
        lw[fin] += g.loglik_matrix(x[fin], s[fin])
    w = np.exp(lw - sc.logsumexp(lw, axis=1, keepdims=True))
    k = np.minimum((rng.random((nsamp, n, 1)) > np.cumsum(w, axis=1)[None]).sum(axis=2), g.pi.size - 1)
    s_ = np.where(fin, s, 1.0)
    s2, sd2 = (s_ * s_)[None, :], g.sd[k] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(fin[None, :], (x[None, :] * sd2 + g.mean[k] * s2) / (s2 + sd2), g.mean[k])
        sdp = np.where(fin[None, :], np.sqrt(s2 * sd2 / (s2 + sd2)), g.sd[k])
    out = np.clip(g.mean[k], g.a[k], g.b[k]).astype(float)
    draw = sdp > 0
    if draw.any():
        a_ = (g.a[k][draw] - m[draw]) / sdp[draw]
        b_ = (g.b[k][draw] - m[draw]) / sdp[draw]
        out[draw] = m[draw] + sdp[draw] * truncnorm.rvs(a_, b_, random_state=rng)
    return out
