r"""ebnm's ``horseshoe`` family (Carvalho, Polson & Scott 2010), fitted by maximum marginal likelihood
(van der Pas, Szabó & van der Vaart 2017).

Prior, with homoskedastic errors :math:`x_i \sim N(\theta_i, s^2)`:

.. math::
    \theta_i \mid \lambda_i \sim N(0, \text{scale}^2\lambda_i^2), \qquad \lambda_i \sim C^+(0, 1),

where ``scale`` :math:`= s\tau` in the usual parametrisation (as ebnm's ``horseshoe`` class, it does
not depend on the errors). With :math:`u = \log\lambda` (:math:`d\lambda/(1+\lambda^2) = du/(2\cosh u)`)
the marginal density is the smooth, exponentially decaying integral

.. math::
    p(x) = \frac1\pi\int_{-\infty}^{\infty} N\big(x; 0, s^2 + \text{scale}^2 e^{2u}\big)\,
           \operatorname{sech}(u)\,du,

computed by the trapezoidal rule on a fixed grid of :math:`u` (step 0.15; the integrand is analytic
and bounded in the strip :math:`|\Im u| < \pi/4`, so the error is of order
:math:`e^{-\pi^2/(2h)} \approx 10^{-14}` relative). Given :math:`\lambda`,
:math:`\theta \mid x \sim N(\rho x, \rho s^2)` with shrinkage :math:`\rho = \text{scale}^2\lambda^2/(s^2 +
\text{scale}^2\lambda^2)`, so :math:`E[\theta\mid x] = x\,E[\rho\mid x]` and
:math:`E[\theta^2\mid x] = x^2 E[\rho^2\mid x] + s^2 E[\rho \mid x]`, with the same quadrature.

``scale = "estimate"``: :math:`\tau = \text{scale}/s` maximises :math:`\sum_i\log p(x_i)` over
:math:`[1/n, 1]` (the horseshoe package's MMLE range) by bounded Brent on :math:`\log\tau`.
As ebnm, lfsr is not returned, and heteroskedastic ``s`` is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import special as sc

from ..._errors import MashInputError
from ._core import _LOG_2PI, DEFAULT_OUTPUT, check_fix_g, check_output, check_xs
from ._mixpost import finish_result

__all__ = ["Horseshoe", "ebnm_horseshoe"]

_H = 0.15


@dataclass(frozen=True)
class Horseshoe:
    r"""Horseshoe prior :math:`\theta \sim N(0, \text{scale}^2\lambda^2)`, :math:`\lambda \sim C^+(0,1)` (ebnm ``horseshoe``)."""

    scale: float


def _nodes(scale, s):
    """Quadrature nodes u and log weights log(h sech(u) / pi) covering the integrand's mass."""
    top = 25.0 + max(0.0, -np.log(scale / s))
    bot = -40.0 + min(0.0, -np.log(scale / s))
    u = np.arange(bot, top + _H, _H)
    lw = np.log(_H / np.pi) - (np.abs(u) + np.log1p(np.exp(-2 * np.abs(u))) - np.log(2.0))
    return u, lw


def _log_terms(x, s, scale):
    """(n, J) log of the integrand terms and the shrinkage factors rho (J,)."""
    u, lw = _nodes(scale, s)
    b2 = scale * scale * np.exp(2 * u)
    V = s * s + b2
    lt = lw[None, :] - 0.5 * (_LOG_2PI + np.log(V)[None, :] + x[:, None] ** 2 / V[None, :])
    return lt, b2 / V, u


def horseshoe_loglik(x, s, scale):
    r""":math:`\sum_i \log p(x_i)` for homoskedastic ``s`` (scalar)."""
    lt, _, _ = _log_terms(x, s, scale)
    return float(np.sum(sc.logsumexp(lt, axis=1)))


def _posterior(x, s, scale, want):
    lt, rho, _ = _log_terms(x, s, scale)
    W = np.exp(lt - sc.logsumexp(lt, axis=1, keepdims=True))
    er = W @ rho
    er2 = W @ (rho * rho)
    mean = x * er
    second = np.maximum(x * x * er2 + s * s * er, mean * mean)
    out = {}
    if "posterior_mean" in want:
        out["mean"] = mean
    if "posterior_sd" in want:
        out["sd"] = np.sqrt(np.maximum(second - mean * mean, 0.0))
    if "posterior_second_moment" in want:
        out["second_moment"] = second
    return out


