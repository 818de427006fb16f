r"""Parametric ebnm workhorse and the point-normal / point-Laplace / point-exponential / normal families.

Port of ebnm's ``parametric_workhorse`` / ``mle_parametric`` (map §2.7), from the
description, not the code. Steps:

1. checks (:func:`~mashlib.eb.ebnm._core.check_xs`); observations with
   :math:`s_i = \infty` are left out of the fit and get the prior as posterior;
2. rescaling: :math:`x, s` are multiplied by :math:`c = 1/\mathrm{median}(s_i)`
   (finite, positive :math:`s_i`), parameters are scaled back after the fit and the
   log-likelihood is shifted by :math:`-n\log c`;
3. maximise :math:`\sum_i \ell_i(\alpha, \log b, \mu)` over the free parameters
   (:math:`\alpha = \operatorname{logit}\pi_0` if the family has a point mass,
   :math:`\log b` unless ``scale`` is fixed, :math:`\mu` if ``mode="estimate"``)
   with L-BFGS-B and the analytic gradient from ebnm's initial values; BFGS and
   Nelder-Mead are the fallbacks when L-BFGS-B fails;
4. the boundaries are checked explicitly and the best solution is kept:
   :math:`\pi_0 = 1` (all null, :math:`\ell = \sum\log N(x_i;\mu,s_i^2)`) always, and
   :math:`\pi_0 = 0` (slab only, optimised separately) when the interior optimum
   drifts to :math:`\pi_0 < 10^{-5}` or the interior fit failed; this avoids the
   failures of ebnm issues #20 / #144. When the interior path heads for
   :math:`\pi_0 = 0` (:math:`\alpha < -6`, still falling) the slab-only fit is done
   at once and, if it meets the boundary's KKT condition, the interior iterations stop
   (otherwise Newton creeps towards :math:`\alpha = -\infty` about one unit per step);
5. posterior summaries with the fitted prior.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import special as sc

from ..._errors import MashInputError
from ._core import (
    _LOG_2PI,
    DEFAULT_OUTPUT,
    EbnmResult,
    check_fix_g,
    check_mode,
    check_output,
    check_scale,
    check_xs,
)
from ._pfamilies import (
    NormalFamily,
    PointExponentialFamily,
    PointLaplaceFamily,
    PointNormalFamily,
)

__all__ = ["ebnm_point_normal", "ebnm_point_laplace", "ebnm_point_exponential", "ebnm_normal"]

_OPTMETHODS = (None, "newton", "lbfgsb", "nelder_mead", "nohess_nlm", "nlm", "nograd_nlm", "nograd_lbfgsb",
               "trust", "optimize")
_ALPHA_BOX = 40.0  # |logit pi0| beyond this is handled by the explicit boundary checks


def _total(fam, theta, x, s):
    ell, _, _ = fam.loglik(theta, x, s, grad=False)
    return float(ell.sum())


def _floored_step(H, g):
    r"""Newton step :math:`-V\,\mathrm{diag}(1/\tilde\lambda)\,V^\top g` with the eigenvalues
    of the symmetric ``H`` floored, :math:`\tilde\lambda = \max(|\lambda|, 10^{-8}\max(1,
    \lambda_{\max}))`; None if they are not finite.

    1 x 1 and clearly positive definite 2 x 2 Hessians (where no eigenvalue can be
    floored: :math:`\det H/\operatorname{tr}H > 10^{-8}\max(1, \operatorname{tr}H)`, as
    :math:`\lambda_{\min} \ge \det H/\operatorname{tr}H` and
    :math:`\lambda_{\max} \le \operatorname{tr}H`) are solved directly; otherwise
    ``eigh``.
    """
    n = g.size
    if n == 1:
        h = float(H[0, 0])
        if not np.isfinite(h):
            return None
        return np.array([-float(g[0]) / max(abs(h), 1e-8 * max(1.0, h))])
    if n == 2:
        a, b, c = float(H[0, 0]), float(H[0, 1]), float(H[1, 1])
        tr = a + c
        det = a * c - b * b
        if a > 0 and c > 0 and np.isfinite(det) and det > 1e-8 * tr * max(1.0, tr):
            g0, g1 = float(g[0]), float(g[1])
            return np.array([-(c * g0 - b * g1) / det, -(a * g1 - b * g0) / det])
    ev, V = np.linalg.eigh(H)
    if not np.all(np.isfinite(ev)):
        return None
    ev = np.maximum(np.abs(ev), 1e-8 * max(1.0, ev.max()))
    return -(V @ ((V.T @ g) / ev))


def _newton(nll, p0, lo, hi, maxiter=200, stop=None, hess=None):
    r"""Damped Newton with a finite-difference Hessian of the analytic gradient.

    Minimises ``nll`` (returning value and gradient) over a box ``[lo, hi]``
    (projected: a coordinate at a bound whose gradient pushes outwards is held).
    The Hessian :math:`H_{jk} \approx [g(p + h e_k) - g(p)]_j / h` is symmetrised and
    its eigenvalues are floored at :math:`10^{-8}\max(1, \lambda_{\max})` (so the
    step :math:`-H^{-1}g` is a descent direction); steps are halved until the
    objective decreases. Converged when the projected gradient is below
    :math:`10^{-7}` or the decrease below :math:`10^{-13}(1+|f|)` after a full step,
    or when ``stop(p, f, g)`` (checked at every accepted iterate) returns True.
    ``hess(p)``, when given, is the analytic Hessian and replaces the finite
    differences (one objective evaluation per iteration instead of ``1 + k``).
    Returns ``(p, f, converged)``.
    """
    p = np.clip(p0.astype(float), lo, hi)
    f, g = nll(p)
    if not np.isfinite(f):
        return p, f, False
    k = p.size
    for _ in range(maxiter):
        held = ((p <= lo) & (g > 0)) | ((p >= hi) & (g < 0))
        act = ~held
        if not act.any() or np.max(np.abs(g[act])) < 1e-7:
            return p, f, True
        if stop is not None and stop(p, f, g):
            return p, f, True
        idx = np.flatnonzero(act)
        if hess is not None:
            H = hess(p)
            if idx.size < k:
                H = H[np.ix_(idx, idx)]
        else:
            H = np.empty((idx.size, idx.size))
            for j, kk in enumerate(idx):
                h = 1e-6 * max(1.0, abs(p[kk]))
                q = p.copy()
                q[kk] += h
                H[:, j] = (nll(q)[1][idx] - g[idx]) / h
        H = 0.5 * (H + H.T)
        step = np.zeros(k)
        si = _floored_step(H, g[idx])
        if si is None:
            return p, f, False
        step[idx] = si
        t = 1.0
        for _ls in range(60):
            q = np.clip(p + t * step, lo, hi)
            fq, gq = nll(q)
            if np.isfinite(fq) and fq <= f:
                break
            t *= 0.5
        else:
            return p, f, np.max(np.abs(g[act])) < 1e-4
        dec = f - fq
        p, f, g = q, fq, gq
        if t == 1.0 and dec < 1e-13 * (1.0 + abs(f)):
            return p, f, True
        if dec == 0.0:
            return p, f, np.max(np.abs(g[act])) < 1e-4
    return p, f, False


def _optimise(fam, theta0, free, x, s, method, stop=None):
    """Maximise the log-likelihood over ``theta[free]``; return (theta, loglik, ok).

    ``stop(p, f, g)`` may end the Newton iterations early (``ok`` is then True).
    """
    idx = np.flatnonzero(free)
    theta = theta0.copy()
    if idx.size == 0:
        return theta, _total(fam, theta, x, s), True

    last = {}  # the latest evaluation, for the analytic Hessian at the accepted point

    def nll(p):
        th = theta.copy()
        th[idx] = p
        ell, d, r = fam.loglik(th, x, s, grad=True)
        f = -ell.sum()
        if not np.isfinite(f):
            return np.inf, np.zeros_like(p)
        last.update(p=p, th=th, r=r)  # _newton never modifies an evaluated point in place
        return f, -d[idx].sum(axis=1)

    hess = None
    if hasattr(fam, "hessian"):
        ix = np.ix_(idx, idx)

        def hess(p):
            if last.get("p") is not p and not np.array_equal(last.get("p"), p):
                nll(p)
            return -fam.hessian(last["th"], x, s, last["r"])[ix]

    p0 = theta0[idx].copy()
    lo = np.full(idx.size, -np.inf)
    hi = np.full(idx.size, np.inf)
    for j, k in enumerate(idx):
        if k == 0:
            lo[j], hi[j] = -_ALPHA_BOX, _ALPHA_BOX
        elif k == 1:
            lo[j], hi[j] = p0[j] - 40.0, p0[j] + 40.0
    p0 = np.clip(p0, lo + 1, hi - 1)
    if method in (None, "nohess_nlm", "nlm", "trust", "optimize", "newton"):
        p, f, ok = _newton(nll, p0, lo, hi, stop=stop, hess=hess)
        if ok and np.isfinite(f):
            theta[idx] = p
            return theta, -float(f), True
        best_p, best_f = p, f
    else:
        best_p, best_f = p0, nll(p0)[0]
    # fallbacks: L-BFGS-B (analytic gradient), then Nelder-Mead
    bounds = list(zip(np.where(np.isfinite(lo), lo, None), np.where(np.isfinite(hi), hi, None)))
    ok = False
    for meth in ("L-BFGS-B", "Nelder-Mead") if method != "nelder_mead" else ("Nelder-Mead",):
        start = best_p if np.isfinite(best_f) else p0
        if meth == "L-BFGS-B":
            res = optimize.minimize(lambda q: (lambda fg: (min(fg[0], 1e300), fg[1]))(nll(q)), start, jac=True,
                                    method=meth, bounds=bounds,
                                    options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 1000})
        else:
            res = optimize.minimize(lambda q: min(nll(np.clip(q, lo, hi))[0], 1e300), start, method=meth,
                                    options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000})
            res.x = np.clip(res.x, lo, hi)
        if np.isfinite(res.fun) and res.fun < 1e299 and (not np.isfinite(best_f) or res.fun <= best_f):
            best_p, best_f = res.x, res.fun
        if res.success and np.isfinite(res.fun) and res.fun < 1e299:
            ok = True
            break
    if not np.isfinite(best_f):
        return theta, -np.inf, False
    theta[idx] = best_p
    return theta, -float(best_f), ok


def _null_mode(x, s):
    if np.ndim(s) == 0:
        return float(np.mean(x))
    w = 1.0 / (s * s)
    return float(np.sum(w * x) / np.sum(w))


_DRIFT = 6.0  # logit pi0 below -_DRIFT and still falling: try the pi0 = 0 boundary (KKT check)
_KKT_ALPHA = -30.0


def _pi0_kkt(fam, theta, x, s):
    r"""True when :math:`\pi_0 = 0` is optimal given the other parameters of ``theta``.

    The log-likelihood is concave in :math:`\pi_0` and its derivative at
    :math:`\pi_0 = 0` is :math:`D = \sum_i N(y_i; 0, s_i^2)/f(y_i) - n`; ``D <= 0`` is the
    boundary's KKT condition. Evaluated from the null responsibilities at
    :math:`\operatorname{logit}\pi_0 = -30`: :math:`D \approx \sum_i r_i/\pi_0 - n`.
    """
    th = np.array(theta, dtype=float)
    th[0] = _KKT_ALPHA
    _, _, r = fam.loglik(th, x, s, grad=False)
    D = float(np.sum(r)) / sc.expit(_KKT_ALPHA) - x.size
    return bool(np.isfinite(D) and D <= 0.0)


def _fit(fam, x, s, theta0, free, method):
    r"""Interior fit plus the explicit pi0 boundary checks; returns the best theta.

    When the interior Newton path drifts towards :math:`\pi_0 = 0`
    (:math:`\operatorname{logit}\pi_0 < -6` with the gradient still pushing down), the
    slab-only fit is computed at once; if the boundary satisfies its KKT condition
    (:func:`_pi0_kkt`) and is at least as good as the current iterate, the interior
    iterations stop there (the slow creep of logit pi0 towards -infinity is skipped),
    otherwise they go on. The boundary then competes as before.
    """
    bnd = {}

    def slab_only():
        if not bnd:
            th0 = theta0.copy()
            th0[0] = -np.inf
            fr = free.copy()
            fr[0] = False
            th0, ll0, _ = _optimise(fam, th0, fr, x, s, method)
            bnd["fit"] = (th0, ll0)
        return bnd["fit"]

    stop = None
    if free[0]:
        def stop(p, f, g):
            if bnd or p[0] > -_DRIFT or g[0] <= 0:
                return False
            th0, ll0 = slab_only()
            return bool(np.isfinite(ll0) and ll0 >= -f and _pi0_kkt(fam, th0, x, s))

    theta, ll, ok = _optimise(fam, theta0, free, x, s, method, stop=stop)
    best_ll = ll if np.isfinite(ll) else -np.inf
    best = theta
    if free[0]:
        # pi0 = 1: everything null (slab parameters irrelevant, kept). As ebnm, it wins
        # whenever it is at least as good as the interior fit.
        th1 = theta.copy()
        th1[0] = np.inf
        if free[2]:
            th1[2] = _null_mode(x, s)
        ll1 = _total(fam, th1, x, s)
        # pi0 = 0: slab only, when the interior fit drifts there or failed
        if theta[0] < -11.5 or not ok or not np.isfinite(ll) or bnd:
            th0, ll0 = slab_only()
            if ll0 > best_ll:
                best_ll, best = ll0, th0
        if ll1 >= best_ll:
            best_ll, best = ll1, th1
    if not np.isfinite(best_ll):
        raise MashInputError(f"ebnm_{fam.name}: the marginal log-likelihood is not finite at any candidate "
                             "solution; check x and s for extreme values")
    return best


def _lazy_sampler(fam, theta, x, s, fin, r_fin):
    """Posterior sampler whose parameters are computed on first use (flash never samples)."""
    params = []

    def sample(nsamp, rng):
        if not params:
            r_all = np.full(x.size, sc.expit(theta[0]))
            r_all[fin] = r_fin
            params.append(fam.sampler_params(theta, x, s, r_all))
        return fam.sample(params[0], nsamp, rng)

    return sample


def parametric_workhorse(fam, x, s, mode, scale, g_init, fix_g, output, optmethod, control, fname):
    """Fit a parametric family; see the module docstring for the algorithm."""
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    mode_val = check_mode(mode, fname)
    scale_val = check_scale(scale, fname)
    if optmethod not in _OPTMETHODS:
        raise MashInputError(f"{fname}: optmethod={optmethod!r} is not one of {list(_OPTMETHODS)}")
    check_fix_g(fix_g, g_init, fname)
    fin = np.isfinite(s)
    xf, sf = x[fin], s[fin]
    nf = xf.size

    if g_init is not None:
        theta_g = np.asarray(fam.theta_from_g(g_init, fname), dtype=float)
        if not fam.pointmass:
            theta_g[0] = -np.inf
    if fix_g:
        theta = theta_g
    elif nf == 0:
        raise MashInputError(f"{fname}: every s is infinite, so there is nothing to fit g to; "
                             "pass g_init with fix_g=True")
    else:
        s_lo, s_hi = sf.min(), sf.max()
        c = 1.0 / (s_lo if s_lo == s_hi else np.median(sf))  # constant s (flash's loadings): no sort
        xr, sr = xf * c, sf * c
        free = np.array([fam.pointmass, scale_val is None, mode_val is None])
        if g_init is not None:
            theta0 = theta_g.copy()
            theta0[1] += np.log(c)
            theta0[2] *= c
            for k in (0, 1):
                if not np.isfinite(theta0[k]) and free[k]:
                    theta0[k] = 0.0
        else:
            theta0 = fam.init(xr, sr, mode_val is None)
        if not fam.pointmass:
            theta0[0] = -np.inf
        if scale_val is not None:
            theta0[1] = np.log(scale_val * c)
        if mode_val is not None:
            theta0[2] = mode_val * c
        # constant s (flash's loadings): the fit works with a scalar s, so every
        # s-only term of the log-likelihood and its derivatives is a scalar
        theta_r = _fit(fam, xr, sr[0] if s_lo == s_hi else sr, theta0, free, optmethod)
        theta = theta_r.copy()
        theta[1] -= np.log(c)
        theta[2] /= c
        if mode_val is not None:
            theta[2] = mode_val
        if scale_val is not None:
            theta[1] = np.log(scale_val)

    result = EbnmResult(prior_family=fam.name)
    need_post = want & {"posterior_mean", "posterior_sd", "posterior_second_moment", "lfsr"}
    if "lfsr" in need_post and theta[2] != 0:
        import warnings

        warnings.warn(f"{fname}: lfsr is not returned when the mode is not zero (as ebnm)", RuntimeWarning,
                      stacklevel=3)
        need_post = need_post - {"lfsr"}
    ell, _, r_fin = fam.loglik(theta, xf, sf, grad=False) if nf else (np.zeros(0), None, np.zeros(0))
    if "log_likelihood" in want:
        result.log_likelihood = float(ell.sum())
    if need_post:
        if fin.all():
            post = fam.posterior(theta, xf, sf, r_fin, need_post)
        else:
            post = fam.prior_summaries(theta, need_post, x.size)
            if nf:
                pf = fam.posterior(theta, xf, sf, r_fin, need_post)
                for k in post:
                    post[k][fin] = pf[k]
        order = [k for k in ("mean", "sd", "second_moment", "lfsr") if k in post]
        result.posterior_arrays = {k: post[k] for k in order}
    if "fitted_g" in want or "posterior_sampler" in want:
        g = fam.g_from_theta(theta)
        if scale_val is not None and not fix_g:  # keep the user's number exactly (exp(log(b)) may differ)
            import dataclasses

            if hasattr(g, "scale"):
                g = dataclasses.replace(g, scale=scale_val)
            elif isinstance(g.sd, np.ndarray):
                g = dataclasses.replace(g, sd=np.array([scale_val]))
            else:
                g = dataclasses.replace(g, sd=scale_val)
        result.fitted_g = g_init if fix_g else g
        result._sampler = _lazy_sampler(fam, theta, x.copy(), s.copy(), fin, r_fin)
    if "data" in want:
        import pandas as pd

        result.data = pd.DataFrame({"x": x, "s": s})
    return result


_DOC = """Solve the EBNM problem with the {title} prior family (map §2.7).

    {math}

    Parameters
    ----------
    x : array_like, shape (n,)
        Observations (finite).
    s : float or array_like, shape (n,)
        Standard errors, ``>= 0``; ``inf`` marks a missing observation (left out of
        the fit, posterior = prior, contributes 0 to the log-likelihood); ``0`` is
        replaced by a tiny positive value with a warning, as ebnm does.
    mode : float or "estimate"
        Location of the point mass / slab (default 0).
    scale : float or "estimate"
        Slab scale {scale_doc}; fixed when a number is given.
    g_init : {gcls}, optional
        Initial prior (e.g. ``fitted_g`` of an earlier call).
    fix_g : bool
        If True, ``g_init`` is used as is and only posteriors are computed.
    output : iterable of str
        Among :data:`~mashlib.eb.ebnm._core.OUTPUT_NAMES`; default
        :data:`~mashlib.eb.ebnm._core.DEFAULT_OUTPUT`. Use
        :data:`~mashlib.eb.ebnm._core.FLASH_OUTPUT` for the fast path.
    optmethod : str, optional
        ``None``/"lbfgsb" (default: L-BFGS-B with analytic gradient, BFGS and
        Nelder-Mead fallbacks), "bfgs" or "nelder_mead"; R's nlm/trust names are
        accepted and mapped to the default.
    control : dict, optional
        Unused; accepted for signature compatibility with ebnm.

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a :class:`~mashlib.eb.ebnm._core.{gcls}`.
    """


def ebnm_point_normal(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                      optmethod=None, control=None):
    return parametric_workhorse(PointNormalFamily, x, s, mode, scale, g_init, fix_g, output, optmethod,
                                control, "ebnm_point_normal")


def ebnm_normal(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                optmethod=None, control=None):
    return parametric_workhorse(NormalFamily, x, s, mode, scale, g_init, fix_g, output, optmethod, control,
                                "ebnm_normal")


def ebnm_point_exponential(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                           optmethod=None, control=None):
    return parametric_workhorse(PointExponentialFamily, x, s, mode, scale, g_init, fix_g, output, optmethod,
                                control, "ebnm_point_exponential")


def ebnm_point_laplace(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                       optmethod=None, control=None):
    return parametric_workhorse(PointLaplaceFamily, x, s, mode, scale, g_init, fix_g, output, optmethod,
                                control, "ebnm_point_laplace")


ebnm_point_normal.__doc__ = _DOC.format(
    title="point-normal", gcls="PointNormal", scale_doc="(the normal sd sigma)",
    math=r"""Prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)N(\mu,\sigma^2)`; marginal
    :math:`x_i \sim \pi_0 N(\mu, s_i^2) + (1-\pi_0) N(\mu, s_i^2+\sigma^2)`.""")
ebnm_normal.__doc__ = _DOC.format(
    title="normal", gcls="NormalMix", scale_doc="(the prior sd sigma)",
    math=r"""Prior :math:`g = N(\mu,\sigma^2)`; marginal :math:`x_i \sim N(\mu, s_i^2+\sigma^2)`.""")
ebnm_point_exponential.__doc__ = _DOC.format(
    title="point-exponential (non-negative)", gcls="PointExponential", scale_doc="(b = 1/rate)",
    math=r"""Prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)(\mu + \mathrm{Exp}(1/b))`; with
    :math:`a = 1/b`, :math:`y = x-\mu` the slab marginal is
    :math:`a\,e^{s^2a^2/2 - a y}\,\Phi(y/s - s a)`. lfsr is the posterior null probability.""")
ebnm_point_laplace.__doc__ = _DOC.format(
    title="point-Laplace", gcls="PointLaplace", scale_doc="(b = 1/rate)",
    math=r"""Prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)\mathrm{Laplace}(\mu, b)`; with
    :math:`a = 1/b` the slab marginal is :math:`\frac a2 e^{s^2a^2/2}[e^{a y}\Phi(-y/s - sa)
    + e^{-a y}\Phi(y/s - sa)]`.""")
