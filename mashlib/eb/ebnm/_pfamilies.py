r"""Per-family mathematics of the parametric ebnm priors (map §2.7).

Every family is parametrised by :math:`\theta = (\alpha, \ell, \mu)` with
:math:`\alpha = \operatorname{logit}\pi_0` (weight of the point mass at the mode
:math:`\mu`), :math:`\ell = \log b` the log of the slab scale :math:`b`
(sd for the normal slab, :math:`1/\text{rate}` for the Laplace and exponential
slabs). The boundaries :math:`\pi_0 \in \{0, 1\}` are :math:`\alpha = \mp\infty`
and are evaluated exactly (``log_expit`` gives :math:`-\infty` weights).

For observation :math:`i` with :math:`y_i = x_i - \mu` the marginal log-likelihood is

.. math::

    \ell_i = \log\big[\pi_0 N(y_i; 0, s_i^2) + (1-\pi_0)\,f(y_i)\big],

with slab convolution :math:`f`:

* normal: :math:`f = N(y; 0, s^2 + b^2)`;
* exponential (rate :math:`a = 1/b`):
  :math:`\log f = \log a + s^2a^2/2 - a y + \log\Phi(y/s - s a)`;
* Laplace: :math:`\log f = \log(a/2) + s^2a^2/2 + \mathrm{LSE}\big(a y + \log\Phi(-y/s - s a),\;
  -a y + \log\Phi(y/s - s a)\big)`.

``log Φ`` is :func:`scipy.special.log_ndtr` and the Mills ratios :math:`\phi/\Phi`
use one erfcx per point (:func:`_GM`), so nothing under/overflows in the tails.
Each ``loglik`` returns the per-observation :math:`\ell_i`, their analytic
derivatives with respect to :math:`(\alpha, \ell, \mu)` and the null
responsibility :math:`r_i = P(\theta_i = \mu \mid x_i)`, which the posterior reuses.

The point-normal and normal families live here; the point-exponential and
point-Laplace families in :mod:`mashlib.eb.ebnm._pfamilies_onesided` and the shared
helpers in :mod:`mashlib.eb.ebnm._pfamilies_base` (all re-exported here).
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import _LOG_2PI, NormalMix, PointNormal, logit
from ._pfamilies_base import (  # noqa: F401 - _GM, _null_terms, _sample_trunc_pos re-exported
    _GM,
    _GM_LAST,
    _mix,
    _null_terms,
    _sample_trunc_pos,
)
from ._pfamilies_onesided import (  # noqa: F401 - re-exported
    PointExponentialFamily,
    PointLaplaceFamily,
    _onesided_summaries,
)


# ============================================================================ point normal
class PointNormalFamily:
    """g = pi0 delta_mu + (1 - pi0) N(mu, b^2)."""

    name = "point_normal"
    pointmass = True
    lfsr_defined = True

    @staticmethod
    def init(x, s, mode_free):
        # ebnm: beta = log(mean(x^2)) for sigma^2, i.e. l = log(sigma) = beta / 2
        with np.errstate(divide="ignore"):
            lb = 0.5 * np.log(np.mean(x * x))
        mu = float(np.mean(x)) if mode_free else 0.0
        return np.array([0.0, lb if np.isfinite(lb) else 0.0, mu])

    @staticmethod
    def loglik(theta, x, s, grad=True):
        r"""Per-observation :math:`\ell_i`, derivatives and null responsibilities.

        Computed from :math:`y^2` with :math:`t = \log N_0 - \log f =
        \tfrac12\log(v_1/v_0) - \tfrac12 y^2 (1/v_0 - 1/v_1)` (see :func:`_mix`);
        with a scalar ``s`` every variance term is a scalar.
        """
        alpha, lb, mu = theta
        b2 = np.exp(2.0 * lb)
        y = x if mu == 0 else x - mu
        y2 = y * y
        v0 = s * s
        v1 = v0 + b2
        iv0 = 1.0 / v0
        iv1 = 1.0 / v1
        lg = -0.5 * (_LOG_2PI + np.log(v1)) - (0.5 * iv1) * y2
        pi0 = sc.expit(alpha)
        pi1 = sc.expit(-alpha)
        t = 0.5 * np.log(v1 * iv0) + (0.5 * (iv1 - iv0)) * y2
        if pi1 > 0 and t.max() < 700.0:
            w = pi0 * np.exp(t)
            den = pi1 + w
            ell = lg + np.log(den)
            r = w / den
        else:
            ell, r, pi0 = _mix(alpha, -0.5 * (_LOG_2PI + np.log(v0)) - (0.5 * iv0) * y2, lg)
        if not grad:
            return ell, None, r
        q = 1.0 - r
        d = np.empty((3, x.size))
        d[0] = r - pi0
        d[1] = q * ((b2 * iv1 * iv1) * y2 - b2 * iv1)
        d[2] = y * (iv1 + r * (iv0 - iv1))
        return ell, d, r

    @staticmethod
    def hessian(theta, x, s, r):
        r"""Analytic Hessian of :math:`\sum_i\ell_i` in :math:`(\alpha, \ell, \mu)`.

        With null / slab components :math:`c_0 = \log\pi_0 + \log N(y; 0, v_0)`,
        :math:`c_1 = \log\pi_1 + \log N(y; 0, v_1)` (:math:`v_1 = s^2 + b^2`), their
        gradients :math:`u_0, u_1` and Hessians :math:`H_0, H_1`, and the null
        responsibility :math:`r` (``q = 1 - r``),

        .. math::

            \nabla^2\ell_i = r H_0 + q H_1 + r q\,\delta\delta^\top,\qquad \delta = u_0 - u_1
            = \big(1,\; -a,\; y/v_0 - y/v_1\big),

        where :math:`a = b^2(y^2/v_1^2 - 1/v_1)`, :math:`H_0 = \mathrm{diag}(-\pi_0\pi_1, 0, -1/v_0)`
        and :math:`H_1` has :math:`-\pi_0\pi_1`, :math:`2a + 2b^4(1/v_1^2 - 2y^2/v_1^3)`,
        :math:`-1/v_1` on the diagonal and :math:`-2b^2y/v_1^2` in the
        :math:`(\ell, \mu)` cell. ``r`` is the one :meth:`loglik` returned.
        """
        alpha, lb, mu = theta
        b2 = np.exp(2.0 * lb)
        y = x if mu == 0 else x - mu
        y2 = y * y
        v0 = s * s
        iv0 = 1.0 / v0
        iv1 = 1.0 / (v0 + b2)
        b2iv1 = b2 * iv1
        a = (b2iv1 * iv1) * y2 - b2iv1
        dm = y * (iv0 - iv1)
        q = 1.0 - r
        rq = r * q
        pi0 = sc.expit(alpha)
        rqa = rq * a
        rqdm = rq * dm
        # 2a + 2 b^4 (1/v1^2 - 2 y^2/v1^3) = K1 y^2 + K0
        K1 = 2.0 * b2iv1 * iv1 - 4.0 * b2iv1 * b2iv1 * iv1
        K0 = 2.0 * b2iv1 * b2iv1 - 2.0 * b2iv1
        H = np.empty((3, 3))
        H[0, 0] = rq.sum() - x.size * pi0 * (1.0 - pi0)
        H[0, 1] = H[1, 0] = -rqa.sum()
        H[0, 2] = H[2, 0] = rqdm.sum()
        H[1, 1] = np.sum(q * (K1 * y2 + K0) + rqa * a)
        H[1, 2] = H[2, 1] = np.sum((-2.0 * b2iv1 * iv1) * (q * y) - rqa * dm)
        H[2, 2] = np.sum(rqdm * dm - (iv1 + r * (iv0 - iv1)))
        return H

    @staticmethod
    def posterior(theta, x, s, r, want):
        r"""Posterior summaries (map §2.7 ``pn_summres_untransformed``).

        Given non-null, :math:`\theta \mid x \sim N(m, v)` with
        :math:`m = \mu + y b^2/(b^2+s^2)`, :math:`v = s^2b^2/(s^2+b^2)`; with
        :math:`w = 1 - r`: mean :math:`= \mu + w(m-\mu)`,
        :math:`E\theta^2 = w(m^2+v) + (1-w)\mu^2`,
        lfsr :math:`= (1-w) + w\Phi(-|m|/\sqrt v)`.
        """
        _, lb, mu = theta
        b2 = np.exp(2.0 * lb)
        v0 = s * s
        w = 1.0 - r
        m = mu + (x - mu) * (b2 / (b2 + v0))
        v = v0 * b2 / (v0 + b2)
        return _pn_summaries(w, m, v, mu, want)

    @staticmethod
    def prior_summaries(theta, want, n):
        alpha, lb, mu = theta
        w = np.full(n, sc.expit(-alpha))
        return _pn_summaries(w, np.full(n, mu), np.full(n, np.exp(2.0 * lb)), mu, want)

    @staticmethod
    def sampler_params(theta, x, s, r):
        _, lb, mu = theta
        b2 = np.exp(2.0 * lb)
        v0 = s * s
        with np.errstate(invalid="ignore"):
            m = np.where(np.isinf(s), mu, mu + (x - mu) * (b2 / (b2 + v0)))
            v = np.where(np.isinf(s), b2, v0 * b2 / (v0 + b2))
        return 1.0 - r, m, v, mu

    @staticmethod
    def sample(params, nsamp, rng):
        w, m, v, mu = params
        n = w.size
        nonnull = rng.random((nsamp, n)) < w
        draw = m + np.sqrt(v) * rng.standard_normal((nsamp, n))
        return np.where(nonnull, draw, mu)

    @staticmethod
    def g_from_theta(theta):
        alpha, lb, mu = theta
        return PointNormal(pi0=float(sc.expit(alpha)), mean=float(mu), sd=float(np.exp(lb)))

    @staticmethod
    def theta_from_g(g, fname):
        if isinstance(g, PointNormal):
            return np.array([logit(g.pi0), np.log(g.sd) if g.sd > 0 else -np.inf, g.mean])
        if isinstance(g, NormalMix):
            pi, sd, mean = (np.atleast_1d(np.asarray(v, float)) for v in (g.pi, g.sd, g.mean))
            if pi.size == 1:
                return np.array([-np.inf, np.log(sd[0]), mean[0]])
            if pi.size == 2 and sd[0] == 0 and mean[0] == mean[1]:
                return np.array([logit(pi[0]), np.log(sd[1]), mean[0]])
        raise MashInputError(f"{fname}: g_init must be a PointNormal (or a NormalMix with sd (0, sigma) or one "
                             f"component), got {type(g).__name__}; pass the fitted_g of a point_normal fit")


def _pn_summaries(w, m, v, mu, want):
    out = {}
    mean = mu + w * (m - mu)
    if "posterior_mean" in want:
        out["mean"] = mean
    if want & {"posterior_sd", "posterior_second_moment"}:
        mean2 = np.maximum(w * (m * m + v) + (1.0 - w) * mu * mu, mean * mean)
        if "posterior_sd" in want:
            out["sd"] = np.sqrt(np.maximum(mean2 - mean * mean, 0.0))
        if "posterior_second_moment" in want:
            out["second_moment"] = mean2
    if "lfsr" in want:
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = sc.ndtr(-np.abs(m) / np.sqrt(v))
        tail = np.where(np.isnan(tail), 1.0, tail)
        out["lfsr"] = (1.0 - w) + w * tail
    return out


class NormalFamily(PointNormalFamily):
    """g = N(mu, b^2): the point-normal code with pi0 = 0 fixed."""

    name = "normal"
    pointmass = False

    @staticmethod
    def init(x, s, mode_free):
        th = PointNormalFamily.init(x, s, mode_free)
        th[0] = -np.inf
        return th

    @staticmethod
    def g_from_theta(theta):
        _, lb, mu = theta
        return NormalMix(pi=np.array([1.0]), mean=np.array([float(mu)]), sd=np.array([float(np.exp(lb))]))

    @staticmethod
    def theta_from_g(g, fname):
        th = PointNormalFamily.theta_from_g(g, fname)
        if th[0] != -np.inf:
            raise MashInputError(f"{fname}: g_init has a point mass (pi0 = {sc.expit(th[0]):.3g}) but the normal "
                                 "family has none; pass a NormalMix with one component")
        return th