def _sample(x, s, scale, nsamp, rng):
    """Exact-in-distribution draws (up to the quadrature grid): u | x by cell, then theta | u, x."""
    fin = np.isfinite(s)
    n = x.size
    s0 = float(s[fin][0]) if fin.any() else 1.0
    lt, _, u = _log_terms(np.where(fin, x, 0.0), s0, scale)
    u_, lw = _nodes(scale, s0)
    lt[~fin] = lw[None, :]
    W = np.exp(lt - sc.logsumexp(lt, axis=1, keepdims=True))
    k = np.minimum((rng.random((nsamp, n, 1)) > np.cumsum(W, axis=1)[None]).sum(axis=2), u.size - 1)
    uu = u[k] + _H * (rng.random((nsamp, n)) - 0.5)
    b2 = scale * scale * np.exp(2 * uu)
    z = rng.standard_normal((nsamp, n))
    rho = b2 / (s0 * s0 + b2)
    post = rho * x[None, :] + np.sqrt(rho) * s0 * z
    return np.where(fin[None, :], post, np.sqrt(b2) * z)


def ebnm_horseshoe(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                   optmethod=None, control=None):
    r"""EBNM with the horseshoe prior family (homoskedastic errors only).

    Parameters
    ----------
    x : array_like
    s : float or array_like
        One common standard error (a vector must be constant).
    mode : 0
        The horseshoe is centred at 0.
    scale : "estimate" or float
        :math:`s\tau`; ``"estimate"`` maximises the marginal likelihood over :math:`\tau \in [1/n, 1]`.
    g_init : Horseshoe, optional
    fix_g : bool
    output : iterable of str
        ``lfsr`` is not computed for this family (as ebnm) and is dropped.
    optmethod : ignored
    control : dict, optional
        ``xatol`` for the Brent search on :math:`\log\tau` (default 1e-10).

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`Horseshoe`.
    """
    fname = "ebnm_horseshoe"
    want = check_output(output) - {"lfsr"}
    x, s = check_xs(x, s, fname)
    if np.any(s != s[0]):
        raise MashInputError(f"{fname}: The horseshoe prior family requires homoskedastic standard errors "
                             "(all s equal); use another family, e.g. point_laplace")
    if not np.isfinite(s[0]):
        raise MashInputError(f"{fname}: s must be finite")
    if not (isinstance(mode, (int, float)) and mode == 0):
        raise MashInputError(f"{fname}: mode={mode!r}: the horseshoe family is centred at 0")
    s0 = float(s[0])
    check_fix_g(fix_g, g_init, fname)
    if g_init is not None and not isinstance(g_init, Horseshoe):
        raise MashInputError(f"{fname}: g_init must be a Horseshoe, got {type(g_init).__name__}")
    if fix_g:
        sc_ = float(g_init.scale)
    elif not isinstance(scale, str):
        sc_ = float(scale)
        if not (np.isfinite(sc_) and sc_ > 0):
            raise MashInputError(f"{fname}: scale={scale!r} must be a positive number or 'estimate'")
    else:
        if scale != "estimate":
            raise MashInputError(f"{fname}: scale={scale!r} must be a positive number or 'estimate'")
        n = x.size
        xatol = float((control or {}).get("xatol", 1e-10))
        res = optimize.minimize_scalar(lambda lt: -horseshoe_loglik(x, s0, s0 * np.exp(lt)),
                                       bounds=(np.log(1.0 / n), 0.0), method="bounded", options={"xatol": xatol})
        sc_ = float(s0 * np.exp(res.x))
    g = Horseshoe(scale=sc_)
    fin = np.ones(x.size, bool)
    return finish_result("horseshoe", want, x, s, fin, lambda need: _posterior(x, s0, sc_, need), dict, g,
                         lambda nsamp, rng: _sample(x, s, sc_, nsamp, rng), horseshoe_loglik(x, s0, sc_), fname)
