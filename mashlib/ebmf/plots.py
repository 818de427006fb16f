"""Plots of a flash fit (flashier's ``plot.flash`` and the vignette's interval plot).

Values are those of ``ldf(fit, type="i")``: each factor / loading column
scaled so that its largest absolute entry is 1. Every function returns a
:class:`matplotlib.figure.Figure` (created without pyplot, so no display is
needed); save it with ``fig.savefig(...)``.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _kset(fit, kset, order_by_pve):
    if fit.n_factors == 0:
        raise MashInputError("fit: the flash fit has no factors to plot.")
    ks = list(range(fit.n_factors)) if kset is None else [int(k) for k in np.atleast_1d(kset)]
    if any(k < 0 or k >= fit.n_factors for k in ks):
        raise MashInputError(f"kset: factor indices must lie in 0..{fit.n_factors - 1} (0-based).")
    if order_by_pve:
        pve = fit.pve
        ks = sorted(ks, key=lambda k: -pve[k])
    return ks


def _values(fit, pm_which):
    if pm_which not in ("factors", "loadings"):
        raise MashInputError(f"pm_which: {pm_which!r} is not 'factors' or 'loadings'.")
    L, _, F = fit.ldf("i")
    if pm_which == "factors":
        return F, fit.col_names
    return L, fit.row_names


def _colors(colors, names, size):
    if colors is None:
        return ["#4472c4"] * size
    if hasattr(colors, "reindex") and names is not None:
        vals = colors.reindex(names)
        return [c if isinstance(c, str) else "#808080" for c in vals]
    colors = list(colors)
    if len(colors) != size:
        raise MashInputError(f"pm_colors: {len(colors)} colours for {size} entries.")
    return colors


def plot_scree(fit, kset=None, order_by_pve=False):
    """Proportion of variance explained per factor, on a log10 axis."""
    ks = _kset(fit, kset, order_by_pve)
    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    pve = fit.pve[ks]
    ax.plot(np.arange(1, len(ks) + 1), pve, "o-", color="black")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(1, len(ks) + 1), [str(k + 1) for k in ks])
    ax.set_xlabel("factor")
    ax.set_ylabel("PVE")
    ax.set_title("Scree plot")
    return fig


def plot_bar(fit, kset=None, pm_which="factors", pm_colors=None, order_by_pve=True, ncol=1, intervals=None):
    """One bar chart per factor (entries coloured per condition, e.g. ``gtex_colors()``).

    ``intervals`` (optional) is a dict ``k -> (lower, upper)`` of arrays drawn as
    error bars (see :func:`plot_intervals`).
    """
    ks = _kset(fit, kset, order_by_pve)
    vals, names = _values(fit, pm_which)
    size = vals.shape[0]
    cols = _colors(pm_colors, names, size)
    nrow = int(np.ceil(len(ks) / ncol))
    fig = _figure(max(6, 0.18 * size * ncol), 1.8 * nrow + 1.2)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True)
    x = np.arange(size)
    for i, k in enumerate(ks):
        ax = axes[i // ncol][i % ncol]
        ax.bar(x, vals[:, k], color=cols, width=0.8)
        if intervals is not None and k in intervals:
            lo, hi = intervals[k]
            ax.vlines(x, lo, hi, color="black", lw=0.8)
            ax.hlines(np.concatenate([lo, hi]), np.tile(x - 0.2, 2), np.tile(x + 0.2, 2), color="black", lw=0.8)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel(f"k={k + 1}\nPVE {fit.pve[k]:.3f}", fontsize=8)
    for j in range(len(ks), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    bottom = axes[-1][0]
    if names is not None and size <= 100:
        for c in range(ncol):
            axes[-1][c].set_xticks(x, names, rotation=90, fontsize=6)
    else:
        bottom.set_xlabel("index")
    return fig


def plot_heatmap(fit, kset=None, pm_which="loadings", order_by_pve=True, max_rows=2000):
    """Heatmap (dark red / white / dark blue on [-1, 1]) of loadings or factors."""
    from matplotlib.colors import LinearSegmentedColormap

    ks = _kset(fit, kset, order_by_pve)
    vals, names = _values(fit, pm_which)
    M = vals[:, ks]
    if M.shape[0] > max_rows:
        M = M[np.linspace(0, M.shape[0] - 1, max_rows).astype(int)]
    cmap = LinearSegmentedColormap.from_list("flash", ["darkred", "white", "darkblue"])
    fig = _figure(1.0 + 0.5 * len(ks), 6)
    ax = fig.add_subplot()
    im = ax.imshow(M, aspect="auto", cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(np.arange(len(ks)), [str(k + 1) for k in ks])
    ax.set_xlabel("factor")
    ax.set_ylabel(pm_which)
    if names is not None and M.shape[0] <= 60:
        ax.set_yticks(np.arange(M.shape[0]), names[: M.shape[0]], fontsize=6)
    else:
        ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.6)
    return fig


def sample_intervals(fit, k, nsamp=200, level=0.95, pm_which="factors", rng=1):
    """Sampler-based intervals for factor ``k`` scaled as the vignette does.

    Each draw of the factor (or loading) column is divided by its max-abs
    value; the (1 - level)/2 and (1 + level)/2 quantiles over draws are
    returned as (lower, upper).
    """
    key = "F" if pm_which == "factors" else "L"
    draws = np.array([d[key][:, k] for d in fit.sampler(nsamp, rng=rng)])
    mx = np.max(np.abs(draws), axis=1, keepdims=True)
    draws = draws / np.where(mx > 0, mx, 1.0)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [a, 1.0 - a], axis=0)
    return lo, hi


def plot_intervals(fit, k, pm_colors=None, nsamp=200, level=0.95, rng=1):
    """Bar plot of factor ``k`` with posterior intervals from the sampler (vignette §sampling)."""
    lo, hi = sample_intervals(fit, k, nsamp, level, "factors", rng)
    return plot_bar(fit, kset=[k], pm_colors=pm_colors, order_by_pve=False, intervals={k: (lo, hi)})
