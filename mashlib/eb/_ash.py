r"""Adaptive shrinkage (ashr 2.2-65 ``ash``), ``compute_lfsr`` and mashr's ``mash_1by1``.

Model (Stephens 2016, "False discovery rates: a new deal"): for observations
:math:`\hat\beta_j` with standard errors :math:`s_j`, and :math:`\alpha \in [0,1]`,

.. math::
    x_j = \hat\beta_j / s_j^\alpha \sim N(\beta_j, s_j^{2(1-\alpha)}), \qquad
    \beta_j \sim g = \pi_0\delta_0 + \sum_{k \ge 1} \pi_k g_k,

with :math:`g_k` zero-centred normals :math:`N(0, \sigma_k^2)` ("normal"), symmetric
uniforms :math:`U[-\sigma_k, \sigma_k]` ("uniform", R's default), or the one-sided
uniforms of "halfuniform", "+uniform", "-uniform", on a grid :math:`\sigma_k` chosen
by ``autoselect.mixsd``. :math:`\pi` maximises the Dirichlet-penalised likelihood
(:mod:`mashlib.eb.mixopt`), and posterior summaries follow from :mod:`mashlib.eb.mixdist`.
Observations with :math:`s = 0`, :math:`s = \infty` or NA are excluded from the fit and
get the prior mean/sd (map §2.3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .mixdist import (compute_lfsr, normalmix_loglik_matrix, normalmix_posterior,
                      unimix_loglik_matrix, unimix_posterior)
from .mixopt import mix_em, mix_sqp

__all__ = ["ash", "AshResult", "NormalMix", "UniMix", "compute_lfsr", "autoselect_mixsd",
           "qval_from_lfdr", "mash_1by1", "Mash1by1Result"]

_MIXCOMP = ("uniform", "halfuniform", "normal", "+uniform", "-uniform", "halfnormal")


@dataclass
class NormalMix:
    """Normal mixture :math:`\\sum_k \\pi_k N(\\mu_k, \\sigma_k^2)` (ashr ``normalmix``)."""

    pi: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    def prune(self, thresh):
        keep = self.pi > thresh
        return NormalMix(self.pi[keep] / self.pi[keep].sum(), self.mean[keep], self.sd[keep])

    def loglik_matrix(self, x, s):
        return normalmix_loglik_matrix(x, s, self.sd, self.mean)

    def posterior(self, x, s):
        return normalmix_posterior(x, s, self.pi, self.sd, self.mean)

    @property
    def null_comp(self):
        return self.sd == 0


@dataclass
class UniMix:
    """Uniform mixture :math:`\\sum_k \\pi_k U[a_k, b_k]` (ashr ``unimix``; a == b: point mass)."""

    pi: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def prune(self, thresh):
        keep = self.pi > thresh
        return UniMix(self.pi[keep] / self.pi[keep].sum(), self.a[keep], self.b[keep])

    def loglik_matrix(self, x, s):
        return unimix_loglik_matrix(x, s, self.a, self.b)

    def posterior(self, x, s):
        return unimix_posterior(x, s, self.pi, self.a, self.b)

    @property
    def null_comp(self):
        return (self.a == 0) & (self.b == 0)


@dataclass
class AshResult:
    """Output of :func:`ash`.

    Attributes
    ----------
    fitted_g : NormalMix or UniMix
    loglik : float
        :math:`\\sum_j \\log \\sum_k \\pi_k f_k(x_j) - \\alpha \\log s_j` over included rows.
    logLR : float
        ``loglik`` minus the null log-likelihood :math:`\\sum_j \\log N(x_j; 0, s_j'^2)`.
    result : DataFrame
        betahat, sebetahat, NegativeProb, PositiveProb, lfsr, svalue, lfdr, qvalue,
        PosteriorMean, PosteriorSD (outputlevel >= 2).
    converged : bool
    """

    fitted_g: NormalMix | UniMix
    loglik: float
    logLR: float
    result: pd.DataFrame | None = None
    converged: bool = True
    optmethod: str = "mixSQP"
    data: dict = field(default_factory=dict, repr=False)

    def get_pm(self):
        return self.result["PosteriorMean"].to_numpy()

    def get_psd(self):
        return self.result["PosteriorSD"].to_numpy()

    def get_lfsr(self):
        return self.result["lfsr"].to_numpy()


def autoselect_mixsd(x, s, mult=np.sqrt(2), pointmass=True):
    r"""ashr ``autoselect.mixsd`` grid (map §2.3, P15).

    :math:`\sigma_{min} = \min s / 10`; :math:`\sigma_{max} = 2\sqrt{\max(x^2 - s^2)}`, or
    :math:`8\sigma_{min}` when all :math:`x^2 \le s^2`;
    :math:`n = \lceil \log_2(\sigma_{max}/\sigma_{min}) / \log_2(\text{mult}) \rceil`;
    grid :math:`\text{mult}^{-n..0}\sigma_{max}`, with 0 prepended if ``pointmass``.
    """
    smin = np.min(s) / 10.0
    d = x * x - s * s
    smax = 2.0 * np.sqrt(np.max(d)) if np.any(d > 0) else 8.0 * smin
    if mult == 0:
        grid = np.array([smin, smax / 2])
    else:
        npoint = int(np.ceil(np.log2(smax / smin) / np.log2(mult)))
        grid = mult ** (-np.arange(npoint, -1, -1, dtype=float)) * smax
    return np.concatenate([[0.0], grid]) if pointmass else grid


def qval_from_lfdr(lfdr):
    r"""q-values from lfdr (ashr ``qval.from.lfdr``): :math:`q_{(i)} = \frac1i\sum_{j \le i}
    \text{lfdr}_{(j)}` over the ascending order; NaN stays NaN."""
    lfdr = np.asarray(lfdr, float)
    q = np.full(lfdr.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(lfdr))
    if ok.size:
        o = ok[np.argsort(lfdr[ok], kind="stable")]
        q[o] = np.cumsum(lfdr[o]) / np.arange(1, o.size + 1)
    return q


def _initpi(k, n, null):
    if k < n:
        pi = np.full(k, 1.0 / n)
        pi[null] = (n - k + 1) / n
    else:
        pi = np.full(k, 1.0 / k)
    return pi / pi.sum()


def _make_g(mixcompdist, pi, mixsd, mode, prior):
    """Build g and the matching prior vector (halfuniform duplicates the non-null comps)."""
    k = mixsd.size
    null = int(np.argmin(mixsd))
    if mixcompdist == "normal":
        return NormalMix(pi, np.full(k, float(mode)), mixsd.copy()), prior
    if mixcompdist == "uniform":
        return UniMix(pi, mode - mixsd, mode + mixsd), prior
    if mixcompdist == "+uniform":
        return UniMix(pi, np.full(k, float(mode)), mode + mixsd), prior
    if mixcompdist == "-uniform":
        return UniMix(pi, mode - mixsd, np.full(k, float(mode))), prior
    if mixcompdist == "halfnormal":
        # N(mode, sigma^2) truncated to (-inf, mode] for all k, then to [mode, inf) for the
        # non-null ones (ashr's tnormalmix; the null keeps (-inf, mode] as in R)
        from .mixdist_t import TNormalMix

        rest = np.delete(np.arange(k), null) if mixsd[null] == 0 else np.arange(k)
        pi2 = (np.concatenate([pi, pi[rest]]) / (2 - pi[null]) if mixsd[null] == 0
               else np.concatenate([pi, pi]) / 2)
        sd2 = np.concatenate([mixsd, mixsd[rest]])
        a = np.concatenate([np.full(k, -np.inf), np.full(rest.size, float(mode))])
        b = np.concatenate([np.full(k, float(mode)), np.full(rest.size, np.inf)])
        return TNormalMix(pi2, np.full(sd2.size, float(mode)), sd2, a, b), np.concatenate([prior, prior[rest]])
    # halfuniform: [-sigma, 0] for all k, then [0, sigma] for the non-null ones
    rest = np.delete(np.arange(k), null) if mixsd[null] == 0 else np.arange(k)
    if mixsd[null] == 0:
        pi2 = np.concatenate([pi, pi[rest]]) / (2 - pi[null])
    else:
        pi2 = np.concatenate([pi, pi]) / 2
    a = np.concatenate([mode - mixsd, np.full(rest.size, float(mode))])
    b = np.concatenate([np.full(k, float(mode)), mode + mixsd[rest]])
    return UniMix(pi2, a, b), np.concatenate([prior, prior[rest]])


def _check_vectors(betahat, sebetahat):
    b = np.asarray(betahat, dtype=float).ravel()
    s = np.asarray(sebetahat, dtype=float).ravel()
    if s.size == 1 and b.size > 1:
        s = np.full(b.size, s.item())
    if b.size != s.size:
        raise MashInputError(f"ash: 'betahat' has length {b.size} but 'sebetahat' has length "
                             f"{s.size}; give one standard error per estimate.")
    neg = np.flatnonzero(s < 0)
    if neg.size:
        raise MashInputError(f"ash: 'sebetahat' has a negative entry at index {neg[0]} "
                             f"({s[neg[0]]}); standard errors must be >= 0.")
    return b, s


def ash(betahat, sebetahat, mixcompdist="uniform", pointmass=True, gridmult=np.sqrt(2),
        prior="nullbiased", nullweight=10.0, optmethod="mixSQP", mixsd=None, g=None,
        fixg=False, mode=0.0, alpha=0.0, outputlevel=2, pi_thresh=1e-10, control=None,
        df=None):
    """Adaptive shrinkage: fit a unimodal mixture prior by EB and shrink (R ``ashr::ash``).

    Parameters
    ----------
    betahat, sebetahat : array_like (n,)
        Estimates and standard errors (s == 0, inf or NaN rows are excluded from the fit).
    mixcompdist : {"uniform", "halfuniform", "normal", "+uniform", "-uniform", "halfnormal"}
        Mixture component family (R default "uniform"). "halfnormal": zero-mode normals
        truncated to :math:`(-\\infty, 0]` and :math:`[0, \\infty)` (:class:`~mashlib.eb.mixdist_t.TNormalMix`).
    pointmass : bool
        Include a point mass at ``mode`` (grid sd 0).
    gridmult : float
        Grid multiplier :math:`m` of :func:`autoselect_mixsd`.
    prior : {"nullbiased", "uniform"} or array_like
        Dirichlet penalty: "nullbiased" puts ``nullweight`` on the null component, 1 elsewhere.
    optmethod : {"mixSQP", "mixEM"}
    mixsd : array_like, optional
        Grid of component sds (overrides autoselection).
    g : NormalMix or UniMix, optional
        Prior to start from (its components define the grid); with ``fixg=True`` it is
        used as is.
    mode : float
        Prior mode.
    alpha : float
        Exchangeability exponent: model for :math:`\\hat\\beta/s^\\alpha`.
    outputlevel : int
        0: fitted_g and loglik only; >= 1 adds the result table.
    pi_thresh : float
        Components with :math:`\\pi_k \\le` pi_thresh are dropped for the posterior.
    control : dict, optional
        Optimizer control (mixsqp keys, or SQUAREM keys for mixEM).
    df : float, optional
        ``None`` (default): normal likelihood. A number :math:`\\nu`: Student-t likelihood,
        :math:`(\\hat\\beta_j - \\beta_j)/s_j \\sim t_\\nu` (Stephens 2016, for estimates from small
        samples; :mod:`mashlib.eb.mixdist_t`). As ashr, only the uniform-type mixtures
        ("uniform", "halfuniform", "+uniform", "-uniform") are implemented with it.

    Returns
    -------
    AshResult
    """
    if mixcompdist not in _MIXCOMP:
        raise MashInputError(f"ash: mixcompdist={mixcompdist!r} is not supported; use one of "
                             f"{_MIXCOMP}.")
    if optmethod not in ("mixSQP", "mixEM"):
        raise MashInputError(f"ash: optmethod={optmethod!r} is not supported; use 'mixSQP' "
                             "or 'mixEM'.")
    if df is not None:
        df = float(df)
        if not (np.isfinite(df) and df > 0):
            raise MashInputError(f"ash: df={df!r} must be a positive number of degrees of freedom "
                                 "(or None for the normal likelihood)")
        # as ashr 2.2-65: only uniform-type mixtures are implemented for the t likelihood
        if mixcompdist == "normal":
            raise MashInputError("ash: Normal mixture for student-t likelihood is not yet implemented "
                                 "(as ashr); use mixcompdist='uniform' or 'halfuniform' with df, or df=None")
        if mixcompdist == "halfnormal":
            raise MashInputError("ash: truncated normal mixture for non-normal likelihood is not yet "
                                 "implemented (as ashr); use mixcompdist='halfuniform' with df, or df=None")
    bhat, s_orig = _check_vectors(betahat, sebetahat)
    excl = np.isnan(bhat) | np.isnan(s_orig) | (s_orig == 0) | np.isinf(s_orig)
    inc = ~excl
    if not inc.any():
        raise MashInputError("ash: every observation is excluded (s == 0, inf or NA); "
                             "give at least one finite positive standard error.")
    with np.errstate(divide="ignore", invalid="ignore"):
        x = bhat / s_orig ** alpha
        s = s_orig ** (1.0 - alpha)
    xin, sin = x[inc], s[inc]

    if g is not None:
        if df is not None and not isinstance(g, UniMix):
            raise MashInputError(f"ash: g is a {type(g).__name__}; with df (t likelihood) only a UniMix "
                                 "prior is implemented (as ashr)")
        gfit = g
        k = gfit.pi.size
        if isinstance(prior, str):
            pr = np.ones(k)
            if prior == "nullbiased":
                pr[0] = nullweight
        else:
            pr = np.asarray(prior, float)
        pi0 = gfit.pi.copy()
    else:
        if mixsd is None:
            mixsd_ = autoselect_mixsd(xin - mode, sin, gridmult, pointmass)
        else:
            mixsd_ = np.asarray(mixsd, float)
        k = mixsd_.size
        null = int(np.argmin(mixsd_))
        if isinstance(prior, str):
            if prior not in ("nullbiased", "uniform"):
                raise MashInputError(f"ash: prior={prior!r} is not supported; use 'nullbiased',"
                                     " 'uniform' or a numeric vector.")
            pr = np.ones(k)
            if prior == "nullbiased":
                pr[null] = nullweight
        else:
            pr = np.asarray(prior, float)
            if pr.size != k:
                raise MashInputError(f"ash: 'prior' has length {pr.size}, expected {k} (one "
                                     "per grid component).")
        pi0 = _initpi(k, int(inc.sum()), null)
        gfit, pr = _make_g(mixcompdist, pi0, mixsd_, mode, pr)
        pi0 = gfit.pi.copy()
    if np.any(pr < 1):
        raise MashInputError("ash: every 'prior' weight must be >= 1 for mixSQP/mixEM.")

    converged = True
    if not fixg:
        pihat, converged = _estimate_mixprop(_loglik_matrix(gfit, xin, sin, df), pr, pi0,
                                             optmethod, control)
        gfit = _with_pi(gfit, pihat)

    # log-likelihoods over included rows
    llm = _loglik_matrix(gfit, xin, sin, df)
    with np.errstate(divide="ignore"):
        lw = llm + np.log(gfit.pi)[None, :]
    mx = lw.max(axis=1)
    vll = mx + np.log(np.exp(lw - mx[:, None]).sum(axis=1)) - alpha * np.log(s_orig[inc])
    loglik = float(vll.sum())
    if df is None:
        null_ll = float(np.sum(-0.5 * np.log(2 * np.pi * sin ** 2) - 0.5 * xin ** 2 / sin ** 2
                               - alpha * np.log(s_orig[inc])))
    else:
        from .mixdist_t import t_logpdf

        null_ll = float(np.sum(t_logpdf(xin / sin, df) - np.log(sin) - alpha * np.log(s_orig[inc])))
    out = AshResult(fitted_g=gfit, loglik=loglik, logLR=loglik - null_ll,
                    converged=bool(converged), optmethod=optmethod,
                    data=dict(x=x, s=s, s_orig=s_orig, alpha=alpha, excluded=excl))
    if outputlevel >= 1:
        gp = gfit.prune(pi_thresh)
        xp = np.where(excl, np.nan, x)
        sp = np.where(excl, np.inf, s)
        if df is None:
            post = gp.posterior(xp, sp)
        else:
            from .mixdist_t import t_unimix_posterior

            post = t_unimix_posterior(xp, sp, gp.pi, gp.a, gp.b, df)
        scale = np.where(excl, 1.0, s_orig ** alpha) if alpha != 0 else 1.0
        lfsr = compute_lfsr(post.prob_negative, post.prob_zero)
        out.result = pd.DataFrame({
            "betahat": bhat, "sebetahat": s_orig,
            "NegativeProb": post.prob_negative, "PositiveProb": post.prob_positive,
            "lfsr": lfsr, "svalue": qval_from_lfdr(lfsr), "lfdr": post.prob_zero,
            "qvalue": qval_from_lfdr(post.prob_zero),
            "PosteriorMean": post.mean * scale, "PosteriorSD": post.sd * scale})
    return out


def _loglik_matrix(g, x, s, df):
    """Component log-likelihoods: normal likelihood, or t with ``df`` (uniform components)."""
    if df is None:
        return g.loglik_matrix(x, s)
    from .mixdist_t import t_unimix_loglik_matrix

    return t_unimix_loglik_matrix(x, s, g.a, g.b, df)


def _with_pi(g, pi):
    """``g`` with new mixture weights."""
    import dataclasses

    return dataclasses.replace(g, pi=pi)


def _estimate_mixprop(loglik_matrix, prior, pi_init, optmethod, control):
    """ashr ``estimate_mixprop``: row-max-normalised likelihoods, zero-column drop, the
    null shortcut (P9), then mixSQP (init all ones) or mixEM."""
    ll = loglik_matrix
    L = np.exp(ll - ll.max(axis=1, keepdims=True))
    n, k = L.shape
    # null shortcut: pi = e_1 is optimal when the KKT gradient condition holds there
    if k > 1 and np.max(prior[1:]) <= 1:
        L1 = L[:, 0]
        L1 = np.where(L1 < 1e-99, L1 + 1e-99, L1)
        crit = n - (L / L1[:, None]).sum(axis=0) + prior[0] - 1
        if np.min(crit) >= 0:
            pi = np.zeros(k)
            pi[0] = 1.0
            return pi, True
    keep = ~((L.max(axis=0) == 0) & (prior <= 1))
    pi = np.zeros(k)
    if optmethod == "mixSQP":
        p, conv = mix_sqp(L[:, keep], prior[keep], np.ones(int(keep.sum())), control)
    else:
        p, conv = mix_em(L[:, keep], prior[keep], pi_init[keep] / pi_init[keep].sum(), control)
    pi[keep] = np.maximum(p, 0.0)
    return pi, conv


# ------------------------------------------------------------------ mash_1by1
class Mash1by1Result(dict):
    """Output of :func:`mash_1by1` (R's list): keys / attributes ``result`` (dict of J x R
    DataFrames "PosteriorMean", "PosteriorSD", "lfsr"), ``loglik`` (summed ash
    log-likelihoods) and ``alpha``. A dict, so ``mashlib.model.summaries`` accessors
    (``get_lfsr``, ``get_significant_results``) accept it like R's ``m$result``."""

    def __init__(self, result: dict, loglik: float, alpha: float = 0.0):
        super().__init__(result=result, loglik=float(loglik), alpha=float(alpha))

    @property
    def result(self) -> dict:
        return self["result"]

    @property
    def loglik(self) -> float:
        return self["loglik"]

    @property
    def alpha(self) -> float:
        return self["alpha"]


