"""Shared pieces of the ebnm port: result object, prior classes, input checks.

The empirical Bayes normal means (EBNM) problem (Willwerscheid, Carbonetto &
Stephens, *ebnm: An R Package for Solving the Empirical Bayes Normal Means
Problem*) is

.. math::

    x_i \\mid \\theta_i \\sim N(\\theta_i, s_i^2), \\qquad \\theta_i \\sim g \\in \\mathcal{G},

solved by :math:`\\hat g = \\arg\\max_{g\\in\\mathcal G} \\sum_i \\log \\int N(x_i; \\theta, s_i^2)\\,g(d\\theta)`
followed by the posteriors :math:`p(\\theta_i \\mid x_i, \\hat g)`.

This module holds what every family shares (map §2.7 "Common interface"):
the :class:`EbnmResult`, the fitted-prior classes, the ``output`` names and
the argument checks. Family code lives in ``ebnm_parametric.py`` /
``ebnm_families.py`` and ``ebnm_nonparametric.py``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import optimize
from scipy import special as sc

from ..._errors import MashInputError

__all__ = [
    "EbnmResult",
    "PointNormal",
    "PointLaplace",
    "PointExponential",
    "NormalMix",
    "UniMix",
    "OUTPUT_NAMES",
    "DEFAULT_OUTPUT",
    "OUTPUT_ALL",
    "FLASH_OUTPUT",
]

#: every name accepted in ``output`` (ebnm's ``ebnm_output_all()`` plus the second moment)
OUTPUT_NAMES = (
    "data",
    "posterior_mean",
    "posterior_sd",
    "posterior_second_moment",
    "lfsr",
    "fitted_g",
    "log_likelihood",
    "posterior_sampler",
)
#: ebnm's ``ebnm_output_default()``
DEFAULT_OUTPUT = ("data", "posterior_mean", "posterior_sd", "fitted_g", "log_likelihood")
#: ebnm's ``ebnm_output_all()``
OUTPUT_ALL = OUTPUT_NAMES
#: the fast path used by flash: no sd, no lfsr, no data copy
FLASH_OUTPUT = ("posterior_mean", "posterior_second_moment", "fitted_g", "log_likelihood")


# --------------------------------------------------------------------------- priors
@dataclass(frozen=True)
class PointNormal:
    r"""Point-normal prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)N(\mu, \sigma^2)`.

    Attributes
    ----------
    pi0 : float
        Weight of the point mass.
    mean : float
        Location :math:`\mu` of both the point mass and the normal.
    sd : float
        Standard deviation :math:`\sigma` of the normal component.
    """

    pi0: float
    mean: float
    sd: float

    @property
    def pi(self) -> np.ndarray:
        """Mixture weights as R's ``normalmix``: ``(pi0, 1 - pi0)``."""
        return np.array([self.pi0, 1.0 - self.pi0])

    def to_normalmix(self) -> "NormalMix":
        """The same prior as a two-component :class:`NormalMix` (sd ``(0, sd)``)."""
        return NormalMix(self.pi, np.array([self.mean, self.mean]), np.array([0.0, self.sd]))


@dataclass(frozen=True)
class PointLaplace:
    r"""Point-Laplace prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)\,\mathrm{Laplace}(\mu, b)`.

    The Laplace density is :math:`\frac{1}{2b}e^{-|\theta-\mu|/b}`; ``scale`` is :math:`b`
    (R's ``laplacemix`` ``scale``; the rate is :math:`a = 1/b`).
    """

    pi0: float
    mean: float
    scale: float

    @property
    def pi(self) -> np.ndarray:
        return np.array([self.pi0, 1.0 - self.pi0])


@dataclass(frozen=True)
class PointExponential:
    r"""Point-exponential prior :math:`g = \pi_0\delta_\mu + (1-\pi_0)\,(\mu + \mathrm{Exp}(1/b))`.

    The slab density is :math:`\frac{1}{b}e^{-(\theta-\mu)/b}` on :math:`\theta \ge \mu`;
    ``scale`` is :math:`b` (R's ``gammamix`` with shape 1, ``scale = c(0, b)``,
    ``shift = mode``).
    """

    pi0: float
    mode: float
    scale: float

    @property
    def pi(self) -> np.ndarray:
        return np.array([self.pi0, 1.0 - self.pi0])

    @property
    def shift(self) -> np.ndarray:
        return np.array([self.mode, self.mode])


# NormalMix(pi, mean, sd) and UniMix(pi, a, b) are the classes of mashlib.eb (ashr's
# normalmix / unimix), so ash and ebnm priors are interchangeable (g_init, fix_g).
from .._ash import NormalMix, UniMix  # noqa: E402


# --------------------------------------------------------------------------- result
@dataclass
class EbnmResult:
    """Result of an ``ebnm_*`` call (R class ``ebnm``).

    Attributes
    ----------
    fitted_g : prior object or None
        :class:`PointNormal`, :class:`PointLaplace`, :class:`PointExponential`,
        :class:`NormalMix` or :class:`UniMix`.
    log_likelihood : float or None
        :math:`\\sum_i \\log \\int N(x_i;\\theta,s_i^2)\\,\\hat g(d\\theta)` over observations
        with finite ``s`` (those with ``s = inf`` contribute 0).
    posterior_arrays : dict
        ``mean``, ``sd``, ``second_moment``, ``lfsr`` as ndarrays (only those requested).
    data : pandas.DataFrame or None
        ``x`` and ``s`` as passed (when ``"data"`` is in ``output``).
    prior_family : str
    """

    fitted_g: Any = None
    log_likelihood: float | None = None
    posterior_arrays: dict = field(default_factory=dict)
    data: Any = None
    prior_family: str = ""
    _sampler: Callable | None = field(default=None, repr=False)
    _posterior_df: Any = field(default=None, repr=False)

    @property
    def posterior(self):
        """pandas DataFrame with columns among ``mean, sd, second_moment, lfsr`` (or None)."""
        if not self.posterior_arrays:
            return None
        if self._posterior_df is None:
            import pandas as pd

            self._posterior_df = pd.DataFrame(self.posterior_arrays)
        return self._posterior_df

    @property
    def posterior_mean(self) -> np.ndarray | None:
        return self.posterior_arrays.get("mean")

    @property
    def posterior_second_moment(self) -> np.ndarray | None:
        return self.posterior_arrays.get("second_moment")

    def posterior_sampler(self, nsamp: int, seed=None) -> np.ndarray:
        """Draw ``nsamp`` samples from every posterior: an ``(nsamp, n)`` array.

        Parameters
        ----------
        nsamp : int
            Number of draws per observation.
        seed : int, numpy Generator or None
            Passed to :func:`numpy.random.default_rng`.
        """
        if self._sampler is None:
            raise MashInputError("posterior_sampler: this result was computed without a fitted prior; "
                                 "call ebnm again with 'fitted_g' in output")
        nsamp = int(nsamp)
        if nsamp < 1:
            raise MashInputError(f"posterior_sampler: nsamp={nsamp} must be a positive integer")
        return self._sampler(nsamp, np.random.default_rng(seed))

    # R's S3 methods for class "ebnm" (implemented in mashlib.eb.ebnm._methods)
    def confint(self, parm=None, level=0.95, nsim=1000, seed=None):
        """Monte Carlo HPD intervals, (n, 2); see :func:`mashlib.eb.ebnm._methods.confint`."""
        from ._methods import confint

        return confint(self, parm=parm, level=level, nsim=nsim, seed=seed)

    def quantile(self, probs=(0.0, 0.25, 0.5, 0.75, 1.0), parm=None, nsim=1000, seed=None):
        """Posterior quantiles from draws, (n, len(probs)); see :func:`mashlib.eb.ebnm._methods.quantile`."""
        from ._methods import quantile

        return quantile(self, probs=probs, parm=parm, nsim=nsim, seed=seed)

    def predict(self, x, s=1, output=None):
        """Posteriors of new data under the fitted prior (an EbnmResult)."""
        from ._methods import predict

        return predict(self, x, s, output)

    def logLik(self):
        """The log-likelihood with ``df`` and ``nobs`` attributes (:class:`mashlib.eb.ebnm._methods.LogLik`)."""
        from ._methods import log_lik

        return log_lik(self)

    def nobs(self):
        """Number of observations."""
        from ._methods import nobs

        return nobs(self)

    def summary(self):
        """A printable :class:`mashlib.eb.ebnm._methods.EbnmSummary`."""
        from ._methods import summary

        return summary(self)

    def coef(self):
        """Posterior means (R's ``coef.ebnm``)."""
        return self.posterior_mean

    def plot(self, x=None, ax=None, incl_cdf=False, **kw):
        """Shrinkage plot (posterior mean against x); returns the matplotlib Axes."""
        from ._methods import plot

        return plot(self, x=x, ax=ax, incl_cdf=incl_cdf, **kw)


# --------------------------------------------------------------------------- checks
def check_output(output) -> frozenset:
    """Validate ``output`` (an iterable of :data:`OUTPUT_NAMES`) and return it as a set."""
    if isinstance(output, str):
        output = (output,)
    out = frozenset(output)
    bad = sorted(out - set(OUTPUT_NAMES))
    if bad:
        raise MashInputError(f"output: unknown entries {bad}; valid names are {list(OUTPUT_NAMES)}")
    return out


def check_xs(x, s, fname: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and broadcast the data (map §2.7 "Argument checks").

    ``x`` must be finite; ``s`` a scalar or length-n vector, no NaN, ``s >= 0``
    (``s = inf`` marks a missing observation: it is left out of the fit and gets
    the prior as posterior). ``s = 0`` is replaced, as in ebnm, by
    ``min(min positive s, (max x - min x) * sqrt(eps))`` with a warning.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        x = x.ravel()
    n = x.size
    if n == 0:
        raise MashInputError(f"{fname}: x is empty; pass at least one observation")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise MashInputError(f"{fname}: x[{bad[0]}] = {x[bad[0]]} is not finite ({bad.size} such entries); "
                             "remove missing observations or give them x = 0 and s = inf")
    s = np.asarray(s, dtype=float)
    if s.ndim == 0 or s.size == 1:
        s = np.full(n, float(s.ravel()[0]))
    else:
        s = s.ravel()
        if s.size != n:
            raise MashInputError(f"{fname}: s has length {s.size} but x has length {n}; "
                                 "pass a scalar s or one standard error per observation")
    bad = np.flatnonzero(np.isnan(s) | (s < 0))
    if bad.size:
        raise MashInputError(f"{fname}: s[{bad[0]}] = {s[bad[0]]} is not a non-negative standard error "
                             f"({bad.size} such entries); standard errors must be >= 0 (use inf for missing)")
    zero = s == 0
    if zero.any():
        pos = s[(s > 0) & np.isfinite(s)]
        tiny = (x.max() - x.min()) * np.sqrt(np.finfo(float).eps)
        if pos.size:
            tiny = min(pos.min(), tiny) if tiny > 0 else pos.min()
        if not tiny > 0:
            tiny = np.sqrt(np.finfo(float).eps)
        warnings.warn(f"{fname}: {int(zero.sum())} standard errors equal to 0 were replaced by {tiny:.3g} "
                      "(as ebnm does)", RuntimeWarning, stacklevel=3)
        s = s.copy()
        s[zero] = tiny
    return x, s


def check_fix_g(fix_g, g_init, fname: str) -> None:
    """``fix_g=True`` needs the prior to keep: ``g_init`` (the fitted_g of an earlier fit)."""
    if fix_g and g_init is None:
        raise MashInputError(f"{fname}: fix_g=True needs g_init; pass the fitted_g of an earlier fit")


def check_mode(mode, fname: str):
    """Return ``None`` for ``mode="estimate"`` or the fixed mode as float."""
    if isinstance(mode, str):
        if mode != "estimate":
            raise MashInputError(f"{fname}: mode={mode!r} is not understood; pass a number or 'estimate'")
        return None
    m = float(mode)
    if not np.isfinite(m):
        raise MashInputError(f"{fname}: mode={mode} must be finite (or 'estimate')")
    return m


def check_scale(scale, fname: str):
    """Return ``None`` for ``scale="estimate"`` or the fixed scale as positive float."""
    if isinstance(scale, str):
        if scale != "estimate":
            raise MashInputError(f"{fname}: scale={scale!r} is not understood; pass a number or 'estimate'")
        return None
    sc_ = np.asarray(scale, dtype=float).ravel()
    if sc_.size != 1 or not (np.isfinite(sc_[0]) and sc_[0] > 0):
        raise MashInputError(f"{fname}: scale={scale} must be one positive finite number for this family "
                             "(or 'estimate')")
    return float(sc_[0])


# --------------------------------------------------------------------------- mixture-family fit helpers
def fit_mode(fit_at, xf, mode_val):
    r"""The fixed mode, or (``mode_val is None``) the one maximising ``fit_at(mu)[0]``.

    The log-likelihood is maximised over :math:`[\min x, \max x]` (finite-s
    observations ``xf``) by bounded Brent, as ebnm's ``optimize`` for the mode.
    """
    if mode_val is not None:
        return mode_val
    res = optimize.minimize_scalar(lambda m: -fit_at(m)[0], bounds=(xf.min(), xf.max()), method="bounded")
    return float(res.x)


def drop_lfsr_off_zero(need: set, centre: float, fname: str, stacklevel: int) -> set:
    """``need`` without ``lfsr`` (and a warning) when the mode is not zero, as ebnm.

    ``stacklevel`` is the caller's, as it would pass to :func:`warnings.warn`.
    """
    if "lfsr" in need and centre != 0:
        warnings.warn(f"{fname}: lfsr is not returned when the mode is not zero (as ebnm)", RuntimeWarning,
                      stacklevel=stacklevel + 1)
        return need - {"lfsr"}
    return need


def set_posterior(result: EbnmResult, post: dict, fin: np.ndarray, n: int, prior_values: Callable[[], dict]):
    """Store posterior summaries (computed on the finite-s rows ``fin``) in ``result``.

    Rows with infinite s get the prior's summaries, ``prior_values()`` (name -> scalar,
    called only when there are such rows); columns in the order mean, sd,
    second_moment, lfsr.
    """
    if not fin.all():
        prior = prior_values()
        full = {k: np.full(n, prior[k]) for k in post}
        for k in full:
            full[k][fin] = post[k]
        post = full
    order = [k for k in ("mean", "sd", "second_moment", "lfsr") if k in post]
    result.posterior_arrays = {k: post[k] for k in order}


# --------------------------------------------------------------------------- numerics
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_LOG_2PI = np.log(2.0 * np.pi)


def mills(z: np.ndarray) -> np.ndarray:
    r"""Inverse Mills ratio :math:`M(z) = \phi(z)/\Phi(z)`, stable for all z.

    Uses :math:`M(z) = \sqrt{2/\pi}\,/\,\mathrm{erfcx}(-z/\sqrt 2)`; for large
    positive z the erfcx overflows to inf and M -> 0 correctly.
    """
    with np.errstate(over="ignore"):
        return _SQRT_2_OVER_PI / sc.erfcx(-np.asarray(z) / np.sqrt(2.0))


def trunc_pos_moments(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""First two moments of :math:`N(m, s^2)` truncated to :math:`[0, \infty)`.

    With :math:`z = m/s` and :math:`M = \phi(z)/\Phi(z)`,

    .. math::

        E = s\,(z + M(z)), \qquad E_2 = s^2\,(1 + z^2 + z M(z)) = s^2 (1 + z(z + M)).

    Both brackets cancel catastrophically for :math:`z \to -\infty`. There, with
    :math:`t = -z`, :math:`u = 1/t^2` and the asymptotic Mills series
    :math:`S = t\bar\Phi(t)/\phi(t) = \sum_{k\ge0} (-1)^k (2k-1)!!\,u^k`,
    :math:`z + M = tD/S` with :math:`D = 1 - S`, and
    :math:`1 + z(z+M) = (S - t^2D)/S` with
    :math:`S - t^2 D = \sum_{k\ge1} (-1)^{k+1}\,2k\,(2k-1)!!\,u^k`; 11 terms are accurate to ~1e-10
    for :math:`t > 10`. ``s = 0`` gives the point mass at :math:`\max(m, 0)`.
    """
    m = np.asarray(m, dtype=float)
    s = np.asarray(s, dtype=float)
    m, s = np.broadcast_arrays(m, s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = m / s
        M = mills(z)
        zm = z + M
        e2b = 1.0 + z * zm
        far = z < -10.0
        if far.any():
            t = -z[far]
            u = 1.0 / (t * t)
            S = np.ones_like(t)
            D = np.zeros_like(t)
            N2 = np.zeros_like(t)
            dfact = 1.0  # (2k-1)!!
            uk = np.ones_like(t)
            for k in range(1, 12):
                dfact *= 2 * k - 1
                uk = uk * u
                term = (-1.0) ** k * dfact * uk
                S += term
                D -= term
                N2 += (-1.0) ** (k + 1) * 2 * k * dfact * uk
            zm[far] = t * D / S
            e2b[far] = N2 / S
        E = s * zm
        E2 = s * s * e2b
    zero_s = s == 0
    if zero_s.any():
        E = np.where(zero_s, np.maximum(m, 0.0), E)
        E2 = np.where(zero_s, np.maximum(m, 0.0) ** 2, E2)
    return E, np.maximum(E2, E * E)


def logit(p: float) -> float:
    """log(p / (1 - p)) with the boundaries mapped to -inf / inf."""
    with np.errstate(divide="ignore"):
        return float(np.log(p) - np.log1p(-p))
