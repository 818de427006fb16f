r"""Normal and uniform mixture priors: component likelihoods, posteriors, truncated-normal moments.

The building blocks of ashr (map §2.3), vectorised over n observations x K components,
for reuse by :mod:`mashlib.eb`, the ebnm families and CorShrink.

Model: :math:`x_i \mid \beta_i \sim N(\beta_i, s_i^2)`, prior
:math:`\beta_i \sim g = \sum_k \pi_k g_k`.

Public functions
----------------
``normalmix_loglik_matrix(x, s, mixsd, mean=0)``
    (n, K) :math:`\log N(x_i; \mu_k, s_i^2 + \sigma_k^2)`.
``unimix_loglik_matrix(x, s, a, b)``
    (n, K) :math:`\log \{[\Phi((x_i-a_k)/s_i) - \Phi((x_i-b_k)/s_i)]/(b_k-a_k)\}`, and
    :math:`\log \phi((x_i-a_k)/s_i) - \log s_i` when :math:`a_k = b_k` (point mass).
``normalmix_comp_posterior(x, s, mixsd, mean=0)`` / ``unimix_comp_posterior(x, s, a, b)``
    per-component posterior mean, second moment and cdf at 0, each (n, K).
``normalmix_posterior(x, s, pi, mixsd, mean=0)`` / ``unimix_posterior(x, s, pi, a, b)``
    :class:`MixPosterior` (mean, second_moment, prob_zero, prob_negative) with
    properties ``sd``, ``prob_positive``, ``lfsr``; plus the (n, K) posterior component
    probabilities in ``.comp_prob`` and the per-observation log marginal likelihood in
    ``.loglik``. Observations with non-finite ``x`` or ``s`` get the prior.
``posterior_component_probs(loglik_matrix, pi)``
    softmax over k of :math:`\log\pi_k + \log f_k(x_i)`.
``etruncnorm(a, b, mean=0, sd=1)``, ``e2truncnorm(a, b, mean=0, sd=1)``
    :math:`E[Y]` and :math:`E[Y^2]` for :math:`Y \sim N(\text{mean}, \text{sd}^2)` truncated
    to [a, b], stable in the tails (ashr's ``my_etruncnorm``/``my_e2truncnorm``).
``compute_lfsr(NegativeProb, ZeroProb)``
    :math:`\text{lfsr} = 1 - NP` if :math:`NP > (1 - ZP)/2` else :math:`NP + ZP`.

Posterior summaries. With :math:`w_{ik} \propto \pi_k f_k(x_i)`:
mean :math:`\sum_k w_{ik} m_{ik}`, second moment :math:`\sum_k w_{ik} m^{(2)}_{ik}`,
``prob_zero`` (lfdr) :math:`\sum_{k \in \text{point mass at 0}} w_{ik}`,
``prob_negative`` :math:`\max(0, \sum_k w_{ik} F_{ik}(0) - \text{lfdr})`, where
:math:`F_{ik}` is the component posterior cdf. "Point mass at 0" follows ashr's
``pm_on_zero``: ``sd == 0`` for normal components, ``a == b == 0`` for uniform ones.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import log_ndtr, ndtr

__all__ = [
    "normalmix_loglik_matrix", "unimix_loglik_matrix", "normalmix_comp_posterior",
    "unimix_comp_posterior", "normalmix_posterior", "unimix_posterior",
    "posterior_component_probs", "etruncnorm", "e2truncnorm", "compute_lfsr",
    "logdiff_ndtr", "MixPosterior",
]

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def _log1mexp(d):
    """log(1 - exp(d)) for d <= 0, stable (Mächler 2012)."""
    d = np.asarray(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > -np.log(2), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _lphi(z):
    return -0.5 * z * z - _LOG_SQRT_2PI


def logdiff_ndtr(hi, lo):
    r""":math:`\log(\Phi(hi) - \Phi(lo))` for hi >= lo, stable in both tails.

    Works on the lower tail (reflecting when :math:`hi + lo > 0`):
    :math:`\log\Phi(p) + \log(1 - e^{\log\Phi(q) - \log\Phi(p)})`. Equal endpoints give -inf.
    """
    hi, lo = np.broadcast_arrays(np.asarray(hi, float), np.asarray(lo, float))
    flip = (hi + lo) > 0
    p = np.where(flip, -lo, hi)
    q = np.where(flip, -hi, lo)
    lp = log_ndtr(p)
    lq = log_ndtr(q)
    with np.errstate(invalid="ignore"):
        out = lp + _log1mexp(lq - lp)
    return np.where(hi == lo, -np.inf, out)


# ------------------------------------------------------------------ likelihoods
def normalmix_loglik_matrix(x, s, mixsd, mean=0.0):
    r"""(n, K) component log-likelihoods :math:`\log N(x_i; \mu_k, s_i^2 + \sigma_k^2)`."""
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    sd = np.asarray(mixsd, float)[None, :]
    mu = np.broadcast_to(np.asarray(mean, float), np.shape(mixsd))[None, :]
    v = s * s + sd * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        return -0.5 * np.log(v) - _LOG_SQRT_2PI - 0.5 * (x - mu) ** 2 / v


def unimix_loglik_matrix(x, s, a, b):
    r"""(n, K) component log-likelihoods for uniform components :math:`U[a_k, b_k]`.

    .. math::
        \log f_k(x) = \log[\Phi((x-a_k)/s) - \Phi((x-b_k)/s)] - \log(b_k - a_k),

    computed by :func:`logdiff_ndtr`; for :math:`a_k = b_k`,
    :math:`\log\phi((x-a_k)/s) - \log s`.
    """
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    a = np.asarray(a, float)[None, :]
    b = np.asarray(b, float)[None, :]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = logdiff_ndtr((x - lo) / s, (x - hi) / s) - np.log(hi - lo)
        pm = _lphi((x - a) / s) - np.log(s)
    return np.where(lo == hi, pm, out)


def posterior_component_probs(loglik_matrix, pi):
    r"""Posterior component probabilities :math:`w_{ik} \propto \pi_k f_k(x_i)` (softmax).

    Components with :math:`\pi_k = 0` get weight 0. Rows whose log-likelihoods are all
    non-finite (excluded observations) get the prior :math:`\pi`.
    """
    pi = np.asarray(pi, float)
    with np.errstate(divide="ignore"):
        lw = np.asarray(loglik_matrix, float) + np.log(pi)[None, :]
    mx = np.max(lw, axis=1, keepdims=True)
    ok = np.isfinite(mx[:, 0])
    mx = np.where(np.isfinite(mx), mx, 0.0)
    w = np.exp(lw - mx)
    w /= w.sum(axis=1, keepdims=True)
    if not ok.all():
        w[~ok] = pi / pi.sum()
    return w


# ------------------------------------------------------------------ truncated normal
def etruncnorm(a, b, mean=0.0, sd=1.0):
    r"""Mean of :math:`N(\text{mean}, \text{sd}^2)` truncated to [a, b] (broadcasting).

    On the standard scale :math:`\alpha = (a-m)/sd`, :math:`\beta = (b-m)/sd`, reflected
    (:math:`(\alpha,\beta) \to (-\beta,-\alpha)`, result negated) when both are positive
    or :math:`\beta > |\alpha|`, so that the work is in the lower tail:

    .. math::
        E[Z] = -\exp\{\log(\phi(\beta) - \phi(\alpha)) - \log(\Phi(\beta) - \Phi(\alpha))\}.

    Equal endpoints give the endpoint; the result is clamped to
    :math:`[\max(\beta + 1/\beta, (\alpha+\beta)/2), \beta]` when :math:`\beta < 0`
    (valid bounds that repair cancellation far in the tail) and to [alpha, beta].
    ``sd == 0`` gives the point mass ``mean`` clamped to [a, b].
    """
    a, b, m, sd = np.broadcast_arrays(*(np.asarray(v, float) for v in (a, b, mean, sd)))
    with np.errstate(divide="ignore", invalid="ignore"):
        al = (a - m) / sd
        be = (b - m) / sd
        flip = ((al > 0) & (be > 0)) | (be > np.abs(al))
        A = np.where(flip, -be, al)
        B = np.where(flip, -al, be)
        # log(phi(B) - phi(A)), phi(B) >= phi(A) since |B| <= |A|
        lpB, lpA = _lphi(B), _lphi(A)
        lnum = lpB + _log1mexp(lpA - lpB)
        lden = logdiff_ndtr(B, A)
        e = -np.exp(lnum - lden)
        e = np.where(np.isinf(A) & np.isinf(B) & (A < 0) & (B > 0), 0.0, e)
        e = np.where(A == B, A, e)
        neg = B < 0
        lower = np.maximum(B + 1.0 / B, 0.5 * (A + B))
        e = np.where(neg & np.isfinite(B), np.clip(e, np.where(np.isfinite(lower), lower,
                                                                 -np.inf), B), e)
        e = np.where(np.isnan(e) & np.isfinite(A) & np.isfinite(B), 0.5 * (A + B), e)
        e = np.minimum(np.maximum(e, A), B)
        e = np.where(flip, -e, e)
        out = m + sd * e
    pm = np.minimum(np.maximum(m, a), b)
    out = np.where(sd == 0, pm, out)
    return out[()] if out.ndim == 0 else out


def e2truncnorm(a, b, mean=0.0, sd=1.0):
    r"""Second moment :math:`E[Y^2]` of :math:`N(\text{mean}, \text{sd}^2)` truncated to [a, b].

    Standard scale (reflected as in :func:`etruncnorm`, :math:`Z^2` is symmetric):

    .. math::
        E[Z^2] = 1 + \frac{\alpha\phi(\alpha) - \beta\phi(\beta)}{\Phi(\beta) - \Phi(\alpha)},

    each ratio formed in log space; clamped to the range of :math:`z^2` on
    :math:`[\alpha,\beta]` and, for :math:`\beta < 0`, to at most
    :math:`\beta^2 + 2(1 + 1/\beta^2)`. Then
    :math:`E[Y^2] = m^2 + 2 m\,sd\,E[Z] + sd^2 E[Z^2]`.
    """
    a, b, m, sd = np.broadcast_arrays(*(np.asarray(v, float) for v in (a, b, mean, sd)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        al = (a - m) / sd
        be = (b - m) / sd
        flip = ((al > 0) & (be > 0)) | (be > np.abs(al))
        A = np.where(flip, -be, al)
        B = np.where(flip, -al, be)
        lden = logdiff_ndtr(B, A)

        def term(z):
            t = np.sign(z) * np.exp(np.log(np.abs(z)) + _lphi(z) - lden)
            return np.where(np.isfinite(z), t, 0.0)

        e2 = 1.0 + term(A) - term(B)
        e2 = np.where(A == B, A * A, e2)
        lo = np.where((A <= 0) & (B >= 0), 0.0, np.minimum(A * A, B * B))
        hi = np.maximum(A * A, B * B)
        hi = np.where(B < 0, np.minimum(hi, B * B + 2 * (1 + 1 / (B * B))), hi)
        e2 = np.where(np.isnan(e2), 0.5 * (lo + hi), e2)
        e2 = np.minimum(np.maximum(e2, lo), hi)
        ez = etruncnorm(al, be, 0.0, 1.0)
        out = m * m + 2 * m * sd * ez + sd * sd * e2
    pm = np.minimum(np.maximum(m, a), b)
    out = np.where(sd == 0, pm * pm, out)
    return out[()] if out.ndim == 0 else out


# ------------------------------------------------------------------ component posteriors
def normalmix_comp_posterior(x, s, mixsd, mean=0.0):
    r"""Per-component posterior (n, K) arrays (mean, second moment, cdf at 0).

    :math:`m_{ik} = (\mu_k s_i^2 + x_i\sigma_k^2)/(s_i^2 + \sigma_k^2)`,
    :math:`v_{ik} = s_i^2\sigma_k^2/(s_i^2 + \sigma_k^2)`, second moment
    :math:`m^2 + v`, cdf :math:`\Phi((0 - m)/\sqrt v)` (a step at m when v = 0).
    Rows with non-finite x or s get the prior moments.
    """
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    sd = np.asarray(mixsd, float)[None, :]
    mu = np.broadcast_to(np.asarray(mean, float), np.shape(mixsd))[None, :]
    excl = ~(np.isfinite(x) & np.isfinite(s))
    s2, sd2 = s * s, sd * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pm = (mu * s2 + x * sd2) / (s2 + sd2)
        pv = s2 * sd2 / (s2 + sd2)
    pm = np.where(sd2 == 0, mu, pm)
    pv = np.where(sd2 == 0, 0.0, pv)
    pm = np.where(excl, mu, pm)
    pv = np.where(excl, sd2, pv)
    psd = np.sqrt(np.maximum(pv, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cdf = ndtr((0.0 - pm) / psd)
    cdf = np.where(psd == 0, (pm <= 0).astype(float), cdf)
    return pm, pm * pm + pv, cdf


def _unimix_cdf(c, x, s, a, b):
    """P(beta <= c | x, beta ~ U[a,b]) = truncated-normal cdf, log-scale ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        num = logdiff_ndtr((np.minimum(c, b) - x) / s, (a - x) / s)
        den = logdiff_ndtr((b - x) / s, (a - x) / s)
        r = np.exp(num - den)
        r = np.where(np.isnan(r), (np.minimum(c, b) - a) / (b - a), r)
    r = np.where(c < a, 0.0, np.where(c >= b, 1.0, r))
    return np.clip(r, 0.0, 1.0)