def mash_1by1(data, alpha=0.0, **ash_kwargs):
    """Condition-by-condition ash (mashr ``mash_1by1``).

    Runs :func:`ash` with ``mixcompdist="normal"`` on each column of ``data.Bhat`` /
    ``data.Shat`` (the data as given to ``mash_set_data``), typically to pick the strong
    set via ``get_significant_results`` (lfsr < 0.05).

    Parameters
    ----------
    data : MashData or any object with ``Bhat``, ``Shat`` (J x R) and optionally
        ``conditions`` / ``row_ids``.
    alpha : float
    **ash_kwargs
        Passed to :func:`ash`.

    Returns
    -------
    Mash1by1Result
        ``result["PosteriorMean"|"PosteriorSD"|"lfsr"]`` (J x R DataFrames), ``loglik``
        (sum of the per-condition ash log-likelihoods).
    """
    B = getattr(data, "Bhat", None)
    S = getattr(data, "Shat", None)
    if B is None or S is None:
        raise MashInputError("mash_1by1: argument 'data' must have Bhat and Shat (J x R); "
                             "build it with mash_set_data(Bhat, Shat).")
    cols = getattr(data, "conditions", None)
    rows = getattr(data, "row_ids", None)
    if isinstance(B, pd.DataFrame):
        cols = cols if cols is not None else list(B.columns)
        rows = rows if rows is not None else list(B.index)
    B = np.asarray(B, float)
    S = np.asarray(S, float)
    if B.ndim != 2 or B.shape != S.shape:
        raise MashInputError(f"mash_1by1: data.Bhat {B.shape} and data.Shat {S.shape} must be "
                             "matrices of the same shape.")
    J, R = B.shape
    pm, psd, lfsr = np.empty((J, R)), np.empty((J, R)), np.empty((J, R))
    loglik = 0.0
    for r in range(R):  # one ash fit per condition (R is small)
        a = ash(B[:, r], S[:, r], mixcompdist="normal", alpha=alpha, **ash_kwargs)
        pm[:, r], psd[:, r], lfsr[:, r] = a.get_pm(), a.get_psd(), a.get_lfsr()
        loglik += a.loglik
    cols = list(cols) if cols is not None else None
    rows = list(rows) if rows is not None else None
    res = {name: pd.DataFrame(v, index=rows, columns=cols)
           for name, v in (("PosteriorMean", pm), ("PosteriorSD", psd), ("lfsr", lfsr))}
    return Mash1by1Result(result=res, loglik=loglik, alpha=alpha)
