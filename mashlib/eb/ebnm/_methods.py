r"""Methods on a fitted ebnm result (R's S3 methods for class ``ebnm``) and ``ebnm_check_fn``.

``confint``
    For each :math:`\theta_i`, the narrowest interval :math:`[a_i, b_i]` holding at least a fraction
    ``level`` of ``nsim`` posterior draws (a Monte Carlo highest-posterior-density interval, as ebnm):
    with sorted draws :math:`\theta_{(1)} \le \dots \le \theta_{(N)}` and :math:`m = \lceil
    \text{level}\cdot N\rceil`, the window :math:`[\theta_{(j)}, \theta_{(j+m-1)}]` of least width.
``quantile``
    Posterior quantiles from ``nsim`` draws (R's type-7 interpolation).
``predict``
    Posteriors for new data under the fitted prior (``fix_g=True``).
``logLik`` / ``nobs`` / ``summary`` / ``plot``
    The log-likelihood (a float carrying ``df`` and ``nobs``), the number of observations, a printable
    summary and the shrinkage plot (posterior mean against ``x``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._errors import MashInputError

__all__ = ["LogLik", "EbnmSummary", "confint", "quantile", "predict", "log_lik", "nobs", "summary", "plot",
           "ebnm_check_fn", "prior_df"]


#: what flash asks of an ebnm function (the same tuple as ``_core.FLASH_OUTPUT``; this module
#: does not import ``_core``, which calls into it)
FLASH_OUTPUT = ("posterior_mean", "posterior_second_moment", "fitted_g", "log_likelihood")


class LogLik(float):
    """A log-likelihood value with ``df`` (free prior parameters) and ``nobs`` (R's ``logLik`` class)."""

    df: int | None
    nobs: int | None

    def __new__(cls, value, df=None, nobs=None):
        obj = super().__new__(cls, value)
        obj.df = df
        obj.nobs = nobs
        return obj

    def __repr__(self):
        return f"'log Lik.' {float(self):.6g} (df={self.df})"


def prior_df(g) -> int | None:
    """Number of free parameters of a fitted prior (non-zero mixture weights - 1, or the family's count)."""
    if g is None:
        return None
    if isinstance(g, dict):
        dfs = [prior_df(v) for v in g.values()]
        return None if any(d is None for d in dfs) else int(sum(dfs))
    name = type(g).__name__
    if name in ("PointNormal", "PointLaplace", "PointExponential"):
        return 2
    name = type(g).__name__
    if name == "Horseshoe":
        return 1
    pi = getattr(g, "pi", None)
    if pi is None:
        return None
    pi = np.atleast_1d(np.asarray(pi, float))
    sd = np.atleast_1d(np.asarray(getattr(g, "sd", np.zeros(pi.size)), float))
    if pi.size == 1 and (sd[0] == 0 or np.isinf(sd[0])):
        return 0  # point mass or flat
    return int(np.count_nonzero(pi > 0) - 1)


def _draws(res, nsim, seed, parm):
    nsim = int(nsim)
    if nsim < 2:
        raise MashInputError(f"nsim={nsim} must be an integer >= 2")
    samp = res.posterior_sampler(nsim, seed=seed)
    if parm is not None:
        idx = np.atleast_1d(np.asarray(parm))
        n = samp.shape[1]
        if idx.dtype.kind not in "iu" or np.any(idx < 0) or np.any(idx >= n):
            raise MashInputError(f"parm must be 0-based integer indices in [0, {n}); got {parm!r}")
        samp = samp[:, idx]
    return samp


def confint(res, parm=None, level=0.95, nsim=1000, seed=None):
    """Monte Carlo highest-posterior-density intervals: an (n, 2) array (columns CI.lower, CI.upper)."""
    if not (0 < float(level) < 1):
        raise MashInputError(f"confint: level={level!r} must be in (0, 1)")
    samp = np.sort(_draws(res, nsim, seed, parm), axis=0)
    N = samp.shape[0]
    m = int(np.ceil(float(level) * N))
    width = samp[m - 1:] - samp[:N - m + 1]
    j = np.argmin(width, axis=0)
    cols = np.arange(samp.shape[1])
    return np.column_stack([samp[j, cols], samp[j + m - 1, cols]])


def quantile(res, probs=(0.0, 0.25, 0.5, 0.75, 1.0), parm=None, nsim=1000, seed=None):
    """Posterior quantiles from draws: an (n, len(probs)) array."""
    probs = np.atleast_1d(np.asarray(probs, float))
    if np.any((probs < 0) | (probs > 1)):
        raise MashInputError(f"quantile: probs must lie in [0, 1]; got {probs.tolist()}")
    return np.quantile(_draws(res, nsim, seed, parm), probs, axis=0).T


def predict(res, x, s=1, output=None):
    """Posteriors for new observations ``(x, s)`` under the fitted prior (``fix_g=True``)."""
    if res.fitted_g is None:
        raise MashInputError("predict: this result has no fitted_g; fit with 'fitted_g' in output")
    if isinstance(res.fitted_g, dict):
        raise MashInputError("predict: an ebnm_group fit has one prior per group; call ebnm_group with "
                             "g_init=fit.fitted_g, fix_g=True and the new groups")
    kw = {} if output is None else {"output": output}
    return _family_fn(res)(x, s, g_init=res.fitted_g, fix_g=True, **kw)


def _family_fn(res):
    """The ``ebnm_<family>`` function that produced ``res``."""
    from . import _registry

    name = f"ebnm_{res.prior_family}"
    if name not in _registry.MODULES:
        raise MashInputError(f"predict: unknown prior family {res.prior_family!r}")
    return _registry.lookup(name)


def _n(res):
    if res.data is not None:
        return int(len(res.data))
    if res.posterior_arrays:
        return int(next(iter(res.posterior_arrays.values())).size)
    return None


def nobs(res) -> int:
    """Number of observations (R's ``nobs``)."""
    n = _n(res)
    if n is None:
        raise MashInputError("nobs: this result holds neither data nor posteriors; fit with 'data' in output")
    return n


def log_lik(res) -> LogLik:
    """The log-likelihood as a :class:`LogLik` (``df`` = :func:`prior_df`, ``nobs``)."""
    if res.log_likelihood is None:
        raise MashInputError("logLik: no log-likelihood (not requested in output, or the flat family, whose "
                             "marginal likelihood is not defined)")
    return LogLik(res.log_likelihood, prior_df(res.fitted_g), _n(res))


@dataclass
class EbnmSummary:
    """What ``summary(fit)`` prints: family, number of observations, log-likelihood, prior."""

    prior_family: str
    nobs: int | None
    log_likelihood: float | None
    df: int | None
    fitted_g: object
    posterior_columns: list

    def __str__(self):
        ll = "NA" if self.log_likelihood is None else f"{self.log_likelihood:.6g} (df = {self.df})"
        return (f"ebnm fit, prior family: {self.prior_family}\n  observations: {self.nobs}\n"
                f"  log-likelihood: {ll}\n  fitted prior: {self.fitted_g!r}\n"
                f"  posterior summaries: {', '.join(self.posterior_columns) or 'none'}")


def summary(res) -> EbnmSummary:
    return EbnmSummary(res.prior_family, _n(res), res.log_likelihood, prior_df(res.fitted_g), res.fitted_g,
                       list(res.posterior_arrays))


def plot(res, x=None, ax=None, incl_cdf=False, **scatter_kw):
    """Shrinkage plot: posterior mean against the observation (R's ``plot.ebnm``); returns the Axes.

    ``incl_cdf=True`` adds a second panel with the fitted prior's cdf (from 2,000 prior draws).
    """
    import matplotlib.pyplot as plt

    pm = res.posterior_mean
    if pm is None:
        raise MashInputError("plot: this result has no posterior means; fit with 'posterior_mean' in output")
    if x is None:
        if res.data is None:
            raise MashInputError("plot: pass x (the observations) or fit with 'data' in output")
        x = res.data["x"].to_numpy()
    x = np.asarray(x, float)
    if ax is None:
        _, axes = plt.subplots(1, 2 if incl_cdf else 1, figsize=(9 if incl_cdf else 5, 4), squeeze=False)
        ax = axes[0, 0]
        cdf_ax = axes[0, 1] if incl_cdf else None
    else:
        cdf_ax = None
    ax.scatter(x, pm, s=scatter_kw.pop("s", 8), **scatter_kw)
    lim = [float(np.min(x)), float(np.max(x))]
    ax.plot(lim, lim, ls="--", c="grey", lw=0.8)
    ax.set_xlabel("observation x")
    ax.set_ylabel("posterior mean")
    ax.set_title(f"ebnm ({res.prior_family})")
    if cdf_ax is not None:
        draws = np.sort(res.posterior_sampler(2000, seed=1)[:, 0]) if res.data is None else None
        prior = _family_fn(res)(np.zeros(1), np.inf, g_init=res.fitted_g, fix_g=True,
                                output=("posterior_sampler",)) if draws is None else None
        d = np.sort(prior.posterior_sampler(2000, seed=1)[:, 0]) if prior is not None else draws
        cdf_ax.step(d, np.arange(1, d.size + 1) / d.size, where="post")
        cdf_ax.set_xlabel("theta")
        cdf_ax.set_ylabel("prior cdf")
    return ax


def ebnm_check_fn(fn, x, s):
    """Check that a custom function can serve as flash's ``ebnm_fn`` (ebnm's ``ebnm_check_fn``).

    ``fn(x, s, g_init=None, fix_g=False, output=...)`` must return an object with ``posterior``
    (``mean`` and ``second_moment``, one per observation), ``fitted_g`` and a finite
    ``log_likelihood``, and accept its own ``fitted_g`` back with ``fix_g=True``.

    Returns
    -------
    True
        Raises :class:`~mashlib.MashInputError` naming the first failed check otherwise.
    """
    x = np.asarray(x, float).ravel()
    n = x.size
    try:
        res = fn(x, s, g_init=None, fix_g=False, output=FLASH_OUTPUT)
    except Exception as e:  # noqa: BLE001 - report what the user's function raised
        raise MashInputError(f"ebnm_check_fn: fn(x, s, g_init=None, fix_g=False, output=...) raised "
                             f"{type(e).__name__}: {e}") from e
    for field in ("posterior", "fitted_g", "log_likelihood"):
        if not hasattr(res, field):
            raise MashInputError(f"ebnm_check_fn: the result has no '{field}'; return an EbnmResult-like object")
    post = res.posterior
    for col in ("mean", "second_moment"):
        try:
            v = np.asarray(post[col], float)
        except Exception as e:  # noqa: BLE001
            raise MashInputError(f"ebnm_check_fn: posterior has no '{col}' column") from e
        if v.shape != (n,) or not np.all(np.isfinite(v)):
            raise MashInputError(f"ebnm_check_fn: posterior '{col}' must be {n} finite values, got shape {v.shape}")
    if res.log_likelihood is None or not np.isfinite(float(res.log_likelihood)):
        raise MashInputError("ebnm_check_fn: log_likelihood must be one finite number")
    try:
        res2 = fn(x, s, g_init=res.fitted_g, fix_g=True, output=FLASH_OUTPUT)
    except Exception as e:  # noqa: BLE001
        raise MashInputError(f"ebnm_check_fn: fn(..., g_init=fitted_g, fix_g=True) raised {type(e).__name__}: "
                             f"{e}; the function must accept its own fitted_g back") from e
    if not np.isclose(float(res2.log_likelihood), float(res.log_likelihood), rtol=1e-6, atol=1e-6):
        raise MashInputError("ebnm_check_fn: with g_init = its own fitted_g and fix_g=True the function returned "
                             f"log_likelihood {float(res2.log_likelihood)} instead of {float(res.log_likelihood)}")
    return True
