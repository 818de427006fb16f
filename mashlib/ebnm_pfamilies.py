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
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ._errors import MashInputError
from .ebnm_core import (
    _LOG_2PI,
    NormalMix,
    PointExponential,
    PointLaplace,
    PointNormal,
    logit,
    trunc_pos_moments,
)


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


# ============================================================================ point exponential
class PointExponentialFamily:
    """g = pi0 delta_mu + (1 - pi0) (mu + Exp(rate 1/b))."""

    name = "point_exponential"
    pointmass = True
    lfsr_defined = True

    @staticmethod
    def init(x, s, mode_free):
        # ebnm: log(rate) = -log(mean(x^2)/2)/2, i.e. log b = log(mean(x^2)/2)/2
        with np.errstate(divide="ignore"):
            lb = 0.5 * np.log(np.mean(x * x) / 2.0)
        mu = float(np.min(x)) if mode_free else 0.0
        return np.array([0.0, lb if np.isfinite(lb) else 0.0, mu])

    @staticmethod
    def loglik(theta, x, s, grad=True):
        r"""Per-observation :math:`\ell_i`, derivatives and null responsibilities.

        The slab is :math:`\log f = \log a - y^2/(2s^2) + G(z)`, so the null-minus-slab
        log ratio :math:`t = -\tfrac12\log(2\pi s^2) - \log a - G(z)` needs no
        :math:`y^2` (see :func:`_mix`). The last :math:`M(z)` is kept for :meth:`hessian`.
        """
        alpha, lb, mu = theta
        a = np.exp(-lb)
        y = x if mu == 0 else x - mu
        v0 = s * s
        z = y / s - s * a
        # log a + s^2 a^2/2 - a y + log Phi(z)  ==  log a - y^2/(2 s^2) + G(z)
        G, Mz = _GM(z)
        _GM_LAST[:] = [x, s, a, mu, z, Mz]
        c0 = -0.5 * (_LOG_2PI + np.log(v0))
        lg = (np.log(a) + G) - (0.5 / v0) * (y * y)
        pi0 = sc.expit(alpha)
        pi1 = sc.expit(-alpha)
        t = (c0 - np.log(a)) - G
        if pi1 > 0 and t.max() < 700.0:
            w = pi0 * np.exp(t)
            den = pi1 + w
            ell = lg + np.log(den)
            r = w / den
        else:
            ell, r, pi0 = _mix(alpha, lg + t, lg)
        if not grad:
            return ell, None, r
        q = 1.0 - r
        d = np.empty((3, x.size))
        d[0] = r - pi0
        d[1] = -q * (1.0 + v0 * a * a - a * y - s * a * Mz)
        d[2] = r * y / v0 + q * (a - Mz / s)
        return ell, d, r

    @staticmethod
    def hessian(theta, x, s, r):
        r"""Analytic Hessian of :math:`\sum_i\ell_i` in :math:`(\alpha, \ell, \mu)`.

        As for the point-normal family, :math:`\nabla^2\ell_i = rH_0 + qH_1 + rq\,\delta\delta^\top`.
        With :math:`z = y/s - sa`, :math:`G'(z) = z + M(z)` and
        :math:`G''(z) = 1 - M(z)(z + M(z))`, the slab log density
        :math:`\log a - y^2/(2s^2) + G(z)` has :math:`H_1` entries
        :math:`G''s^2a^2 - G'sa` (:math:`\ell\ell`), :math:`-G''a` (:math:`\ell\mu`),
        :math:`(G''-1)/s^2` (:math:`\mu\mu`) and :math:`-\pi_0\pi_1` (:math:`\alpha\alpha`);
        :math:`H_0 = \mathrm{diag}(-\pi_0\pi_1, 0, -1/s^2)` and
        :math:`\delta = (1,\; 1 - G'sa,\; G'/s)`.
        """
        alpha, lb, mu = theta
        a = np.exp(-lb)
        y = x if mu == 0 else x - mu
        v0 = s * s
        lx, ls, la, lmu, z, Mz = _GM_LAST if len(_GM_LAST) == 6 else (None,) * 6
        if not (lx is x and ls is s and la == a and lmu == mu):  # not the last loglik point
            z = y / s - s * a
            _, Mz = _GM(z)
        G1 = z + Mz
        G2 = 1.0 - Mz * G1
        sa = s * a
        q = 1.0 - r
        rq = r * q
        dl = 1.0 - G1 * sa
        dm = G1 / s
        pi0 = sc.expit(alpha)
        rqdl = rq * dl
        rqdm = rq * dm
        H = np.empty((3, 3))
        H[0, 0] = rq.sum() - x.size * pi0 * (1.0 - pi0)
        H[0, 1] = H[1, 0] = rqdl.sum()
        H[0, 2] = H[2, 0] = rqdm.sum()
        H[1, 1] = np.sum(q * (G2 * sa * sa - G1 * sa) + rqdl * dl)
        H[1, 2] = H[2, 1] = np.sum(-q * G2 * a + rqdl * dm)
        H[2, 2] = np.sum((q * (G2 - 1.0) - r) / v0 + rqdm * dm)
        return H

    @staticmethod
    def posterior(theta, x, s, r, want):
        r"""Posterior summaries.

        Given non-null, :math:`\theta - \mu \mid x \sim N(y - s^2a, s^2)` truncated to
        :math:`[0,\infty)` with moments :math:`E, E_2`
        (:func:`~mashlib.ebnm_core.trunc_pos_moments`); with :math:`w = 1-r`:
        mean :math:`= \mu + wE`, :math:`E\theta^2 = \mu^2 + w(2\mu E + E_2)`,
        lfsr :math:`= 1 - w`.
        """
        _, lb, mu = theta
        a = np.exp(-lb)
        w = 1.0 - r
        E, E2 = trunc_pos_moments(x - mu - s * s * a, s)
        return _onesided_summaries(w, E, E2, mu, want, lfsr=r)

    @staticmethod
    def prior_summaries(theta, want, n):
        alpha, lb, mu = theta
        b = np.exp(lb)
        w = np.full(n, sc.expit(-alpha))
        return _onesided_summaries(w, np.full(n, b), np.full(n, 2 * b * b), mu, want, lfsr=1.0 - w)

    @staticmethod
    def sampler_params(theta, x, s, r):
        _, lb, mu = theta
        return 1.0 - r, x - mu - s * s * np.exp(-lb), s, mu, np.exp(lb)

    @staticmethod
    def sample(params, nsamp, rng):
        w, m, s, mu, b = params
        n = w.size
        nonnull = rng.random((nsamp, n)) < w
        fin = np.isfinite(s)
        draw = np.empty((nsamp, n))
        if fin.any():
            draw[:, fin] = _sample_trunc_pos(m[fin], s[fin], rng, (nsamp, int(fin.sum())))
        if (~fin).any():
            draw[:, ~fin] = rng.exponential(b, (nsamp, int((~fin).sum())))
        return mu + np.where(nonnull, draw, 0.0)

    @staticmethod
    def g_from_theta(theta):
        alpha, lb, mu = theta
        return PointExponential(pi0=float(sc.expit(alpha)), mode=float(mu), scale=float(np.exp(lb)))

    @staticmethod
    def theta_from_g(g, fname):
        if isinstance(g, PointExponential):
            return np.array([logit(g.pi0), np.log(g.scale), g.mode])
        raise MashInputError(f"{fname}: g_init must be a PointExponential, got {type(g).__name__}; "
                             "pass the fitted_g of a point_exponential fit")


