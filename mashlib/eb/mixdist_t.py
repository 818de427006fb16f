r"""Mixture priors under a Student-t likelihood, and truncated-normal mixtures (ashr ``df``, ``halfnormal``).

Student-t likelihood (Stephens 2016, section 3.4: effect estimates from small samples)
----------------------------------------------------------------------------------------
:math:`(\hat\beta_j - \beta_j)/s_j \sim t_\nu`. For a uniform prior component
:math:`U[a, b]` write :math:`T_\nu` / :math:`f_\nu` for the t cdf / density and
:math:`\alpha = (a - x)/s`, :math:`\beta = (b - x)/s`. Then

.. math::
    f_k(x) = \frac{T_\nu((x-a)/s) - T_\nu((x-b)/s)}{b - a},
    \qquad f_k(x) = f_\nu(x/s)/s \text{ for the point mass } a = b,

and given the component, :math:`u = (\theta - x)/s` is :math:`t_\nu` truncated to
:math:`[\alpha, \beta]` (t is symmetric), so with :math:`Z = T_\nu(\beta) - T_\nu(\alpha)`

.. math::
    E[u] = \frac{(\nu + \alpha^2) f_\nu(\alpha) - (\nu + \beta^2) f_\nu(\beta)}{(\nu - 1) Z},
    \qquad
    E[u^2] = \nu\Big(\frac{c_\nu}{Z}\big[T_{\nu-2}(\beta r) - T_{\nu-2}(\alpha r)\big] - 1\Big),

(:math:`\nu \ne 1`; for the Cauchy :math:`E[u] = [\log(1+\beta^2) - \log(1+\alpha^2)]/(2\pi Z)`),
with :math:`r = \sqrt{(\nu-2)/\nu}` and :math:`c_\nu = C_\nu / (C_{\nu-2} r)`
(:math:`C_\nu` the t normalising constant): :math:`(1 + u^2/\nu) f_\nu(u)` is a rescaled
:math:`t_{\nu-2}` density. For :math:`\nu \le 2` the second moment uses
:math:`\int_0^t u^2 f_\nu = C_\nu\,\tfrac{t^3}{3}\,{}_2F_1(\tfrac{\nu+1}2, \tfrac32; \tfrac52; -t^2/\nu)`.
:math:`\theta = x + s u`. Intervals in the upper tail are reflected so that the cdf
differences are formed where they do not cancel.

Truncated-normal mixtures (ashr ``tnormalmix``, normal likelihood)
------------------------------------------------------------------
A component is :math:`N(\mu_k, \sigma_k^2)` truncated to :math:`[a_k, b_k]`. With
:math:`v_1 = s^2 + \sigma^2`, :math:`m = (x\sigma^2 + \mu s^2)/v_1`, :math:`v = s^2\sigma^2/v_1`,

.. math::
    f_k(x) = N(x; \mu, v_1)\,\frac{\Phi((b - m)/\sqrt v) - \Phi((a - m)/\sqrt v)}
                               {\Phi((b - \mu)/\sigma) - \Phi((a - \mu)/\sigma)},

and the component posterior is :math:`N(m, v)` truncated to :math:`[a, b]`
(moments from :func:`mashlib.eb.mixdist.etruncnorm` / ``e2truncnorm``). :math:`\sigma = 0`
is a point mass at :math:`\mu` (clamped to :math:`[a, b]`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special as sc

from .mixdist import MixPosterior, _summarise, e2truncnorm, etruncnorm, logdiff_ndtr, unimix_args

__all__ = ["TNormalMix", "t_unimix_loglik_matrix", "t_unimix_comp_posterior", "t_unimix_posterior",
           "t_logpdf", "tnormalmix_loglik_matrix", "tnormalmix_comp_posterior", "tnormalmix_posterior"]


# ------------------------------------------------------------------ Student t pieces
def t_logpdf(z, df):
    """log density of the standard t with ``df`` degrees of freedom."""
    z = np.asarray(z, float)
    c = sc.gammaln((df + 1) / 2) - sc.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    return c - (df + 1) / 2 * np.log1p(z * z / df)


def _log_tcdf(z, df):
    """log T_df(z) (the lower tail), accurate far into the left tail."""
    with np.errstate(divide="ignore"):
        return np.log(sc.stdtr(df, z))


def _log1mexp(d):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > -np.log(2), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def logdiff_tcdf(hi, lo, df):
    r""":math:`\log(T_\nu(hi) - T_\nu(lo))` for hi >= lo, formed in the lower tail (reflected)."""
    hi, lo = np.broadcast_arrays(np.asarray(hi, float), np.asarray(lo, float))
    flip = (hi + lo) > 0
    p = np.where(flip, -lo, hi)
    q = np.where(flip, -hi, lo)
    lp = _log_tcdf(p, df)
    lq = _log_tcdf(q, df)
    with np.errstate(invalid="ignore"):
        out = lp + _log1mexp(lq - lp)
    return np.where(hi == lo, -np.inf, out)


def t_unimix_loglik_matrix(x, s, a, b, df):
    r"""(n, K) log-likelihoods :math:`\log f_k(x_i)` of uniform components under a t likelihood."""
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    a = np.asarray(a, float)[None, :]
    b = np.asarray(b, float)[None, :]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = logdiff_tcdf((x - lo) / s, (x - hi) / s, df) - np.log(hi - lo)
        pm = t_logpdf((x - a) / s, df) - np.log(s)
    return np.where(lo == hi, pm, out)


def _m2_antideriv(t, df):
    r""":math:`\int_0^t u^2 f_\nu(u)\,du` (odd in t; ``inf`` allowed when :math:`\nu > 2`)."""
    t = np.asarray(t, float)
    lc = sc.gammaln((df + 1) / 2) - sc.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    if df > 2:
        r = np.sqrt((df - 2) / df)
        lc2 = sc.gammaln((df - 1) / 2) - sc.gammaln((df - 2) / 2) - 0.5 * np.log((df - 2) * np.pi)
        k = np.exp(lc - lc2) / r
        # nu * [k (T_{nu-2}(t r) - 1/2) - (T_nu(t) - 1/2)]
        return df * (k * (sc.stdtr(df - 2, t * r) - 0.5) - (sc.stdtr(df, t) - 0.5))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(lc) * t ** 3 / 3.0 * sc.hyp2f1((df + 1) / 2, 1.5, 2.5, -t * t / df)


def t_unimix_comp_posterior(x, s, a, b, df):
    r"""Per-component posterior mean, second moment and cdf at 0, each (n, K), t likelihood.

    See the module docstring. Rows with non-finite x or s get the prior moments.
    """
    lo, hi, excl, xs, ss = unimix_args(x, s, a, b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        al = (lo - xs) / ss
        be = (hi - xs) / ss
        flip = (al + be) > 0
        A = np.where(flip, -be, al)  # work where T(B) - T(A) does not cancel
        B = np.where(flip, -al, be)
        lZ = logdiff_tcdf(B, A, df)
        lfA, lfB = t_logpdf(A, df), t_logpdf(B, df)
        gA = np.where(np.isfinite(A), np.exp(np.log(df + A * A) + lfA - lZ), 0.0)
        gB = np.where(np.isfinite(B), np.exp(np.log(df + B * B) + lfB - lZ), 0.0)
        if df == 1.0:  # Cauchy: the antiderivative of u f(u) is log(1 + u^2) / (2 pi)
            eu = (np.log1p(B * B) - np.log1p(A * A)) / (2 * np.pi) / np.exp(lZ)
        else:
            eu = (gA - gB) / (df - 1)
        eu = np.minimum(np.maximum(eu, A), B)
        eu2 = (_m2_antideriv(B, df) - _m2_antideriv(A, df)) / np.exp(lZ)
        lo2 = np.where((A <= 0) & (B >= 0), 0.0, np.minimum(A * A, B * B))
        eu2 = np.minimum(np.maximum(eu2, np.maximum(lo2, eu * eu)), np.maximum(A * A, B * B))
        eu = np.where(flip, -eu, eu)
        pm = xs + ss * eu
        p2 = xs * xs + 2 * xs * ss * eu + ss * ss * eu2
        # P(theta < 0 | comp) = P(u < -x/s | u in [al, be])
        c = np.minimum(-xs / ss, be)
        cdf = np.exp(logdiff_tcdf(np.maximum(c, al), al, df) - logdiff_tcdf(be, al, df))
        cdf = np.where(0.0 < lo, 0.0, np.where(0.0 >= hi, 1.0, np.clip(cdf, 0.0, 1.0)))
        prior_cdf = np.where(0.0 < lo, 0.0, np.where(0.0 >= hi, 1.0, (0.0 - lo) / (hi - lo)))
    point = lo == hi
    pm = np.where(point, lo, pm)
    p2 = np.where(point, lo * lo, p2)
    cdf = np.where(point, (lo <= 0).astype(float), cdf)
    pm = np.where(excl, 0.5 * (lo + hi), pm)
    p2 = np.where(excl, (lo * lo + lo * hi + hi * hi) / 3.0, p2)
    cdf = np.where(excl, prior_cdf, cdf)
    return pm, p2, cdf


def t_unimix_posterior(x, s, pi, a, b, df) -> MixPosterior:
    """Posterior summaries of a uniform mixture prior under a t likelihood (:class:`MixPosterior`)."""
    ll = t_unimix_loglik_matrix(x, s, a, b, df)
    pm, p2, cdf = t_unimix_comp_posterior(x, s, a, b, df)
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return _summarise(ll, pi, pm, p2, cdf, (a == 0) & (b == 0))


# ------------------------------------------------------------------ truncated-normal mixtures
_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def tnormalmix_loglik_matrix(x, s, mean, sd, a, b):
    r"""(n, K) log-likelihoods of truncated-normal components under a normal likelihood."""
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    mu, sd, a, b = (np.asarray(v, float)[None, :] for v in np.broadcast_arrays(mean, sd, a, b))
    s2, sd2 = s * s, sd * sd
    v1 = s2 + sd2
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = -0.5 * np.log(v1) - _LOG_SQRT_2PI - 0.5 * (x - mu) ** 2 / v1
        m = (x * sd2 + mu * s2) / v1
        sdp = np.sqrt(s2 * sd2 / v1)
        num = logdiff_ndtr((b - m) / sdp, (a - m) / sdp)
        den = logdiff_ndtr((b - mu) / sd, (a - mu) / sd)
        out = ln + num - den
        pmass = np.minimum(np.maximum(mu, a), b)
        out0 = -np.log(s) - _LOG_SQRT_2PI - 0.5 * ((x - pmass) / s) ** 2
    return np.where(sd == 0, out0, out)


def tnormalmix_comp_posterior(x, s, mean, sd, a, b):
    """Per-component posterior mean, second moment and cdf at 0, each (n, K), normal likelihood."""
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    mu, sd, a, b = (np.asarray(v, float)[None, :] for v in np.broadcast_arrays(mean, sd, a, b))
    excl = ~(np.isfinite(x) & np.isfinite(s))
    xs = np.where(excl, 0.0, x)
    ss = np.where(excl, 1.0, s)
    s2, sd2 = ss * ss, sd * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        m = (xs * sd2 + mu * s2) / (s2 + sd2)
        sdp = np.sqrt(s2 * sd2 / (s2 + sd2))
    # excluded rows: the prior component itself
    m = np.where(excl, mu, m)
    sdp = np.where(excl, sd, sdp)
    pm = etruncnorm(a, b, m, sdp)
    p2 = e2truncnorm(a, b, m, sdp)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = logdiff_ndtr((np.minimum(0.0, b) - m) / sdp, (a - m) / sdp)
        den = logdiff_ndtr((b - m) / sdp, (a - m) / sdp)
        cdf = np.exp(num - den)
    cdf = np.where(0.0 < a, 0.0, np.where(0.0 >= b, 1.0, np.clip(np.nan_to_num(cdf), 0.0, 1.0)))
    pt = np.minimum(np.maximum(mu, a), b) * np.ones_like(m)
    zero = sd == 0
    pm = np.where(zero, pt, pm)
    p2 = np.where(zero, pt * pt, p2)
    cdf = np.where(zero, (pt <= 0).astype(float), cdf)
    return pm, p2, cdf


def tnormalmix_posterior(x, s, pi, mean, sd, a, b) -> MixPosterior:
    """Posterior summaries of a truncated-normal mixture prior (:class:`MixPosterior`).

    Point-mass-at-zero components (for lfdr): ``sd == 0`` with mean 0 (ashr's ``pm_on_zero``).
    """
    ll = tnormalmix_loglik_matrix(x, s, mean, sd, a, b)
    pm, p2, cdf = tnormalmix_comp_posterior(x, s, mean, sd, a, b)
    mean_, sd_ = np.broadcast_arrays(np.asarray(mean, float), np.asarray(sd, float))
    return _summarise(ll, pi, pm, p2, cdf, (sd_ == 0) & (mean_ == 0))


@dataclass
class TNormalMix:
    r"""Truncated-normal mixture :math:`\sum_k \pi_k\, TN(\mu_k, \sigma_k^2; [a_k, b_k])` (ashr ``tnormalmix``).

    ``a``/``b`` may be :math:`\mp\infty`; :math:`\sigma_k = 0` is a point mass at :math:`\mu_k`.
    """

    pi: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def prune(self, thresh):
        keep = self.pi > thresh
        return TNormalMix(self.pi[keep] / self.pi[keep].sum(), self.mean[keep], self.sd[keep],
                          self.a[keep], self.b[keep])

    def loglik_matrix(self, x, s):
        return tnormalmix_loglik_matrix(x, s, self.mean, self.sd, self.a, self.b)

    def posterior(self, x, s):
        return tnormalmix_posterior(x, s, self.pi, self.mean, self.sd, self.a, self.b)

    @property
    def null_comp(self):
        return (self.sd == 0) & (self.mean == 0)
