r"""The two degenerate ebnm families: ``flat`` (no shrinkage) and ``point_mass`` (total shrinkage).

flat
    The improper uniform prior :math:`g = N(0, \infty)`: nothing is estimated and the
    posterior is :math:`\theta_i \mid x_i \sim N(x_i, s_i^2)`, so the mean is :math:`x_i`, the
    sd :math:`s_i` and lfsr :math:`\Phi(-|x_i|/s_i)`. The marginal likelihood is not defined:
    ``log_likelihood`` is None (R: ``NA``). ``fitted_g`` is ``NormalMix(pi=[1], mean=[0], sd=[inf])``.
point_mass
    :math:`g = \delta_\mu`: the posterior is :math:`\delta_\mu` (mean :math:`\mu`, sd 0) and
    :math:`\log L = \sum_i \log N(x_i; \mu, s_i^2)`. ``mode="estimate"`` gives the MLE
    :math:`\hat\mu = \sum_i x_i s_i^{-2} / \sum_i s_i^{-2}`.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import (
    _LOG_2PI,
    DEFAULT_OUTPUT,
    NormalMix,
    check_fix_g,
    check_mode,
    check_output,
    check_xs,
    drop_lfsr_off_zero,
)
from ._mixpost import finish_result

__all__ = ["ebnm_flat", "ebnm_point_mass"]


def _g_mean(g, fname, sd_expected):
    if not isinstance(g, NormalMix):
        raise MashInputError(f"{fname}: g_init must be a NormalMix (the fitted_g of an earlier {fname} fit), "
                             f"got {type(g).__name__}")
    mean = np.atleast_1d(np.asarray(g.mean, float))
    sd = np.atleast_1d(np.asarray(g.sd, float))
    if mean.size != 1 or sd[0] != sd_expected:
        raise MashInputError(f"{fname}: g_init must be one component with sd = {sd_expected}")
    return float(mean[0])


def ebnm_flat(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
              optmethod=None, control=None):
    r"""EBNM with the improper flat prior (no shrinkage): posterior :math:`N(x_i, s_i^2)`.

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (``s = inf``: the posterior is the improper prior,
        mean 0 and infinite sd).
    mode, scale, g_init, fix_g, optmethod, control
        Accepted for a common signature; nothing is estimated.
    output : iterable of str

    Returns
    -------
    EbnmResult
        ``log_likelihood`` is None (the marginal likelihood of an improper prior is not
        defined; R gives ``NA``).
    """
    fname = "ebnm_flat"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]

    def post(need):
        out = {}
        if "posterior_mean" in need:
            out["mean"] = xf.copy()
        if "posterior_sd" in need:
            out["sd"] = sf.copy()
        if "posterior_second_moment" in need:
            out["second_moment"] = xf * xf + sf * sf
        if "lfsr" in need:
            out["lfsr"] = sc.ndtr(-np.abs(xf) / sf)
        return out

    def prior():
        return {"mean": 0.0, "sd": np.inf, "second_moment": np.inf, "lfsr": 0.5}

    def sampler(nsamp, rng):
        z = rng.standard_normal((nsamp, x.size))
        return np.where(fin, x + np.where(fin, s, 0.0) * z, np.nan)

    g = NormalMix(pi=np.array([1.0]), mean=np.array([0.0]), sd=np.array([np.inf]))
    return finish_result("flat", want, x, s, fin, post, prior, g, sampler, None, fname)


def ebnm_point_mass(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                    optmethod=None, control=None):
    r"""EBNM with a point-mass prior :math:`g = \delta_\mu` (every :math:`\theta_i = \mu`).

    Parameters
    ----------
    x, s : array_like
    mode : float or "estimate"
        :math:`\mu`; ``"estimate"`` gives :math:`\sum x_i s_i^{-2}/\sum s_i^{-2}`.
    g_init : NormalMix, optional
        One component with sd 0; with ``fix_g=True`` its mean is used.
    fix_g : bool
    output : iterable of str

    Returns
    -------
    EbnmResult
        ``fitted_g`` is ``NormalMix(pi=[1], mean=[mu], sd=[0])``; the posterior is the point
        mass itself (as R, a warning says so).
    """
    fname = "ebnm_point_mass"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    mode_val = check_mode(mode, fname)
    check_fix_g(fix_g, g_init, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]
    if fix_g:
        mu = _g_mean(g_init, fname, 0.0)
    elif mode_val is None:
        if xf.size == 0:
            raise MashInputError(f"{fname}: every s is infinite; pass a numeric mode")
        w = 1.0 / (sf * sf)
        mu = float(np.sum(w * xf) / np.sum(w))
    else:
        mu = mode_val
    warnings.warn(f"{fname}: the prior is a point mass at {mu:g}; every posterior is that point mass "
                  "(no uncertainty)", RuntimeWarning, stacklevel=2)
    ll = float(np.sum(-0.5 * (_LOG_2PI + np.log(sf * sf) + (xf - mu) ** 2 / (sf * sf))))
    need_all = drop_lfsr_off_zero(want, mu, fname, stacklevel=2)

    def vals():
        return {"mean": mu, "sd": 0.0, "second_moment": mu * mu, "lfsr": 1.0}

    def post(need):
        v = vals()
        key = {"posterior_mean": "mean", "posterior_sd": "sd", "posterior_second_moment": "second_moment",
               "lfsr": "lfsr"}
        return {key[k]: np.full(xf.size, v[key[k]]) for k in need & need_all}

    g = NormalMix(pi=np.array([1.0]), mean=np.array([mu]), sd=np.array([0.0]))
    return finish_result("point_mass", need_all, x, s, fin, post, vals, g,
                         lambda nsamp, rng: np.full((nsamp, x.size), mu), ll, fname)
