r"""The one-sided-slab parametric ebnm families: point-exponential and point-Laplace.

See :mod:`mashlib.eb.ebnm._pfamilies` for the parametrisation and the marginal
likelihoods (map §2.7); both are re-exported there.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sc

from ..._errors import MashInputError
from ._core import _LOG_2PI, PointExponential, PointLaplace, logit, trunc_pos_moments
from ._pfamilies_base import _GM, _GM_LAST, _mix, _null_terms, _onesided_init, _sample_trunc_pos

__all__ = ["PointExponentialFamily", "PointLaplaceFamily"]


# ============================================================================ point exponential
class PointExponentialFamily:
    """g = pi0 delta_mu + (1 - pi0) (mu + Exp(rate 1/b))."""

    name = "point_exponential"
    pointmass = True
    lfsr_defined = True

    @staticmethod
    def init(x, s, mode_free):
        return _onesided_init(x, np.min, mode_free)

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
        (:func:`~mashlib.eb.ebnm._core.trunc_pos_moments`); with :math:`w = 1-r`:
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
        return _onesided_init(x, np.mean, mode_free)

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
