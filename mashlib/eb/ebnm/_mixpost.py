r"""Posterior summaries and sampling shared by the later ebnm families (npmle, deconvolver, flat, ...).

General normal mixture :math:`g = \sum_k \pi_k N(\mu_k, \sigma_k^2)` (:math:`\sigma_k = 0`: a
point mass at :math:`\mu_k`) under :math:`x_i \sim N(\theta_i, s_i^2)`:

.. math::
    \ell_{ik} = \log N(x_i; \mu_k, s_i^2 + \sigma_k^2),\quad
    w_{ik} \propto \pi_k e^{\ell_{ik}},\quad
    m_{ik} = \mu_k + (x_i - \mu_k)\frac{\sigma_k^2}{s_i^2 + \sigma_k^2},\quad
    v_{ik} = \frac{s_i^2\sigma_k^2}{s_i^2 + \sigma_k^2}.

Posterior mean :math:`\sum_k w_{ik} m_{ik}`, second moment :math:`\sum_k w_{ik}(m_{ik}^2 + v_{ik})`,
:math:`P(\theta_i < 0) = \sum_k w_{ik}\Phi(-m_{ik}/\sqrt{v_{ik}})` (a step for :math:`v = 0`),
:math:`P(\theta_i = 0) = \sum_{k: \sigma_k = 0, \mu_k = 0} w_{ik}` and
lfsr :math:`= \min\{P(\theta_i \le 0), P(\theta_i \ge 0)\}`.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ._core import _LOG_2PI, EbnmResult, set_posterior

__all__ = ["gmix_loglik_matrix", "gmix_posterior", "gmix_prior_values", "gmix_sample", "finish_result"]

POST_KEYS = ("posterior_mean", "posterior_sd", "posterior_second_moment", "lfsr")


def gmix_loglik_matrix(x, s, mean, sd):
    """(n, K) :math:`\\log N(x_i; \\mu_k, s_i^2 + \\sigma_k^2)`."""
    v = s[:, None] ** 2 + np.asarray(sd, float)[None, :] ** 2
    return -0.5 * (_LOG_2PI + np.log(v) + (x[:, None] - np.asarray(mean, float)[None, :]) ** 2 / v)


def _weights(lL, pi):
    with np.errstate(divide="ignore"):
        lw = lL + np.log(pi)[None, :]
    return np.exp(lw - sc.logsumexp(lw, axis=1, keepdims=True))


def _summaries(w, m, v, zero, want):
    out = {}
    mean = np.sum(w * m, axis=1)
    if "posterior_mean" in want:
        out["mean"] = mean
    if want & {"posterior_sd", "posterior_second_moment"}:
        second = np.maximum(np.sum(w * (m * m + v), axis=1), mean * mean)
        if "posterior_sd" in want:
            out["sd"] = np.sqrt(np.maximum(second - mean * mean, 0.0))
        if "posterior_second_moment" in want:
            out["second_moment"] = second
    if "lfsr" in want:
        with np.errstate(divide="ignore", invalid="ignore"):
            neg = np.where(v > 0, sc.ndtr(-m / np.sqrt(v)), (m < 0).astype(float))
        pneg = np.sum(w * neg, axis=1)
        p0 = np.sum(w[:, zero], axis=1) if zero.any() else 0.0
        out["lfsr"] = np.clip(np.minimum(pneg + p0, 1.0 - pneg), 0.0, 1.0)
    return out


def gmix_posterior(x, s, pi, mean, sd, want, lL=None):
    """Posterior summaries (dict ``mean``/``sd``/``second_moment``/``lfsr``) for finite ``s``."""
    mean = np.asarray(mean, float)
    sd = np.asarray(sd, float)
    if lL is None:
        lL = gmix_loglik_matrix(x, s, mean, sd)
    w = _weights(lL, pi)
    s2 = (s * s)[:, None]
    sd2 = (sd * sd)[None, :]
    m = mean[None, :] + (x[:, None] - mean[None, :]) * (sd2 / (s2 + sd2))
    v = s2 * sd2 / (s2 + sd2)
    return _summaries(w, m, v, (sd == 0) & (mean == 0), want)


def gmix_prior_values(pi, mean, sd, want):
    """The prior's own summaries (for observations with ``s = inf``), name -> scalar."""
    mean = np.asarray(mean, float)
    sd = np.asarray(sd, float)
    out = _summaries(np.asarray(pi, float)[None, :], mean[None, :], (sd * sd)[None, :],
                     (sd == 0) & (mean == 0), set(want) | {"posterior_mean", "posterior_sd",
                                                          "posterior_second_moment", "lfsr"})
    return {k: v[0] for k, v in out.items()}


def gmix_sample(x, s, pi, mean, sd, nsamp, rng):
    """Posterior draws, an (nsamp, n) array (``s = inf``: draws from the prior)."""
    mean = np.asarray(mean, float)
    sd = np.asarray(sd, float)
    fin = np.isfinite(s)
    n = x.size
    with np.errstate(divide="ignore"):
        lw = np.tile(np.log(pi), (n, 1))
    if fin.any():
        lw[fin] += gmix_loglik_matrix(x[fin], s[fin], mean, sd)
    w = np.exp(lw - sc.logsumexp(lw, axis=1, keepdims=True))
    s2 = np.where(fin, s * s, 0.0)[:, None]
    sd2 = (sd * sd)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(fin[:, None], mean + (x[:, None] - mean) * (sd2 / (s2 + sd2)), mean)
        v = np.where(fin[:, None], s2 * sd2 / (s2 + sd2), sd2)
    m = np.nan_to_num(m)
    v = np.nan_to_num(v)
    cw = np.cumsum(w, axis=1)
    u = rng.random((nsamp, n, 1))
    k = np.minimum((u > cw[None, :, :]).sum(axis=2), pi.size - 1)
    idx = np.arange(n)[None, :]
    return m[idx, k] + np.sqrt(v[idx, k]) * rng.standard_normal((nsamp, n))


def finish_result(family, want, x, s, fin, post_fn, prior_fn, fitted_g, sampler, log_likelihood, fname):
    """Assemble an :class:`EbnmResult` from the pieces every family computes.

    ``post_fn(need)`` returns the finite-``s`` summaries, ``prior_fn()`` the prior's
    (scalars, used for ``s = inf`` rows), ``sampler(nsamp, rng)`` draws posterior samples.
    """
    result = EbnmResult(prior_family=family)
    if "log_likelihood" in want:
        result.log_likelihood = log_likelihood
    need = want & set(POST_KEYS)
    if need:
        set_posterior(result, post_fn(need), fin, x.size, prior_fn)
    if "fitted_g" in want or "posterior_sampler" in want:
        result.fitted_g = fitted_g
        result._sampler = sampler
    if "data" in want:
        import pandas as pd

        result.data = pd.DataFrame({"x": x, "s": s})
    return result
