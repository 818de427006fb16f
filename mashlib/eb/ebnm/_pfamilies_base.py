r"""Shared numerics of the parametric ebnm families (:mod:`mashlib.eb.ebnm._pfamilies`).

Mills ratios and :math:`\log\Phi` without under/overflow (:func:`_GM`), the null
term, the null/slab mixing of log densities (:func:`_mix`), truncated-normal
sampling and the one-sided families' starting point.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ._core import _LOG_2PI


def _GM(z):
    r"""Return :math:`G(z) = \log\Phi(z) + z^2/2` and :math:`M(z) = \phi(z)/\Phi(z)` for all z.

    Both come from one :math:`e = \mathrm{erfcx}(-z/\sqrt2)`: :math:`G = \log(e/2)` and
    :math:`M = \sqrt{2/\pi}/e`. This avoids the cancellation of :math:`s^2a^2/2`
    against :math:`\log\Phi(y/s - sa)` when the rate :math:`a` is large. For
    :math:`z > 37` erfcx overflows; there :math:`\log\Phi(z) = 0` to double precision,
    so :math:`G = z^2/2` and :math:`M = 0`.
    """
    with np.errstate(over="ignore"):
        e = sc.erfcx(-z * _INV_SQRT2)
    G = np.log(0.5 * e)
    big = ~np.isfinite(G)
    if big.any():
        G = np.where(big, 0.5 * z * z, G)
    return G, _SQRT_2_OVER_PI / e


_INV_SQRT2 = 1.0 / np.sqrt(2.0)
# (x, s, a, mu, z, M(z)) of the latest point-exponential loglik, reused by its hessian
# (x and s are held, so an identity match cannot be a recycled id)
_GM_LAST: list = []
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def _null_terms(y, s):
    v0 = s * s
    return -0.5 * (_LOG_2PI + np.log(v0) + y * y / v0), v0


def _mix(alpha, lN0, lg):
    r"""Combine null and slab log densities; return (ell, r, pi0).

    With :math:`t = \log N_0 - \log f` and :math:`w = \pi_0 e^{t}`:
    :math:`\ell = \log f + \log(\pi_1 + w)`, :math:`r = w/(\pi_1 + w)` (plain exp/log,
    several times faster than ``logaddexp``). The two-sided ``logaddexp`` form is
    the fallback when :math:`\pi_1 = 0` or :math:`e^t` could overflow.
    """
    pi0 = sc.expit(alpha)
    pi1 = sc.expit(-alpha)
    if pi1 > 0:
        t = lN0 - lg
        if t.max() < 700.0:
            w = pi0 * np.exp(t)
            den = pi1 + w
            return lg + np.log(den), w / den, pi0
    A = sc.log_expit(alpha) + lN0
    B = sc.log_expit(-alpha) + lg
    ell = np.logaddexp(A, B)
    with np.errstate(invalid="ignore"):
        r = np.exp(A - ell)
    r = np.where(np.isnan(r), 1.0 if alpha > 0 else 0.0, r)
    return ell, r, pi0


def _sample_trunc_pos(m, s, rng, size):
    r"""Draw from :math:`N(m, s^2)` truncated to :math:`[0,\infty)` by inversion in log space."""
    a0 = -m / s  # standardized lower bound
    u = rng.random(size)
    with np.errstate(divide="ignore"):
        logp = np.log(u) + sc.log_ndtr(-a0)
    z = -sc.ndtri_exp(logp)
    return np.maximum(m + s * z, 0.0)



def _onesided_init(x, mode_stat, mode_free):
    r"""Starting :math:`(\alpha, \ell, \mu)` of the exponential and Laplace families.

    As ebnm: :math:`\log(\text{rate}) = -\log(\overline{x^2}/2)/2`, i.e.
    :math:`\ell = \log b = \log(\overline{x^2}/2)/2` (0 when not finite),
    :math:`\alpha = 0` and :math:`\mu` = ``mode_stat(x)`` when the mode is free, else 0.
    """
    with np.errstate(divide="ignore"):
        lb = 0.5 * np.log(np.mean(x * x) / 2.0)
    mu = float(mode_stat(x)) if mode_free else 0.0
    return np.array([0.0, lb if np.isfinite(lb) else 0.0, mu])