def unimix_args(x, s, a, b):
    """Broadcast observations (n, 1) against uniform components (1, K): the ordered limits
    ``lo, hi``, the rows without a finite x or s (``excl``) and x, s with those rows set to 0, 1."""
    x = np.asarray(x, float)[:, None]
    s = np.asarray(s, float)[:, None]
    a = np.asarray(a, float)[None, :]
    b = np.asarray(b, float)[None, :]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    excl = ~(np.isfinite(x) & np.isfinite(s))
    return lo, hi, excl, np.where(excl, 0.0, x), np.where(excl, 1.0, s)


def unimix_comp_posterior(x, s, a, b):
    r"""Per-component posterior (n, K) arrays (mean, second moment, cdf at 0), U[a,b] prior.

    The component posterior is :math:`N(x, s^2)` truncated to :math:`[a_k, b_k]`:
    mean :func:`etruncnorm`, second moment :func:`e2truncnorm`; a point mass when
    :math:`a_k = b_k`. Rows with non-finite x or s get the prior moments
    (:math:`(a+b)/2`, :math:`(a^2+ab+b^2)/3`, cdf :math:`(0-a)/(b-a)` clipped).
    """
    lo, hi, excl, xs, ss = unimix_args(x, s, a, b)
    pm = etruncnorm(lo, hi, xs, ss)
    p2 = e2truncnorm(lo, hi, xs, ss)
    cdf = _unimix_cdf(0.0, xs, ss, lo, hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        prior_cdf = np.where(0.0 < lo, 0.0, np.where(0.0 >= hi, 1.0, (0.0 - lo) / (hi - lo)))
    pm = np.where(excl, 0.5 * (lo + hi), pm)
    p2 = np.where(excl, (lo * lo + lo * hi + hi * hi) / 3.0, p2)
    cdf = np.where(excl, prior_cdf, cdf)
    return pm, p2, cdf


# ------------------------------------------------------------------ mixture posteriors
def compute_lfsr(NegativeProb, ZeroProb):
    r"""Local false sign rate (ashr ``compute_lfsr``).

    .. math::
        \text{lfsr} = \begin{cases} 1 - NP & NP > (1 - ZP)/2 \\ NP + ZP & \text{otherwise}
        \end{cases}

    with negative results clipped to 0.
    """
    NP = np.asarray(NegativeProb, float)
    ZP = np.asarray(ZeroProb, float)
    out = np.where(NP > 0.5 * (1.0 - ZP), 1.0 - NP, NP + ZP)
    return np.maximum(out, 0.0)


class MixPosterior(NamedTuple):
    """Posterior summaries of a mixture prior (each an (n,) array)."""

    mean: np.ndarray
    second_moment: np.ndarray
    prob_zero: np.ndarray
    prob_negative: np.ndarray
    comp_prob: np.ndarray | None = None
    loglik: np.ndarray | None = None

    @property
    def sd(self):
        """:math:`\\sqrt{\\max(0, E\\beta^2 - (E\\beta)^2)}`."""
        return np.sqrt(np.maximum(self.second_moment - self.mean ** 2, 0.0))

    @property
    def prob_positive(self):
        return np.maximum(1.0 - self.prob_negative - self.prob_zero, 0.0)

    @property
    def lfsr(self):
        return compute_lfsr(self.prob_negative, self.prob_zero)


def _summarise(ll, pi, pm, p2, cdf, zero_comp):
    pi = np.asarray(pi, float)
    w = posterior_component_probs(ll, pi)
    with np.errstate(divide="ignore"):
        lw = ll + np.log(pi)[None, :]
    mx = np.max(lw, axis=1)
    fin = np.isfinite(mx)
    mxs = np.where(fin, mx, 0.0)
    loglik = np.where(fin, mxs + np.log(np.exp(lw - mxs[:, None]).sum(axis=1)), np.nan)
    # components with w == 0 may carry NaN moments (e.g. 0 * inf); drop them
    mean = np.nansum(w * np.where(w > 0, pm, 0.0), axis=1)
    second = np.nansum(w * np.where(w > 0, p2, 0.0), axis=1)
    lfdr = w[:, zero_comp].sum(axis=1)
    npos = np.maximum(np.nansum(w * np.where(w > 0, cdf, 0.0), axis=1) - lfdr, 0.0)
    return MixPosterior(mean, second, lfdr, npos, w, loglik)


def normalmix_posterior(x, s, pi, mixsd, mean=0.0):
    r"""Posterior summaries under the normal mixture :math:`\sum_k \pi_k N(\mu_k, \sigma_k^2)`.

    Returns :class:`MixPosterior` ``(mean, second_moment, prob_zero, prob_negative)``
    (+ ``comp_prob``, per-observation ``loglik`` = :math:`\log\sum_k\pi_k f_k(x_i)`, NaN for
    excluded rows). Point mass components: ``mixsd == 0``.
    """
    ll = normalmix_loglik_matrix(x, s, mixsd, mean)
    pm, p2, cdf = normalmix_comp_posterior(x, s, mixsd, mean)
    return _summarise(ll, pi, pm, p2, cdf, np.asarray(mixsd, float) == 0)


def unimix_posterior(x, s, pi, a, b):
    r"""Posterior summaries under the uniform mixture :math:`\sum_k \pi_k U[a_k, b_k]`.

    As :func:`normalmix_posterior`; point mass components at zero: ``a == b == 0``.
    """
    ll = unimix_loglik_matrix(x, s, a, b)
    pm, p2, cdf = unimix_comp_posterior(x, s, a, b)
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return _summarise(ll, pi, pm, p2, cdf, (a == 0) & (b == 0))
