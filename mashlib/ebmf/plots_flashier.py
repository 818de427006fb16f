"""flashier's plot functions under their own names (``flash_plot_*``), drawn with matplotlib.

As flashier's ``flash_plot_dataframe``: the values are the columns of ``ldf(fit, type="i")``
(max-abs 1) of the factors or loadings (``pm_which``), restricted to ``pm_subset`` (0-based
indices or names) and factors ``kset`` (0-based; ordered by PVE when ``order_by_pve``);
``pm_groups`` assigns each row/column to a group and ``pm_colors`` gives one colour per entry
(no groups) or per group. Every function returns a :class:`matplotlib.figure.Figure`.

``flash_plot_scree``, ``flash_plot_bar``, ``flash_plot_heatmap`` are
:func:`mashlib.ebmf.plots.plot_scree` / ``plot_bar`` / ``plot_heatmap``;
``flash_plot_histogram`` (one histogram per factor, per group when grouped),
``flash_plot_scatter`` (posterior means against a covariate, by default the data's column
means for factors, row means for loadings) and ``flash_plot_structure`` (stacked bars of
nonnegative loadings, grouped) are new.
"""
from __future__ import annotations

import warnings

import numpy as np

from .._errors import MashInputError
from .plots import _figure, _kset, _values, plot_bar, plot_heatmap, plot_scree

__all__ = ["flash_plot_scree", "flash_plot_bar", "flash_plot_heatmap", "flash_plot_histogram",
           "flash_plot_scatter", "flash_plot_structure", "flash_plot_dataframe"]

_SET1 = ["#E41A1C", "#377EB8", "#4DAF4A", "#984EA3", "#FF7F00", "#FFFF33", "#A65628", "#F781BF", "#999999"]


def flash_plot_dataframe(fit, order_by_pve=False, kset=None, pm_which="factors", pm_subset=None, pm_groups=None,
                         pm_colors=None):
    """The values behind every plot: a dict with ``ks``, ``names``, ``vals`` (entries x ks), ``groups``, ``colors``."""
    ks = _kset(fit, kset, order_by_pve)
    vals, names = _values(fit, pm_which)
    size = vals.shape[0]
    names = list(names) if names is not None else [str(i + 1) for i in range(size)]
    idx = np.arange(size)
    if pm_subset is not None:
        sub = list(np.atleast_1d(pm_subset))
        if all(isinstance(v, str) for v in sub):
            pos = {nm: i for i, nm in enumerate(names)}
            missing = [v for v in sub if v not in pos]
            if missing:
                raise MashInputError(f"pm_subset: unknown names {missing[:5]}.")
            idx = np.array([pos[v] for v in sub])
        else:
            idx = np.asarray(sub, int)
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise MashInputError(f"pm_subset: indices must lie in 0..{size - 1}.")
    vals = vals[idx][:, ks]
    names = [names[i] for i in idx]
    groups = colors = None
    if pm_groups is not None:
        groups = np.asarray(pm_groups, dtype=object)
        if groups.size != idx.size:
            raise MashInputError(f"pm_groups: one group per entry ({idx.size}) needed; got {groups.size}.")
        levels = list(dict.fromkeys(groups.tolist()))
        if pm_colors is None:
            pal = _SET1 if len(levels) <= 9 else [f"C{i % 10}" for i in range(len(levels))]
            gcol = dict(zip(levels, pal))
        else:
            pc = list(pm_colors)
            if len(pc) != len(levels):
                raise MashInputError(f"pm_colors: one colour per group ({len(levels)}) needed; got {len(pc)}.")
            gcol = dict(zip(levels, pc))
        colors = [gcol[g] for g in groups]
    elif pm_colors is not None:
        colors = list(pm_colors)
        if len(colors) != idx.size:
            raise MashInputError(f"pm_colors: one colour per entry ({idx.size}) needed; got {len(colors)}.")
    return {"ks": ks, "names": names, "vals": vals, "groups": groups, "colors": colors, "idx": idx}


def flash_plot_scree(fit, order_by_pve=False, kset=None, **kw):
    """PVE per factor on a log scale (flashier's ``flash_plot_scree``)."""
    return plot_scree(fit, kset=kset, order_by_pve=order_by_pve)


def flash_plot_bar(fit, order_by_pve=False, kset=None, pm_which="factors", pm_colors=None, **kw):
    """Bar chart of posterior means per factor (flashier's ``flash_plot_bar``)."""
    return plot_bar(fit, kset=kset, pm_which=pm_which, pm_colors=pm_colors, order_by_pve=order_by_pve, **kw)


def flash_plot_heatmap(fit, order_by_pve=False, kset=None, pm_which="factors", **kw):
    """Heatmap of posterior means (flashier's ``flash_plot_heatmap``)."""
    return plot_heatmap(fit, kset=kset, pm_which=pm_which, order_by_pve=order_by_pve, **kw)


def _grid(nk):
    ncol = min(nk, 3)
    return int(np.ceil(nk / ncol)), ncol


