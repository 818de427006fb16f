r"""Posterior sampling and lfsr for a flash fit (flashier's ``R/sampler.R``, ``calc.lfsr``).

For factor *k* and mode *n* the variational posterior is the EBNM posterior of
the normal-means problem :math:`x \sim N(\theta, s^2)`, :math:`\theta\sim\hat g_{k,n}`
built from the final fit (:func:`.update.ebnm_args`); the ebnm function is
called again with :math:`\hat g` fixed and asked for its sampler (or lfsr).
"""
from __future__ import annotations

import numpy as np

from .update import ebnm_args


def _problem(fit, k, n):
    Rk, _ = fit.residuals_without(k)
    T = fit.tau.full
    TR = T * Rk
    other = 1 - n
    return ebnm_args(T, TR, fit.EF[other][:, k], fit.EF2[other][:, k], n)


def _fixed_all(fit, k, n):
    fx = fit.fix.get(k)
    return fx is not None and fx[0] == n and len(fx[1]) == fit.dims[n]


def posterior_samplers(fit, output=("fitted_g", "posterior_sampler")):
    """One sampler ``f(nsamp, rng) -> (nsamp, dim)`` per mode and factor."""
    out = [[], []]
    for n in (0, 1):
        size = fit.dims[n]
        for k in range(fit.n_factors):
            if _fixed_all(fit, k, n):
                vals = fit.EF[n][:, k].copy()
                out[n].append(lambda ns, rng, v=vals: np.tile(v, (ns, 1)))
            elif fit.is_zero[k]:
                out[n].append(lambda ns, rng, d=size: np.zeros((ns, d)))
            else:
                x, s = _problem(fit, k, n)
                res = fit.fns[k][n](x, s, g_init=fit.g[k][n], fix_g=True, output=output)
                fx = fit.fix.get(k)
                if fx is not None and fx[0] == n and len(fx[1]):
                    # partially fixed: the fixed entries are constants (flashier passes s = 0)
                    idx, vals = np.asarray(fx[1]), fit.EF[n][np.asarray(fx[1]), k].copy()

                    def draw(ns, rng, r=res, idx=idx, vals=vals):
                        d = r.posterior_sampler(ns, seed=rng)
                        d[:, idx] = vals
                        return d

                    out[n].append(draw)
                else:
                    out[n].append(lambda ns, rng, r=res: r.posterior_sampler(ns, seed=rng))
    return out


def sample_fit(fit, nsamp, rng=None):
    """``nsamp`` joint draws of (L, F): a list of ``{"L": n x K, "F": p x K}``."""
    rng = np.random.default_rng(rng)
    samplers = posterior_samplers(fit)
    draws = [[f(nsamp, rng) for f in samplers[n]] for n in (0, 1)]
    res = []
    for t in range(nsamp):
        L = np.column_stack([d[t] for d in draws[0]]) if draws[0] else np.zeros((fit.dims[0], 0))
        F = np.column_stack([d[t] for d in draws[1]]) if draws[1] else np.zeros((fit.dims[1], 0))
        res.append({"L": L, "F": F})
    return res


def fit_lfsr(fit):
    """Local false sign rates (L_lfsr, F_lfsr), NaN where undefined (zero or fixed factors)."""
    out = []
    for n in (0, 1):
        M = np.full((fit.dims[n], fit.n_factors), np.nan)
        for k in range(fit.n_factors):
            if fit.is_zero[k] or _fixed_all(fit, k, n):
                continue
            x, s = _problem(fit, k, n)
            ok = s > 0
            res = fit.fns[k][n](x[ok], s[ok], g_init=fit.g[k][n], fix_g=True, output=("lfsr",))
            arr = getattr(res, "posterior_arrays", {}) or {}
            if "lfsr" in arr:
                M[ok, k] = arr["lfsr"]
        out.append(M)
    return out[0], out[1]
