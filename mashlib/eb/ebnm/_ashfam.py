r"""ash-based ebnm families: unimodal, unimodal_symmetric, unimodal_nonnegative, unimodal_nonpositive, ash.

ebnm fits these by calling ``ashr::ash`` (map §2.7 ``ebnm_ash_workhorse``) with

===================== ================ ===========================================
family                ash mixcompdist  components (mode :math:`\mu`, grid :math:`b_k`)
===================== ================ ===========================================
unimodal              halfuniform      :math:`[\mu-b_k,\mu]` and :math:`[\mu,\mu+b_k]`
unimodal_symmetric    uniform          :math:`[\mu-b_k,\mu+b_k]`
unimodal_nonnegative  +uniform         :math:`[\mu,\mu+b_k]`
unimodal_nonpositive  -uniform         :math:`[\mu-b_k,\mu]`
ash                   (user, default   as the chosen mixcompdist
                      uniform)
===================== ================ ===========================================

with :math:`b_0 = 0` (the point mass). The grid, when the mode is fixed and no ash
grid argument is given, is ebnm's KL grid for uniform mixtures
(:func:`mashlib.eb.ebnm._grids.scale_unimix`); otherwise ash's own
(``autoselect.mixsd``: :math:`\sigma_{\max}\,\mathrm{gridmult}^{-j}`). ash's defaults
apply: "nullbiased" Dirichlet prior with ``nullweight = 10`` on the point mass, mix-SQP,
the all-null shortcut, pruning at 1e-10 (:mod:`mashlib.eb.ebnm._unimix`). The
log-likelihood is :math:`\sum_i \log\sum_k \pi_k f_k(x_i)` (unpenalised, ash's ``loglik``).
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import (
    DEFAULT_OUTPUT,
    EbnmResult,
    UniMix,
    check_fix_g,
    check_mode,
    check_output,
    check_xs,
    drop_lfsr_off_zero,
    fit_mode,
    set_posterior,
)
from ._grids import scale_unimix
from ._nonparametric import _ash_grid
from ._unimix import (
    fit_mixprop,
    sample_unimix,
    unimix_loglik_matrix,
    unimix_posterior,
    unimix_prior_moments,
)

__all__ = ["ebnm_unimodal", "ebnm_unimodal_symmetric", "ebnm_unimodal_nonnegative",
           "ebnm_unimodal_nonpositive", "ebnm_ash"]

MIXCOMPDISTS = ("uniform", "halfuniform", "+uniform", "-uniform", "normal")


def _components(grid, mode, mixcompdist, nullweight, pointmass):
    """Component endpoints (a, b) and Dirichlet prior for an ash mixcompdist (map §2.3 step 5)."""
    g = np.asarray(grid, float)
    if not pointmass:
        g = g[g > 0]
    K = g.size
    prior = np.ones(K)
    if pointmass:
        prior[0] = nullweight
    if mixcompdist == "uniform":
        a, b = -g, g.copy()
    elif mixcompdist == "+uniform":
        a, b = np.zeros(K), g.copy()
    elif mixcompdist == "-uniform":
        a, b = -g, np.zeros(K)
    else:  # halfuniform: [-g, 0] for all, then [0, g] without the null
        rest = g[1:] if pointmass else g
        a = np.concatenate([-g, np.zeros(rest.size)])
        b = np.concatenate([np.zeros(K), rest])
        prior = np.concatenate([prior, np.ones(rest.size)])
    return a + mode, b + mode, prior


def _check_g(g, fname):
    if not isinstance(g, UniMix):
        raise MashInputError(f"{fname}: g_init must be a UniMix (the fitted_g of an earlier fit), "
                             f"got {type(g).__name__}")
    pi, a, b = (np.atleast_1d(np.asarray(v, float)) for v in (g.pi, g.a, g.b))
    if not (pi.size == a.size == b.size) or np.any(b < a) or np.any(pi < 0):
        raise MashInputError(f"{fname}: g_init must have equal-length pi, a, b with a <= b and pi >= 0")
    return pi / pi.sum(), a, b


def ash_workhorse(x, s, mode, scale, g_init, fix_g, output, control, fname, family, mixcompdist,
                  pointmass=True, prior="nullbiased", nullweight=10.0, gridmult=None, mixsd=None,
                  method=None):
    """Shared implementation of the ash-based families (see the module docstring)."""
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    mode_val = check_mode(mode, fname)
    if mixcompdist not in MIXCOMPDISTS:
        raise MashInputError(f"{fname}: mixcompdist={mixcompdist!r} is not one of {list(MIXCOMPDISTS)}")
    from ._core import NormalMix, PointNormal

    if mixcompdist == "normal" or isinstance(g_init, (NormalMix, PointNormal)):
        from ._nonparametric import ebnm_normal_scale_mixture

        if mixsd is not None:
            scale = mixsd
        r = ebnm_normal_scale_mixture(x, s, mode=mode, scale=scale, g_init=g_init, fix_g=fix_g, output=output,
                                      control=control, gridmult=gridmult)
        r.prior_family = family
        return r
    if method == "shrink":
        prior, pointmass = "uniform", False
    if prior not in ("nullbiased", "uniform"):
        raise MashInputError(f"{fname}: prior={prior!r} must be 'nullbiased' or 'uniform'")
    nw = nullweight if prior == "nullbiased" else 1.0
    check_fix_g(fix_g, g_init, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]

    if g_init is not None:
        pi, a, b = _check_g(g_init, fname)
        if not fix_g:
            pr = np.ones(pi.size)
            pr[(a == b)] = nw
            lL = unimix_loglik_matrix(xf, sf, a, b)
            pi = fit_mixprop(lL, pr, control)
    else:
        if xf.size == 0:
            raise MashInputError(f"{fname}: every s is infinite; pass g_init with fix_g=True")
        user_grid = mixsd if mixsd is not None else (None if isinstance(scale, str) else scale)
        if isinstance(scale, str) and scale != "estimate":
            raise MashInputError(f"{fname}: scale={scale!r} must be 'estimate' or a vector of half-widths")

        def grid(mu):
            if user_grid is not None:
                gr = np.atleast_1d(np.asarray(user_grid, float))
                return gr if gr[0] == 0 else np.concatenate([[0.0], gr])
            if gridmult is not None or mode_val is None:
                return _ash_grid(xf - mu, sf, np.sqrt(2.0) if gridmult is None else gridmult)
            return scale_unimix(x, s, mu)

        def fit_at(mu):
            a_, b_, pr = _components(grid(mu), mu, mixcompdist, nw, pointmass)
            lL_ = unimix_loglik_matrix(xf, sf, a_, b_)
            p_ = fit_mixprop(lL_, pr, control)
            with np.errstate(divide="ignore"):
                ll = float(np.sum(sc.logsumexp(lL_ + np.log(p_)[None, :], axis=1)))
            return ll, p_, a_, b_

        mu = fit_mode(fit_at, xf, mode_val)
        _, pi, a, b = fit_at(mu)
        if mixcompdist == "halfuniform" and pointmass:
            pass  # components already in ashr's order: null, [-b_k, 0], [0, b_k]

    result = EbnmResult(prior_family=family)
    lL = unimix_loglik_matrix(xf, sf, a, b)
    if "log_likelihood" in want:
        with np.errstate(divide="ignore"):
            result.log_likelihood = float(np.sum(sc.logsumexp(lL + np.log(pi)[None, :], axis=1)))
    need = want & {"posterior_mean", "posterior_sd", "posterior_second_moment", "lfsr"}
    point = a[a == b]
    centre = point[0] if point.size else (mode_val if mode_val is not None else 0.0)
    need = drop_lfsr_off_zero(need, centre, fname, stacklevel=3)
    if need:
        post = unimix_posterior(xf, sf, pi, a, b, need, lL)

        def prior_vals():
            m, m2, lf = unimix_prior_moments(pi, a, b)
            return {"mean": m, "sd": np.sqrt(max(m2 - m * m, 0.0)), "second_moment": m2, "lfsr": lf}

        set_posterior(result, post, fin, x.size, prior_vals)
    if "fitted_g" in want or "posterior_sampler" in want:
        result.fitted_g = g_init if fix_g else UniMix(pi=pi, a=a, b=b)
        result._sampler = lambda nsamp, rng: sample_unimix(x, s, pi, a, b, nsamp, rng)
    if "data" in want:
        import pandas as pd

        result.data = pd.DataFrame({"x": x, "s": s})
    return result


_DOC = """EBNM with the {title} prior family (ash {mcd} components; map §2.7).

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (``s = inf``: missing, posterior = prior).
    mode : float or "estimate"
        The mode :math:`\\mu` (``"estimate"`` uses ash's grid and a bounded search on [min x, max x]).
    scale : "estimate" or array_like
        Grid of component half-widths :math:`b_k`; ``"estimate"`` uses ebnm's KL grid.
    g_init : UniMix, optional
        Its components are used as the grid (weights are re-estimated unless ``fix_g``).
    fix_g : bool
    output : iterable of str
    optmethod : ignored (mix-SQP)
    control : dict, optional
        Passed to mix-SQP.
    **ash_args
        ``pointmass``, ``prior`` ("nullbiased"/"uniform"), ``nullweight``, ``gridmult``,
        ``mixsd``, ``method`` ("shrink" sets prior="uniform", pointmass=False){extra}.

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`~mashlib.eb.ebnm._core.UniMix`.
    """


def _make(family, mcd, title):
    def fn(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
           optmethod=None, control=None, **ash_args):
        bad = set(ash_args) - {"pointmass", "prior", "nullweight", "gridmult", "mixsd", "method"}
        if bad:
            raise MashInputError(f"ebnm_{family}: unknown arguments {sorted(bad)}")
        return ash_workhorse(x, s, mode, scale, g_init, fix_g, output, control, f"ebnm_{family}", family, mcd,
                             **ash_args)

    fn.__name__ = fn.__qualname__ = f"ebnm_{family}"
    fn.__doc__ = _DOC.format(title=title, mcd=mcd, extra="")
    return fn


ebnm_unimodal = _make("unimodal", "halfuniform", "unimodal")
ebnm_unimodal_symmetric = _make("unimodal_symmetric", "uniform", "symmetric unimodal")
ebnm_unimodal_nonnegative = _make("unimodal_nonnegative", "+uniform", "non-negative unimodal")
ebnm_unimodal_nonpositive = _make("unimodal_nonpositive", "-uniform", "non-positive unimodal")


def ebnm_ash(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT, optmethod=None,
             control=None, mixcompdist="uniform", **ash_args):
    bad = set(ash_args) - {"pointmass", "prior", "nullweight", "gridmult", "mixsd", "method"}
    if bad:
        raise MashInputError(f"ebnm_ash: unknown arguments {sorted(bad)}")
    return ash_workhorse(x, s, mode, scale, g_init, fix_g, output, control, "ebnm_ash", "ash", mixcompdist,
                         **ash_args)


ebnm_ash.__doc__ = _DOC.format(title="ash", mcd="``mixcompdist``", extra=(
    "; ``mixcompdist`` is one of uniform (default, as ashr), halfuniform, +uniform, -uniform, normal"))