def flash_plot_histogram(fit, order_by_pve=False, kset=None, pm_which="factors", pm_subset=None, pm_groups=None,
                         pm_colors=None, bins=None, alpha=0.5):
    """One density histogram of posterior means per factor (overlaid per group when ``pm_groups``)."""
    df = flash_plot_dataframe(fit, order_by_pve, kset, pm_which, pm_subset, pm_groups,
                              pm_colors if pm_groups is not None else None)
    nrow, ncol = _grid(len(df["ks"]))
    fig = _figure(3.2 * ncol, 2.6 * nrow)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    bins = 30 if bins is None else bins
    for j, k in enumerate(df["ks"]):
        ax = axes[j // ncol][j % ncol]
        v = df["vals"][:, j]
        if df["groups"] is None:
            ax.hist(v, bins=bins, density=True, color="dodgerblue")
        else:
            for g in dict.fromkeys(df["groups"].tolist()):
                m = df["groups"] == g
                col = df["colors"][int(np.flatnonzero(m)[0])]
                ax.hist(v[m], bins=bins, density=True, alpha=alpha, color=col, label=str(g))
        ax.set_title(f"k{k + 1}", fontsize=9)
        ax.set_yticks([])
    for j in range(len(df["ks"]), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    if df["groups"] is not None:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Posterior means ({pm_which})")
    return fig


def flash_plot_scatter(fit, order_by_pve=False, kset=None, pm_which="factors", pm_subset=None, pm_groups=None,
                       pm_colors=None, covariate=None, n_labels=0):
    """Posterior means against a covariate, one panel per factor (flashier's ``flash_plot_scatter``).

    The default covariate is the data's mean over the other mode (column means for factors, row
    means for loadings); ``n_labels`` labels the entries of largest absolute value.
    """
    df = flash_plot_dataframe(fit, order_by_pve, kset, pm_which, pm_subset, pm_groups, pm_colors)
    if covariate is None:
        Y = np.where(fit.Z == 0, np.nan, fit.Y) if fit.Z is not None else fit.Y
        cov = np.nanmean(Y, axis=0 if pm_which == "factors" else 1)[df["idx"]]
        ylab = "data " + ("column" if pm_which == "factors" else "row") + " mean"
    else:
        cov = np.resize(np.asarray(covariate, float), df["vals"].shape[0])
        ylab = "covariate"
    nrow, ncol = _grid(len(df["ks"]))
    fig = _figure(3.2 * ncol, 2.8 * nrow)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for j, k in enumerate(df["ks"]):
        ax = axes[j // ncol][j % ncol]
        v = df["vals"][:, j]
        cols = df["colors"] or "black"
        if n_labels > 0:
            top = np.argsort(-np.abs(v))[:n_labels]
            cols = np.array(["gray"] * v.size, dtype=object)
            cols[top] = "dodgerblue"
            for i in top:
                ax.annotate(df["names"][i], (v[i], cov[i]), fontsize=6)
        ax.scatter(v, cov, s=10, facecolors="none", edgecolors=cols)
        ax.set_title(f"k{k + 1}", fontsize=9)
        ax.set_xlabel(pm_which.rstrip("s") + " posterior mean", fontsize=8)
        ax.set_ylabel(ylab, fontsize=8)
    for j in range(len(df["ks"]), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    return fig


def flash_plot_structure(fit, order_by_pve=False, kset=None, pm_which="loadings", pm_subset=None, pm_groups=None,
                         pm_colors=None, gap=1):
    """Structure plot: for each row (or column) the posterior means of the factors as stacked bars.

    Entries are sorted into their ``pm_groups`` (separated by ``gap`` blank bars). Designed for
    nonnegative loadings: mixed signs draw a warning, as in flashier.
    """
    df = flash_plot_dataframe(fit, order_by_pve, kset, pm_which, pm_subset, pm_groups, None)
    V = df["vals"]
    if np.any(V < 0) and np.any(V > 0):
        warnings.warn("Structure plots were designed to visualize sets of nonnegative memberships or loadings; "
                      "with negative and positive values a heatmap is usually easier to read.", UserWarning,
                      stacklevel=2)
    groups = df["groups"] if df["groups"] is not None else np.array([""] * V.shape[0], dtype=object)
    levels = list(dict.fromkeys(groups.tolist()))
    order, ticks, pos = [], {}, 0
    xs = []
    for g in levels:
        m = np.flatnonzero(groups == g)
        xs.extend(range(pos, pos + m.size))
        order.extend(m.tolist())
        ticks[str(g)] = pos + (m.size - 1) / 2
        pos += m.size + int(gap)
    order = np.array(order)
    xs = np.array(xs)
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    cols = list(pm_colors) if pm_colors is not None else [f"C{i % 10}" for i in range(len(df["ks"]))]
    bottom = np.zeros(order.size)
    for j, k in enumerate(df["ks"]):
        h = V[order, j]
        ax.bar(xs, h, bottom=bottom, width=1.0, color=cols[j % len(cols)], label=f"k{k + 1}", linewidth=0)
        bottom = bottom + h
    if df["groups"] is not None:
        ax.set_xticks(list(ticks.values()), list(ticks.keys()), rotation=45, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_ylabel("posterior mean")
    ax.legend(title="component", fontsize=7, loc="upper right")
    return fig