def _onesided_summaries(w, E, E2, mu, want, lfsr):
    out = {}
    mean = mu + w * E
    if "posterior_mean" in want:
        out["mean"] = mean
    if want & {"posterior_sd", "posterior_second_moment"}:
        mean2 = np.maximum(mu * mu + w * (2.0 * mu * E + E2), mean * mean)
        if "posterior_sd" in want:
            out["sd"] = np.sqrt(np.maximum(mean2 - mean * mean, 0.0))
        if "posterior_second_moment" in want:
            out["second_moment"] = mean2
    if "lfsr" in want:
        out["lfsr"] = np.asarray(lfsr, dtype=float)
    return out


# ============================================================================ point Laplace
class PointLaplaceFamily:
    """g = pi0 delta_mu + (1 - pi0) Laplace(mu, b)."""

    name = "point_laplace"
    pointmass = True
    lfsr_defined = True

    @staticmethod
    def init(x, s, mode_free):
        with np.errstate(divide="ignore"):
            lb = 0.5 * np.log(np.mean(x * x) / 2.0)
        mu = float(np.mean(x)) if mode_free else 0.0
        return np.array([0.0, lb if np.isfinite(lb) else 0.0, mu])

    @staticmethod
    def _terms(a, y, s):
        z2 = y / s - s * a  # positive half
        z1 = -y / s - s * a  # negative half
        # T2 = -a y + log Phi(z2) and T1 = a y + log Phi(z1), both shifted by s^2a^2/2 - y^2/(2s^2)
        T2, M2 = _GM(z2)
        T1, M1 = _GM(z1)
        LT = np.logaddexp(T1, T2)
        lam = np.exp(T2 - LT)  # P(theta > mu | x, non-null)
        return (M1, M2), None, LT, lam

    @staticmethod
    def loglik(theta, x, s, grad=True):
        alpha, lb, mu = theta
        a = np.exp(-lb)
        y = x - mu
        lN0, v0 = _null_terms(y, s)
        (M1, M2), _, LT, lam = PointLaplaceFamily._terms(a, y, s)
        lg = np.log(a / 2.0) - 0.5 * y * y / v0 + LT
        ell, r, pi0 = _mix(alpha, lN0, lg)
        if not grad:
            return ell, None, r
        q = 1.0 - r
        dlg_da = 1.0 / a + v0 * a + lam * (-y - s * M2) + (1.0 - lam) * (y - s * M1)
        d = np.empty((3, x.size))
        d[0] = r - pi0
        d[1] = -q * a * dlg_da
        d[2] = r * y / v0 + q * (lam * (a - M2 / s) + (1.0 - lam) * (-a + M1 / s))
        return ell, d, r

    @staticmethod
    def hessian(theta, x, s, r):
        r"""Analytic Hessian of :math:`\sum_i\ell_i` in :math:`(\alpha, \ell, \mu)`.

        :math:`\nabla^2\ell_i = rH_0 + qH_1 + rq\,\delta\delta^\top` as for the other
        families. The slab is :math:`\log(a/2) - y^2/(2s^2) + \mathrm{LSE}(G(z_1), G(z_2))`
        with :math:`z_{2,1} = \pm y/s - sa`, :math:`\partial_\ell z = sa`,
        :math:`\partial^2_\ell z = -sa`, :math:`\partial_\mu z_{2,1} = \mp 1/s`; with
        :math:`\lambda` the weight of :math:`z_2`, the LSE's Hessian is
        :math:`\sum_j \lambda_j(G''_j\nabla z_j\nabla z_j^\top + G'_j\nabla^2 z_j)
        + \lambda(1-\lambda)\,ee^\top`, :math:`e = G'_2\nabla z_2 - G'_1\nabla z_1`.
        """
        alpha, lb, mu = theta
        a = np.exp(-lb)
        y = x if mu == 0 else x - mu
        v0 = s * s
        (M1, M2), _, _, lam = PointLaplaceFamily._terms(a, y, s)
        sa = s * a
        z2 = y / s - sa
        z1 = -y / s - sa
        G1a, G1b = z1 + M1, z2 + M2  # G' at z1, z2
        G2a, G2b = 1.0 - M1 * G1a, 1.0 - M2 * G1b
        lm = 1.0 - lam
        ll = lam * lm
        dif, sm = G1b - G1a, G1b + G1a
        lg_l = -1.0 + sa * (lam * G1b + lm * G1a)
        lg_m = y / v0 + (lm * G1a - lam * G1b) / s
        h_ll = sa * sa * (lam * G2b + lm * G2a) - sa * (lam * G1b + lm * G1a) + ll * (sa * dif) ** 2
        h_lm = a * (lm * G2a - lam * G2b) - ll * a * dif * sm
        h_mm = ((lam * G2b + lm * G2a) + ll * sm * sm - 1.0) / v0
        q = 1.0 - r
        rq = r * q
        dl = -lg_l
        dm = y / v0 - lg_m
        pi0 = sc.expit(alpha)
        H = np.empty((3, 3))
        H[0, 0] = rq.sum() - x.size * pi0 * (1.0 - pi0)
        H[0, 1] = H[1, 0] = np.sum(rq * dl)
        H[0, 2] = H[2, 0] = np.sum(rq * dm)
        H[1, 1] = np.sum(q * h_ll + rq * dl * dl)
        H[1, 2] = H[2, 1] = np.sum(q * h_lm + rq * dl * dm)
        H[2, 2] = np.sum(q * h_mm - r / v0 + rq * dm * dm)
        return H

    @staticmethod
    def posterior(theta, x, s, r, want):
        r"""Posterior summaries.

        Given non-null, the posterior is a two-piece mixture: with probability
        :math:`\lambda` (``lam``) :math:`N(y - s^2a, s^2)` truncated to
        :math:`[0,\infty)`, otherwise :math:`N(y + s^2a, s^2)` truncated to
        :math:`(-\infty, 0]`; lfsr :math:`= (1-w) + w\min(\lambda, 1-\lambda)`.
        """
        _, lb, mu = theta
        a = np.exp(-lb)
        y = x - mu
        _, _, _, lam = PointLaplaceFamily._terms(a, y, s)
        w = 1.0 - r
        Ep, E2p = trunc_pos_moments(y - s * s * a, s)
        En, E2n = trunc_pos_moments(-(y + s * s * a), s)
        E = lam * Ep - (1.0 - lam) * En
        E2 = lam * E2p + (1.0 - lam) * E2n
        return _onesided_summaries(w, E, E2, mu, want, lfsr=(1.0 - w) + w * np.minimum(lam, 1.0 - lam))

    @staticmethod
    def prior_summaries(theta, want, n):
        alpha, lb, mu = theta
        b = np.exp(lb)
        w = np.full(n, sc.expit(-alpha))
        return _onesided_summaries(w, np.zeros(n), np.full(n, 2 * b * b), mu, want, lfsr=(1.0 - w) + 0.5 * w)

    @staticmethod
    def sampler_params(theta, x, s, r):
        _, lb, mu = theta
        a = np.exp(-lb)
        y = x - mu
        fin = np.isfinite(s)
        lam = np.full(x.size, 0.5)
        if fin.any():
            lam[fin] = PointLaplaceFamily._terms(a, y[fin], s[fin])[3]
        return 1.0 - r, lam, y - s * s * a, -(y + s * s * a), s, mu, np.exp(lb)

    @staticmethod
    def sample(params, nsamp, rng):
        w, lam, mp, mn, s, mu, b = params
        n = w.size
        nonnull = rng.random((nsamp, n)) < w
        pos = rng.random((nsamp, n)) < lam
        fin = np.isfinite(s)
        draw = np.empty((nsamp, n))
        if fin.any():
            k = int(fin.sum())
            dp = _sample_trunc_pos(mp[fin], s[fin], rng, (nsamp, k))
            dn = -_sample_trunc_pos(mn[fin], s[fin], rng, (nsamp, k))
            draw[:, fin] = np.where(pos[:, fin], dp, dn)
        if (~fin).any():
            k = int((~fin).sum())
            draw[:, ~fin] = rng.laplace(0.0, b, (nsamp, k))
        return mu + np.where(nonnull, draw, 0.0)

    @staticmethod
    def g_from_theta(theta):
        alpha, lb, mu = theta
        return PointLaplace(pi0=float(sc.expit(alpha)), mean=float(mu), scale=float(np.exp(lb)))

    @staticmethod
    def theta_from_g(g, fname):
        if isinstance(g, PointLaplace):
            return np.array([logit(g.pi0), np.log(g.scale), g.mean])
        raise MashInputError(f"{fname}: g_init must be a PointLaplace, got {type(g).__name__}; "
                             "pass the fitted_g of a point_laplace fit")
