r"""One factor update: the two EBNM sub-problems of a rank-one EBMF term.

For factor *k* and mode 1 (loadings), with :math:`\tau` the n x p precision
(zero in missing cells) and :math:`R^{(-k)} = Z\circ(Y - \sum_{k'\ne k}
\bar\ell_{k'}\bar f_{k'}^\top)` the residuals without factor *k*,

.. math::

    s_i^2 = \Big(\sum_j \tau_{ij}\,\overline{f^2_{jk}}\Big)^{-1},\qquad
    x_i = s_i^2 \sum_j \tau_{ij} R^{(-k)}_{ij}\,\bar f_{jk},

and the loadings' posterior comes from the normal-means problem
:math:`x_i \sim N(\ell_{ik}, s_i^2)`, :math:`\ell_{ik}\sim g^{(\ell)}_k`, solved by
the ebnm function. Mode 2 swaps the roles of L and F. The ELBO contribution
of the term is

.. math::

    \mathrm{KL}_{k,n} = \log p(x \mid \hat g, s) - \Big(-\tfrac12\sum_i\big[\log(2\pi s_i^2)
      + (\overline{\theta^2_i} - 2x_i\bar\theta_i + x_i^2)/s_i^2\big]\Big),

i.e. the ebnm marginal log-likelihood minus the expected normal-means
log-likelihood under the posterior (Wang & Stephens 2021, eq. 3.9); only
finite, positive :math:`s_i` enter the sum.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError

EPS = np.finfo(float).eps
# what flash needs from each ebnm call (ebnm's R spellings)
EBNM_OUTPUT = ("posterior_mean", "posterior_second_moment", "fitted_g", "log_likelihood")


def normal_means_loglik(x, s, Et, Et2) -> float:
    """Expected log-likelihood of :math:`x_i \\sim N(\\theta_i, s_i^2)` under q(theta)."""
    idx = np.isfinite(s) & (s > 0)
    x, s, Et, Et2 = x[idx], s[idx], Et[idx], Et2[idx]
    return float(-0.5 * np.sum(np.log(2 * np.pi * s * s) + (Et2 - 2 * x * Et + x * x) / (s * s)))


def _posterior_col(post, name):
    if hasattr(post, "__getitem__"):
        try:
            return np.asarray(post[name], dtype=float)
        except (KeyError, IndexError, TypeError):
            pass
    return np.asarray(getattr(post, name), dtype=float)


def _g_field(g, name):
    if g is None:
        return None
    if isinstance(g, dict):
        return g.get(name)
    return getattr(g, name, None)


def warmstart_ok(g, x, s) -> bool:
    """flashier's ``warmstart.sanity.check``: can the previous g plausibly fit x?

    The range where g has mass is taken as [min a, max b] for uniform mixtures
    and +-2 max sd for normal mixtures (other classes pass). The most outlying
    observation's tail p-value must exceed :math:`1 - 0.95^{1/n}`.
    """
    from scipy.special import ndtr

    a, b, sd = _g_field(g, "a"), _g_field(g, "b"), _g_field(g, "sd")
    if a is not None and b is not None:
        a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
        up, lo = b.max(), a.min()
    elif sd is not None and _g_field(g, "shape") is None:
        up = 2 * np.max(np.asarray(sd, float))
        lo = -up
    else:
        return True
    ok = np.isfinite(s) & (s > 0)
    if not np.any(ok):
        return True
    lower_p = ndtr(np.min((x[ok] - lo) / s[ok]))
    upper_p = ndtr(-np.max((x[ok] - up) / s[ok]))
    if a is not None and a.size > 1 and a.min() == a.max():
        lower_p = 1.0
    if b is not None and b.size > 1 and b.min() == b.max():
        upper_p = 1.0
    return bool(min(lower_p, upper_p) > 1 - 0.95 ** (1.0 / len(x)))


def call_ebnm(fn, x, s, g_init=None, fix_g=False, output=EBNM_OUTPUT):
    """Call an ebnm function with flashier's argument set."""
    return fn(x, s, g_init=g_init, fix_g=fix_g, output=output)


