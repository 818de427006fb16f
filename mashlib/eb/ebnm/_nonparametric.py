r"""Nonparametric ebnm families: normal scale mixtures and the ash-based unimodal families (map §2.7).

normal_scale_mixture
--------------------
:math:`g = \sum_{k=1}^K \pi_k N(\mu, \sigma_k^2)` on ebnm's fixed grid
(:func:`mashlib.eb.ebnm._grids.scale_normalmix`). With
:math:`\ell_{ik} = \log N(x_i; \mu, s_i^2 + \sigma_k^2)` and
:math:`L_{ik} = \exp(\ell_{ik} - \max_k \ell_{ik})`, the weights maximise
:math:`\sum_i \log \sum_k \pi_k L_{ik}` (mix-SQP, :func:`mashlib.mixsqp` with
its default control, no penalty, start :math:`\pi = 1` or ``g_init.pi``), then
:math:`\pi \leftarrow \max(\pi, 0)/\sum`. The log-likelihood is
:math:`\sum_i [\log(L\pi)_i + \max_k\ell_{ik}]`.

Posterior: component responsibilities :math:`w_{ik} \propto \pi_k L_{ik}`; given
component k, :math:`\theta_i \sim N(m_{ik}, v_{ik})` with
:math:`m_{ik} = \mu + (x_i-\mu)\sigma_k^2/(s_i^2+\sigma_k^2)`,
:math:`v_{ik} = s_i^2\sigma_k^2/(s_i^2+\sigma_k^2)`; lfsr :math:`= P_0 + \min(P_-, P_+)`
with :math:`P_0 = \sum_{k:\sigma_k=0} w_{ik}` and :math:`P_- = \sum_k w_{ik}\Phi(-m_{ik}/\sqrt{v_{ik}})`.
Observations with :math:`s_i = \infty` are left out of the fit and get the prior.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import (
    DEFAULT_OUTPUT,
    EbnmResult,
    NormalMix,
    PointNormal,
    check_fix_g,
    check_mode,
    check_output,
    check_xs,
    drop_lfsr_off_zero,
    fit_mode,
    set_posterior,
)
from ._grids import scale_normalmix
from ._mixpost import gmix_loglik_matrix, gmix_posterior, gmix_prior_values, gmix_sample

__all__ = ["ebnm_normal_scale_mixture"]


def _nm_loglik_matrix(x, s, mu, sd):
    """:func:`~mashlib.eb.ebnm._mixpost.gmix_loglik_matrix` with the common mean ``mu``."""
    return gmix_loglik_matrix(x, s, np.full(sd.size, mu), sd)


def _nm_fit_pi(lL, pi0):
    from .._mixsqp import mixsqp

    mx = lL.max(axis=1, keepdims=True)
    L = np.exp(lL - mx)
    K = L.shape[1]
    if K == 1:
        return np.ones(1)
    res = mixsqp(L, x0=np.ones(K) if pi0 is None else pi0, control={"verbose": False})
    pi = np.maximum(res.x, 0.0)
    return pi / pi.sum()


def _nm_total(lL, pi):
    with np.errstate(divide="ignore"):
        return float(np.sum(sc.logsumexp(lL + np.log(pi)[None, :], axis=1)))


def _g_to_normalmix(g, fname):
    if isinstance(g, PointNormal):
        g = g.to_normalmix()
    if not isinstance(g, NormalMix):
        raise MashInputError(f"{fname}: g_init must be a NormalMix (e.g. the fitted_g of an earlier "
                             f"normal_scale_mixture fit), got {type(g).__name__}")
    pi, mean, sd = (np.atleast_1d(np.asarray(a, float)) for a in (g.pi, g.mean, g.sd))
    if not (pi.size == mean.size == sd.size) or np.any(mean != mean[0]):
        raise MashInputError(f"{fname}: g_init must have one common mean and equal-length pi/mean/sd")
    return pi, float(mean[0]), sd


def ebnm_normal_scale_mixture(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False,
                              output=DEFAULT_OUTPUT, optmethod=None, control=None, gridmult=None):
    r"""EBNM with a scale mixture of normals, :math:`g = \sum_k \pi_k N(\mu, \sigma_k^2)` (map §2.7).

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (``s = inf``: missing, posterior = prior).
    mode : float or "estimate"
        Common mean :math:`\mu` (``"estimate"`` maximises the log-likelihood over
        :math:`[\min x, \max x]` with bounded scalar optimisation).
    scale : "estimate" or array_like
        The grid of sds :math:`\sigma_k`; ``"estimate"`` uses ebnm's KL-based grid
        (:func:`mashlib.eb.ebnm._grids.scale_normalmix`) or, with ``gridmult``, the
        ashr-style grid :math:`\sigma_{\max}\,\mathrm{gridmult}^{-j}` with 0 prepended.
    g_init : NormalMix, optional
        Its sds define the grid and its weights start mix-SQP.
    fix_g : bool
        Only compute posteriors under ``g_init``.
    output, optmethod, control
        As :func:`mashlib.ebnm_point_normal`; ``control`` is passed to mix-SQP.
    gridmult : float, optional

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`~mashlib.eb.ebnm._core.NormalMix`.
    """
    fname = "ebnm_normal_scale_mixture"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    mode_val = check_mode(mode, fname)
    check_fix_g(fix_g, g_init, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]
    pi0 = None
    if g_init is not None:
        pi0, mu_g, sd = _g_to_normalmix(g_init, fname)
        if mode_val is None:
            mode_val = mu_g
    if fix_g:
        pi, mu = pi0 / pi0.sum(), mu_g
    else:
        if xf.size == 0:
            raise MashInputError(f"{fname}: every s is infinite; pass g_init with fix_g=True")
        if g_init is None:
            if not isinstance(scale, str):
                sd = np.atleast_1d(np.asarray(scale, float))
                if np.any(~np.isfinite(sd)) or np.any(sd < 0):
                    raise MashInputError(f"{fname}: scale must be 'estimate' or non-negative finite sds")
            elif scale != "estimate":
                raise MashInputError(f"{fname}: scale={scale!r} must be 'estimate' or a vector of sds")
            else:
                sd = None

        def grid(mu):
            if sd is not None:
                return sd
            if gridmult is not None:
                return _ash_grid(xf - mu, sf, gridmult)
            return scale_normalmix(x, s, mu)

        def fit_at(mu):
            sdk = grid(mu)
            lL = _nm_loglik_matrix(xf, sf, mu, sdk)
            p0 = pi0 if (pi0 is not None and pi0.size == sdk.size) else None
            pi = _nm_fit_pi(lL, p0)
            return _nm_total(lL, pi), pi, sdk

        mu = fit_mode(fit_at, xf, mode_val)
        _, pi, sd = fit_at(mu)

    result = EbnmResult(prior_family="normal_scale_mixture")
    lL = _nm_loglik_matrix(xf, sf, mu, sd)
    if "log_likelihood" in want:
        result.log_likelihood = _nm_total(lL, pi)
    need = want & {"posterior_mean", "posterior_sd", "posterior_second_moment", "lfsr"}
    need = drop_lfsr_off_zero(need, mu, fname, stacklevel=2)
    if need:
        means = np.full(sd.size, mu)        # lfsr only with mu = 0 (drop_lfsr_off_zero)
        post = gmix_posterior(xf, sf, pi, means, sd, need, lL)
        set_posterior(result, post, fin, x.size, lambda: gmix_prior_values(pi, means, sd, need))
    g = NormalMix(pi=pi, mean=np.full(pi.size, mu), sd=sd)
    if "fitted_g" in want or "posterior_sampler" in want:
        result.fitted_g = g_init if fix_g else g
        result._sampler = lambda nsamp, rng: gmix_sample(x, s, pi, np.full(sd.size, mu), sd, nsamp, rng)
    if "data" in want:
        import pandas as pd

        result.data = pd.DataFrame({"x": x, "s": s})
    return result


def _ash_grid(x, s, gridmult):
    """ashr's ``autoselect.mixsd`` grid with a point mass (map §2.3 step 2)."""
    smin = np.min(s) / 10.0
    d = x * x - s * s
    smax = 2.0 * np.sqrt(np.max(d)) if np.any(d > 0) else 8.0 * smin
    if smax <= smin:
        smax = 8.0 * smin
    npoint = int(np.ceil(np.log2(smax / smin) / np.log2(gridmult)))
    return np.concatenate([[0.0], gridmult ** (-np.arange(npoint, -1, -1.0)) * smax])
