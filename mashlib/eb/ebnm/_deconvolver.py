r"""ebnm's ``deconvolver`` family: Efron's g-modeling (Efron 2016, "Empirical Bayes deconvolution
estimates", Biometrika; Narasimhan & Efron 2020, JSS 94(11)), for z-scores (``s = 1``).

The prior lives on the grid :math:`\tau_1 < \dots < \tau_m` of :func:`mashlib.eb.ebnm.npmle_grid`
(point masses; spacing :func:`~mashlib.eb.ebnm.ebnm_scale_npmle`) and is an exponential family

.. math::
    g_j(\alpha) = \exp\{Q_j\alpha - \phi(\alpha)\}, \qquad \phi(\alpha) = \log\sum_j e^{Q_j\alpha},

with :math:`Q` the natural cubic spline basis with ``pDegree`` (5) degrees of freedom at
:math:`\tau` (knots at the quantiles of :math:`\tau`, as R's ``splines::ns``), each column centred and
scaled to unit sum of squares. The z-scores are binned on ``n`` (40) equally spaced break points
:math:`b_1 < \dots < b_n` from :math:`b_1 = \mathrm{round}(\min z, 1)` to :math:`b_n = \mathrm{round}(\max
z, 1)` (one decimal, exact ties to even as R's ``round``), so there are :math:`n - 1` bins
:math:`[b_k, b_{k+1})`, closed on the left; a z-score below :math:`b_1` or at or above :math:`b_n` is not
counted. With counts :math:`y_k` and :math:`P_{kj} = \Phi(b_{k+1} - \tau_j) - \Phi(b_k - \tau_j)`
(not normalised), :math:`\hat\alpha` minimises the penalised negative log-likelihood

.. math::
    -\sum_k y_k \log (P g(\alpha))_k + c_0\,\lVert\alpha\rVert_2, \qquad c_0 = 1,

(Newton steps in a trust region, exact gradient and Hessian, from ``aStart``: :math:`\alpha = 1`),
and the fitted prior is :math:`\hat g = g(\hat\alpha)` on the grid.
Posteriors and the log-likelihood are those of the point-mass mixture :math:`\hat g` for the
unbinned data (:mod:`mashlib.eb.ebnm._mixpost`).

Sources: the ``deconvolveR::deconv`` manual (defaults ``n = 40``, ``c0 = 1``, ``pDegree = 5``,
``aStart = 1``, ``scale = TRUE``; "the Q matrix scaled so that the spline basis has mean 0 and columns sum
of squares one"), Efron (2016; the penalty :math:`s(\alpha) = c_0\lVert\alpha\rVert`), ebnm's
``ebnm_deconvolver`` manual (the grid is the ``npmle`` point-mass grid, ``s`` must be 1), and black-box
runs of deconvolveR 1.2-1 under R 4.2.2 (its code, GPL, was not read). The manual says only that "the
range of X is divided into n bins"; the binning above was read off what ``deconv`` returns:

* ``deconv(tau, X = z, family = "Normal")`` on the wave2 ``ebnm_more`` z-scores reproduces ebnm's fitted
  :math:`\hat g` (``stats[, "g"]``) to 4e-16, so ebnm passes only ``tau`` and ``X``;
* its returned ``P`` is 39 x 37 (not 40 x 37) and equals the normal-cdf differences above on the
  breaks ``linspace(-8, 10, 40)`` to 6e-16, while :math:`\min z = -8.032`, :math:`\max z = 9.978`;
* its returned ``loglik`` function minus :math:`\lVert\alpha\rVert` is linear in the counts: fitting
  it at 80 random :math:`\alpha` recovers :math:`y` (summing to 999: the minimum, below -8, is dropped)
  and a penalty coefficient of exactly 1, residual 8e-12; its gradient at the returned ``mle`` is 1e-8;
* probes with a few chosen X (``n = 5``) fixed the rule: the range is rounded to one decimal, not to
  significant digits (X in [12.34, 15.67] gives breaks on [12.3, 15.7]; X in [0.012, 0.047] fails),
  ``round(-0.25, 1) = -0.2``, an X on a break is counted in the bin to its right, and an X equal to the
  last break is not counted (``tests/eb/test_ebnm_more.py::test_deconvolver_bins_as_R``).

With this binning the fit agrees with R to 3.9e-10 in the grid weights and 8e-8 in the log-likelihood
(-2004.73662644687); also with ``n = 20``, with ``c0 = 2, pDegree = 4``, and on another data set and grid
with ``pDegree = 6`` (to 1.3e-10). (The earlier port binned on the exact range with ``n`` bins; its
optimum was 1.8e-3 away from R's.) ``scale_Q=False`` (deconv's ``scale = FALSE``) is untested against
R: deconvolveR 1.2-1 stops with "object 'Q1' not found" there.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import optimize
from scipy import special as sc
from scipy.interpolate import BSpline

from ..._errors import MashInputError
from ._core import DEFAULT_OUTPUT, NormalMix, check_fix_g, check_output, check_xs
from ._npmle import check_normalmix_g, fit_gmix, npmle_grid

__all__ = ["ebnm_deconvolver", "ns_basis"]


def ns_basis(x, df):
    r"""Natural cubic spline basis without intercept (R's ``splines::ns(x, df)``), an (n, df) array.

    Interior knots at the ``df - 1`` equally spaced quantiles of ``x``, boundary knots at its range;
    the cubic B-spline basis (first column dropped) is projected onto the null space of the
    second-derivative constraints at both boundaries through the complete Householder Q of their
    transpose (columns 3 on).
    """
    x = np.asarray(x, float)
    ik = np.quantile(x, np.arange(1, df) / df)
    lo, hi = float(x.min()), float(x.max())
    t = np.r_[[lo] * 4, ik, [hi] * 4]
    nb = t.size - 4
    eye = np.eye(nb)
    B = np.column_stack([BSpline(t, eye[j], 3, extrapolate=True)(x) for j in range(nb)])
    C = np.column_stack([BSpline(t, eye[j], 3, extrapolate=True).derivative(2)(np.array([lo, hi]))
                         for j in range(nb)])
    Qc, _ = np.linalg.qr(C[:, 1:].T, mode="complete")
    return B[:, 1:] @ Qc[:, 2:]


def _round1(v):
    """``v`` rounded to one decimal as R (>= 4.0) ``round(v, 1)``: the nearest of the exact decimals
    k/10 to the exact binary value of ``v``, exact ties to even k (-0.25 -> -0.2, 2.45 -> 2.5)."""
    fv = Fraction(float(v))
    k0 = math.floor(fv * 10)
    d0, d1 = fv - Fraction(k0, 10), Fraction(k0 + 1, 10) - fv
    k = k0 if d0 < d1 or (d0 == d1 and k0 % 2 == 0) else k0 + 1
    return k / 10


def _bins(z, n_bins):
    r"""deconv's binning of z-scores: ``n_bins`` equally spaced break points from ``round(min z, 1)`` to
    ``round(max z, 1)`` (so ``n_bins - 1`` bins), bins closed on the left and open on the right, points
    below the first or at/above the last break not counted. Returns (breaks, counts)."""
    br = np.linspace(_round1(z.min()), _round1(z.max()), n_bins)
    k = np.searchsorted(br, z, side="right") - 1
    keep = (k >= 0) & (k < n_bins - 1)
    return br, np.bincount(k[keep], minlength=n_bins - 1).astype(float)


def _deconv(z, tau, n_bins=40, c0=1.0, p_degree=5, a_start=1.0, scale=True):
    Q = ns_basis(tau, p_degree)
    if scale:
        Q = Q - Q.mean(axis=0)
        Q = Q / np.sqrt((Q * Q).sum(axis=0))
    br, y = _bins(z, n_bins)
    if not np.all(np.diff(br) > 0):
        raise MashInputError("ebnm_deconvolver: the z-scores rounded to one decimal span no interval "
                             f"(min {z.min():.4g}, max {z.max():.4g}); deconvolveR bins them on that range. "
                             "Pass z-scores with a wider range.")
    P = sc.ndtr(br[1:, None] - tau[None, :]) - sc.ndtr(br[:-1, None] - tau[None, :])
    P = np.maximum(P, 1e-300)
    ysum = y.sum()

    def parts(a):
        eta = Q @ a
        e = np.exp(eta - eta.max())
        g = e / e.sum()
        f = P @ g
        return g, f, P.T @ (y / f), np.sqrt(a @ a)

    def obj(a):
        g, f, r, nrm = parts(a)
        val = -np.sum(y * np.log(f)) + c0 * nrm
        # d(-sum y log f)/d eta = -g * (P^T (y/f) - sum(y))   (g^T P^T (y/f) = sum(y))
        grad = -(Q.T @ (g * (r - ysum)))
        grad = grad + (c0 * a / nrm if nrm > 0 else 0.0)
        return val, grad

    def hess(a):
        # d2/d eta2 = -diag(g (r - Y)) + (g g^T) o (P^T diag(y/f^2) P - Y),  Y = sum(y)
        g, f, r, nrm = parts(a)
        M = (P * (y / (f * f))[:, None]).T @ P
        He = np.outer(g, g) * (M - ysum)
        He[np.diag_indices_from(He)] -= g * (r - ysum)
        H = Q.T @ He @ Q
        if nrm > 0:
            H += c0 * (np.eye(a.size) / nrm - np.outer(a, a) / nrm ** 3)
        return 0.5 * (H + H.T)

    # Newton steps in a trust region: the optimum BFGS reaches, in a fraction of the time
    res = optimize.minimize(obj, np.full(Q.shape[1], float(a_start)), jac=True, hess=hess,
                            method="trust-exact", options={"gtol": 1e-10, "maxiter": 1000})
    eta = Q @ res.x
    e = np.exp(eta - eta.max())
    return e / e.sum()


def ebnm_deconvolver(x, s=1, mode=0, scale="estimate", g_init=None, fix_g=False, output=DEFAULT_OUTPUT,
                     optmethod=None, control=None, **deconv_args):
    r"""EBNM with Efron's deconvolveR prior family (z-scores only: ``s`` must be 1).

    Parameters
    ----------
    x : array_like
        z-scores.
    s : 1
        Standard errors must all equal 1 (convert to z-scores first, as ebnm requires).
    mode : ignored
    scale : "estimate" or float
        Grid spacing (see :func:`~mashlib.eb.ebnm.ebnm_scale_npmle`).
    g_init : NormalMix, optional
        Its means are the grid; with ``fix_g=True`` it is used as is.
    fix_g : bool
    output : iterable of str
    optmethod, control : ignored
    **deconv_args
        ``n`` (break points, 40: ``n - 1`` bins), ``c0`` (penalty, 1), ``pDegree`` (spline df, 5), ``aStart`` (1), ``scale_Q``
        (centre and scale Q, True), as ``deconvolveR::deconv``.

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a point-mass :class:`~mashlib.eb.ebnm.NormalMix` on the grid.
    """
    fname = "ebnm_deconvolver"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    if np.any(s != 1.0):
        raise MashInputError(f"{fname}: deconvolveR takes z-scores rather than observations and standard errors. "
                             "Please convert to z-scores (x / s) and set parameter 's = 1'.")
    bad = set(deconv_args) - {"n", "c0", "pDegree", "aStart", "scale_Q"}
    if bad:
        raise MashInputError(f"{fname}: unknown arguments {sorted(bad)}; valid: n, c0, pDegree, aStart, scale_Q")
    check_fix_g(fix_g, g_init, fname)
    if fix_g:
        return fit_gmix("deconvolver", fname, x, s, want, g_init)
    if g_init is not None:
        _, tau, _ = check_normalmix_g(g_init, fname)
    else:
        tau, _ = npmle_grid(x, s, scale, force_pointmass=True)
    pi = _deconv(x, tau, n_bins=int(deconv_args.get("n", 40)), c0=float(deconv_args.get("c0", 1.0)),
                 p_degree=int(deconv_args.get("pDegree", 5)), a_start=float(deconv_args.get("aStart", 1.0)),
                 scale=bool(deconv_args.get("scale_Q", True)))
    g = NormalMix(pi=pi, mean=tau, sd=np.zeros(tau.size))
    return fit_gmix("deconvolver", fname, x, s, want, g)