def solve_ebnm(fn, x, s, prev_g=None, warmstart=False):
    """Solve one EBNM problem; returns (mean, second moment, g, KL).

    With ``warmstart`` the previous prior is the starting point when
    :func:`warmstart_ok` passes; a failed warm start is retried cold.
    """
    use_g = prev_g if (warmstart and prev_g is not None and warmstart_ok(prev_g, x, s)) else None
    try:
        res = call_ebnm(fn, x, s, g_init=use_g)
    except MashInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - retried without warm start, as flashier
        if use_g is None:
            raise RuntimeError(f"EBNM solver (no warmstart) threw error: {exc}") from exc
        res = call_ebnm(fn, x, s, g_init=None)
    arrays = getattr(res, "posterior_arrays", None)
    if arrays and "mean" in arrays and "second_moment" in arrays:
        mean = np.asarray(arrays["mean"], float)
        m2 = np.asarray(arrays["second_moment"], float)
    else:
        mean = _posterior_col(res.posterior, "mean")
        m2 = _posterior_col(res.posterior, "second_moment")
    ll = float(res.log_likelihood)
    kl = ll - normal_means_loglik(x, s, mean, m2)
    return mean, m2, res.fitted_g, kl


def ebnm_args(T, TR, other_mean, other_m2, mode):
    """x and s of the EBNM problem for ``mode`` (0 = loadings, 1 = factors).

    ``T`` is the precision matrix, ``TR`` = T * R^(-k), ``other_*`` the moments
    of the other mode of factor k.
    """
    if mode == 0:
        prec = T @ other_m2
        num = TR @ other_mean
    else:
        prec = T.T @ other_m2
        num = TR.T @ other_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = np.maximum(1.0 / prec, 0.0)
        x = s2 * num
    x[np.isinf(s2)] = 0.0
    x[np.isnan(x)] = 0.0
    return x, np.sqrt(s2)


def ebnm_sign(fn) -> int:
    """flashier's ``test.ebnm.fn``: +1 (nonnegative), -1 (nonpositive) or 0."""
    try:
        res = call_ebnm(fn, np.array([-10.0, 0.0, 10.0]), np.ones(3))
    except Exception as exc:  # noqa: BLE001
        raise MashInputError(f"ebnm_fn: {getattr(fn, '__name__', fn)!r} failed on a test problem ({exc}); "
                             "pass ebnm functions such as mashlib.ebnm_point_normal.") from exc
    arrays = getattr(res, "posterior_arrays", None)
    m = np.asarray(arrays["mean"], float) if arrays and "mean" in arrays else _posterior_col(res.posterior, "mean")
    if np.all(m >= 0):
        return 1
    if np.all(m <= 0):
        return -1
    return 0


def update_factor(fac, T, Rk, fns, fixed=None, warmstart=False):
    """Update both modes of a factor in place (flashier's ``update.factor``).

    Parameters
    ----------
    fac : Factor
        The factor (its ``EF``, ``EF2``, ``KL``, ``g``, ``is_zero``).
    T : ndarray
        Precision matrix used for both modes (the factor's own tau in the greedy
        step, the fit's tau in an extrapolated backfit).
    Rk : ndarray
        Residuals without factor k (masked).
    fns : pair of ebnm functions.
    fixed : (mode, idx) or None
        Indices of mode ``mode`` held at their current values.
    """
    if fac.is_zero:
        return fac
    TR = T * Rk
    for n in (0, 1):
        if fac.is_zero:
            break
        idx = None
        if fixed is not None and fixed[0] == n:
            idx = np.setdiff1d(np.arange(fac.EF[n].size), fixed[1])
            if idx.size == 0:
                continue
        x, s = ebnm_args(T, TR, fac.EF[1 - n], fac.EF2[1 - n], n)
        if idx is not None:
            x, s = x[idx], s[idx]
        mean, m2, g, kl = solve_ebnm(fns[n], x, s, fac.g[n], warmstart)
        if idx is None:
            fac.EF[n], fac.EF2[n] = mean, m2
        else:
            e, e2 = fac.EF[n].copy(), fac.EF2[n].copy()
            e[idx], e2[idx] = mean, m2
            fac.EF[n], fac.EF2[n] = e, e2
        fac.KL[n] = kl
        fac.g[n] = g
        if np.all(np.abs(fac.EF[n]) < EPS):
            fac.is_zero = True
    return fac
