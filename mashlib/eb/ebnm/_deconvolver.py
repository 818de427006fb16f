r"""ebnm's ``deconvolver`` family: Efron's g-modeling (Efron 2016, "Empirical Bayes deconvolution
estimates", Biometrika; Narasimhan & Efron 2020, JSS 94(11)), for z-scores (``s = 1``).

The prior lives on the grid :math:`\tau_1 < \dots < \tau_m` of :func:`mashlib.eb.ebnm.npmle_grid`
(point masses; spacing :func:`~mashlib.eb.ebnm.ebnm_scale_npmle`) and is an exponential family

.. math::
    g_j(\alpha) = \exp\{Q_j\alpha - \phi(\alpha)\}, \qquad \phi(\alpha) = \log\sum_j e^{Q_j\alpha},

with :math:`Q` the natural cubic spline basis with ``pDegree`` (5) degrees of freedom at
:math:`\tau` (knots at the quantiles of :math:`\tau`, as R's ``splines::ns``), each column centred and
scaled to unit sum of squares. The z-scores are binned: the range of :math:`z` is cut into
``n`` (40) equal bins with counts :math:`y_k`, and :math:`P_{kj} = \Pr(z \in \text{bin}_k \mid \theta =
\tau_j)` under :math:`z \sim N(\theta, 1)`. :math:`\hat\alpha` minimises the penalised
negative log-likelihood

.. math::
    -\sum_k y_k \log (P g(\alpha))_k + c_0\,\lVert\alpha\rVert_2, \qquad c_0 = 1,

(BFGS from :math:`\alpha = 1`), and the fitted prior is :math:`\hat g = g(\hat\alpha)` on the grid.
Posteriors and the log-likelihood are those of the point-mass mixture :math:`\hat g` for the
unbinned data (:mod:`mashlib.eb.ebnm._mixpost`).

Sources: the ``deconvolveR::deconv`` manual (defaults ``n = 40``, ``c0 = 1``, ``pDegree = 5``,
``aStart = 1``, ``scale = TRUE``: "the range of X is divided into n bins to construct the multinomial
sufficient statistic y"; "the Q matrix scaled so that the spline basis has mean 0 and columns sum of
squares one"), Efron (2016, Biometrika 103, 1-20; the penalty :math:`s(\alpha) = c_0\lVert\alpha\rVert`),
Narasimhan & Efron (2020, JSS 94(11); optimiser ``nlm``) and ebnm's ``ebnm_deconvolver`` manual (the
grid is the ``npmle`` point-mass grid, ``s`` must be 1). The code of deconvolveR and ebnm (GPL) was not read.

R parity (not reached): with R's fitted :math:`\hat g` the posteriors and log-likelihood agree to 1e-10
(lfsr aside, see the tests: ebnm reports :math:`1 - \Pr(\theta > 0)`). R's own :math:`\hat g`
(deconvolveR 1.2-1, wave2 ``ebnm_more``) differs from this fit by up to 1.8e-3 in the grid weights
(log-likelihood -2005.106 here, -2004.737 in R). Measured against R's :math:`\hat g`: it lies in the span
of the spline basis to 1e-14, and the norm penalty is right (a squared norm gives 4.7e-2), but R's
:math:`\hat\alpha` is not a stationary point of the penalised binned likelihood for any discretisation
tried (n from 10 to 200; Pr(bin) from normal-cdf differences, densities at bin centres, column-normalised,
open-ended end bins, the minimum dropped as by ``cut()``, single counts moved; also unbinned), nor for
ten scalings of the basis (with or without an intercept column, ``p = pDegree + 1``): the cosine between
the likelihood gradient and :math:`\hat\alpha`, which is 1 at a stationary point, stays below 0.9995.
A Dennis-Schnabel quasi-Newton run (the algorithm ``nlm`` documents) from ``aStart`` converges to the
optimum found here and never passes within 1.2e-3 of R's :math:`\hat g`. At n = 40 R's
:math:`\hat\alpha` is 0.27 worse in this objective, entirely along its three flattest Hessian directions
(eigenvalues 0.15-0.45 against 6.8 and 23.5), where a small undocumented difference in deconv's
objective moves the optimum by about one unit of :math:`\alpha`.
"""
from __future__ import annotations

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


def _deconv(z, tau, n_bins=40, c0=1.0, p_degree=5, a_start=1.0, scale=True):
    Q = ns_basis(tau, p_degree)
    if scale:
        Q = Q - Q.mean(axis=0)
        Q = Q / np.sqrt((Q * Q).sum(axis=0))
    br = np.linspace(z.min(), z.max(), n_bins + 1)
    y, _ = np.histogram(z, br)
    P = sc.ndtr(br[1:, None] - tau[None, :]) - sc.ndtr(br[:-1, None] - tau[None, :])
    P = np.maximum(P, 1e-300)

    def obj(a):
        eta = Q @ a
        e = np.exp(eta - eta.max())
        g = e / e.sum()
        f = P @ g
        nrm = np.sqrt(a @ a)
        val = -np.sum(y * np.log(f)) + c0 * nrm
        # d(-sum y log f)/da = -Q^T [g * (P^T (y/f)) - g * sum(y)]
        r = P.T @ (y / f)
        grad = -(Q.T @ (g * r - g * np.sum(y * (P @ g) / f)))
        grad = grad + (c0 * a / nrm if nrm > 0 else 0.0)
        return val, grad

    res = optimize.minimize(obj, np.full(Q.shape[1], float(a_start)), jac=True, method="BFGS",
                            options={"gtol": 1e-9, "maxiter": 2000})
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
        ``n`` (bins, 40), ``c0`` (penalty, 1), ``pDegree`` (spline df, 5), ``aStart`` (1), ``scale_Q``
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
