r"""ebnm's ``npmle`` family (the family of all distributions) and its grid, ``ebnm_scale_npmle``.

The nonparametric MLE (Kiefer & Wolfowitz 1956; Koenker & Mizera 2014) is approximated by a
mixture of point masses on an evenly spaced grid :math:`\mu_1 = \min x, \mu_k = \mu_1 + (k-1)d, \dots,
\mu_K \le \max x`:

.. math::
    \hat\pi = \arg\max_{\pi \in \Delta_K} \sum_i \log \sum_k \pi_k N(x_i; \mu_k, s_i^2 + \sigma^2),

solved by mix-SQP (:func:`mashlib.mixsqp.mixsqp`, no penalty). :math:`\sigma = 0` (point
masses) unless the data range is too wide for ``max_K`` points spaced about :math:`3\min s`
apart, when :math:`\sigma = d/2` (a mixture of normals; ebnm's "Gaussian grid").

Grid spacing (``ebnm_scale_npmle``): replacing a prior point mass between two neighbouring grid
points :math:`0` and :math:`d` by the best mixture of the two costs, in Kullback-Leibler
divergence of the marginal :math:`N(\cdot, s^2)`, at most :math:`\approx (d/s)^4/64`
(the leading term of :math:`\max_\delta\min_\pi \mathrm{KL}(N(\delta,1)\,\|\,\pi N(0,1) +
(1-\pi)N(d,1))`, Willwerscheid 2021). The spacing is set so that this bound equals
``KLdiv_target`` (default :math:`1/n`) at the smallest standard error,
:math:`d^\ast = s_{\min}(64\kappa)^{1/4}`, then :math:`K = \lceil (\max x - \min x)/d^\ast\rceil + 1`
points (clamped to ``[min_K, max_K]``) are spread evenly: :math:`d = (\max x - \min x)/(K - 1)`.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import DEFAULT_OUTPUT, NormalMix, check_fix_g, check_output, check_xs
from ._mixpost import (
    finish_result,
    gmix_loglik_matrix,
    gmix_posterior,
    gmix_prior_values,
    gmix_sample,
)

__all__ = ["ebnm_npmle", "ebnm_scale_npmle", "npmle_grid"]


def ebnm_scale_npmle(x, s, min_K=3, max_K=300, KLdiv_target=None, pointmass=True):
    r"""Default grid spacing :math:`d` for :func:`ebnm_npmle` and :func:`ebnm_deconvolver`.

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (finite, positive ``s`` only are used).
    min_K, max_K : int
        Bounds on the number of grid points.
    KLdiv_target : float, optional
        Bound :math:`\kappa` on the KL divergence per observation (default ``1/len(x)``).
    pointmass : bool
        True: point-mass grid, :math:`d^\ast = s_{\min}(64\kappa)^{1/4}`; False (normal components
        of sd :math:`d/2`, used for very wide data): ``max_K`` points.

    Returns
    -------
    float
        The spacing :math:`d = (\max x - \min x)/(K - 1)` (see the module docstring).
    """
    x = np.asarray(x, float).ravel()
    s = np.broadcast_to(np.asarray(s, float), x.shape)
    if KLdiv_target is None:
        KLdiv_target = 1.0 / x.size
    ok = np.isfinite(s) & (s > 0)
    if not ok.any():
        raise MashInputError("ebnm_scale_npmle: no finite positive standard error; pass s")
    rng = float(np.max(x[ok]) - np.min(x[ok]))
    if rng == 0:
        return 1.0
    if pointmass:
        d = np.min(s[ok]) * (64.0 * KLdiv_target) ** 0.25
        K = int(np.ceil(rng / d)) + 1
    else:
        K = max_K
    K = int(min(max(K, min_K), max_K))
    return rng / (K - 1)


def npmle_grid(x, s, scale="estimate", min_K=3, max_K=300, KLdiv_target=None, force_pointmass=False):
    """The grid of an npmle / deconvolver prior: (means, sd) with sd 0 (point masses) or d/2."""
    ok = np.isfinite(s)
    xo, so = x[ok], s[ok]
    sd = 0.0
    if isinstance(scale, str):
        if scale != "estimate":
            raise MashInputError(f"ebnm_npmle: scale={scale!r} must be 'estimate' or the grid spacing")
        rng = float(xo.max() - xo.min())
        if force_pointmass or rng / max_K < 3.0 * float(np.min(so)):
            d = ebnm_scale_npmle(xo, so, min_K, max_K, KLdiv_target, pointmass=True)
        else:
            d = ebnm_scale_npmle(xo, so, min_K, max_K, KLdiv_target, pointmass=False)
            sd = d / 2.0
    else:
        d = float(np.asarray(scale, float).ravel()[0])
        if not (np.isfinite(d) and d > 0):
            raise MashInputError(f"ebnm_npmle: scale={scale!r} must be a positive grid spacing")
    lo, hi = float(xo.min()), float(xo.max())
    K = int(np.floor((hi - lo) / d * (1 + 1e-12))) + 1
    means = lo + d * np.arange(K)
    return means, np.full(K, sd)


def _fit_pi(lL, pi0=None, control=None):
    from .._mixsqp import mixsqp

    L = np.exp(lL - lL.max(axis=1, keepdims=True))
    K = L.shape[1]
    if K == 1:
        return np.ones(1)
    ctrl = {"verbose": False}
    if control:
        ctrl.update(control)
    keep = L.max(axis=0) > 0  # grid points no observation can reach get weight 0
    x0 = np.ones(K) if pi0 is None else np.asarray(pi0, float)
    res = mixsqp(L[:, keep], x0=x0[keep], control=ctrl)
    pi = np.zeros(K)
    pi[keep] = np.maximum(res.x, 0.0)
    return pi / pi.sum()


def check_normalmix_g(g, fname):
    """(pi, mean, sd) of a NormalMix ``g_init`` (normalised pi)."""
    if not isinstance(g, NormalMix):
        raise MashInputError(f"{fname}: g_init must be a NormalMix (the fitted_g of an earlier fit), "
                             f"got {type(g).__name__}")
    pi, mean, sd = (np.atleast_1d(np.asarray(v, float)) for v in (g.pi, g.mean, g.sd))
    if not (pi.size == mean.size == sd.size) or np.any(pi < 0) or np.any(sd < 0):
        raise MashInputError(f"{fname}: g_init must have equal-length pi, mean, sd with pi >= 0, sd >= 0")
    return pi / pi.sum(), mean, sd


def fit_gmix(family, fname, x, s, want, g, fitted_g=None):
    """Posterior pieces of a fitted general normal mixture ``g`` -> EbnmResult."""
    pi, mean, sd = check_normalmix_g(g, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]
    keep = pi > 0
    lL = gmix_loglik_matrix(xf, sf, mean[keep], sd[keep])
    ll = float(np.sum(sc.logsumexp(lL + np.log(pi[keep])[None, :], axis=1)))
    return finish_result(
        family, want, x, s, fin,
        lambda need: gmix_posterior(xf, sf, pi[keep], mean[keep], sd[keep], need, lL),
        lambda: gmix_prior_values(pi[keep], mean[keep], sd[keep], want),
        g if fitted_g is None else fitted_g,
        lambda nsamp, rng: gmix_sample(x, s, pi[keep], mean[keep], sd[keep], nsamp, rng), ll, fname)


def ebnm_npmle(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT, optmethod=None,
               control=None):
    r"""EBNM with the family of all distributions (nonparametric MLE on a grid of point masses).

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors (``s = inf``: missing, posterior = prior).
    mode : ignored
        (The NPMLE has no mode; accepted for a common signature.)
    scale : "estimate" or float
        Grid spacing :math:`d`; ``"estimate"`` uses :func:`ebnm_scale_npmle`.
    g_init : NormalMix, optional
        Its components are the grid and its weights start mix-SQP; with ``fix_g=True`` it is used as is.
    fix_g : bool
    output : iterable of str
    optmethod : ignored
    control : dict, optional
        Passed to mix-SQP.

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`~mashlib.eb.ebnm.NormalMix` (sd 0: point masses).
    """
    fname = "ebnm_npmle"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    check_fix_g(fix_g, g_init, fname)
    if fix_g:
        return fit_gmix("npmle", fname, x, s, want, g_init)
    fin = np.isfinite(s)
    if not fin.any():
        raise MashInputError(f"{fname}: every s is infinite; pass g_init with fix_g=True")
    if g_init is not None:
        pi0, mean, sd = check_normalmix_g(g_init, fname)
    else:
        mean, sd = npmle_grid(x, s, scale)
        pi0 = None
    lL = gmix_loglik_matrix(x[fin], s[fin], mean, sd)
    pi = _fit_pi(lL, pi0, control)
    return fit_gmix("npmle", fname, x, s, want, NormalMix(pi=pi, mean=mean, sd=sd))
