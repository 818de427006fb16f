"""Plots of the MASH workflow: prior covariance heatmaps, pairwise sharing, forest plots.

* :func:`plot_U` is the protocol's ``plot_U`` step (``mash_plot_prior.R``, map section 1.13):
  one heatmap per mixture component whose weight exceeds ``tol``, ordered by weight.
* :func:`plot_sharing` draws mashr's pairwise-sharing matrix
  (:func:`mashlib.get_pairwise_sharing`).
* :func:`mash_plot_meta` is mashr's ``mash_plot_meta`` (``rmeta::metaplot`` of the
  posterior mean and sd of one effect across conditions).

Every file is written atomically (:func:`mashlib._atomic.atomic_path`). The functions
only use matplotlib's object API (``Figure``), so they work with the non-interactive Agg
backend and never open a window.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ._atomic import atomic_path
from ._errors import MashInputError
from ._log import get_logger, say
from ._palette import RDYLBU7, prior_palette  # noqa: F401  (re-exported)
from ._validation import not_a_prior_message

__all__ = ["plot_U", "plot_component", "plot_sharing", "mash_plot_meta", "prior_palette"]

_log = get_logger(__name__)
_N_COL = 5          # heatmaps per row (gridExtra ncol = 5)
_UNIT = 4.0         # inches per panel
_ROWS_PER_PAGE = 10  # keeps every PDF page under the 200-inch page limit


# --------------------------------------------------------------------------- plot_U helpers
def _as_matrix(m, comp: str):
    """Unwrap a component: ``$mat`` of the udr structure, DataFrame -> ndarray."""
    labels = None
    if isinstance(m, dict):
        if "mat" not in m:
            return None, None
        m = m["mat"]
    if isinstance(m, pd.DataFrame):
        labels = [str(c) for c in m.columns]
        m = m.to_numpy()
    try:
        a = np.asarray(m, dtype=float)
    except (TypeError, ValueError):
        return None, None
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        return None, None
    return a, labels


def _load_prior(prior, name: str):
    """Accept a prior dict, a bare Ulist, or an RDS path; return (Ulist, w, data_name)."""
    data_name = None
    if isinstance(prior, (str, os.PathLike)):
        data_name = str(prior)
        if not Path(prior).exists():
            raise MashInputError(f"`prior`: file {str(prior)!r} does not exist; give a prior RDS "
                                 "written by the mixture_prior step (a list with U and w).")
        from .io import read_rds  # noqa: PLC0415 - optional dependency of this path only

        prior = read_rds(prior)
    if hasattr(prior, "to_r") and hasattr(prior, "U"):     # a MixturePrior from a prior engine
        prior = prior.to_r()
    if name:
        if not isinstance(prior, dict) or prior.get(name) is None:
            raise MashInputError(f"`name`: cannot find {name!r} in the prior"
                                 + (f" file {data_name}" if data_name else "")
                                 + "; pass name='' to plot the top-level prior.")
        prior = prior[name]
    if data_name is not None and not (isinstance(prior, dict) and "U" in prior):
        raise MashInputError(not_a_prior_message(data_name, prior))
    if isinstance(prior, dict) and "U" in prior:
        U, w = prior["U"], prior.get("w")
    elif isinstance(prior, dict) and prior and all(
            isinstance(v, (np.ndarray, pd.DataFrame, list)) or (isinstance(v, dict) and "mat" in v)
            for v in prior.values()):
        U, w = prior, None                                   # a bare Ulist
    else:
        raise MashInputError("`prior` has no 'U' element; expected a dict {'U': {name: R x R}, "
                             "'w': weights, 'loglik': ...} as written by mixture_prior, "
                             "or a bare dict of covariance matrices.")
    if isinstance(U, (list, tuple)):
        U = {f"Comp_{i + 1}": u for i, u in enumerate(U)}
    if not isinstance(U, dict) or len(U) == 0:
        raise MashInputError("`prior['U']` must be a non-empty dict (or list) of covariance "
                             "matrices.")
    U = {(str(k) if k not in (None, "") else f"Comp_{i + 1}"): v
         for i, (k, v) in enumerate(U.items())}
    return U, w, data_name


def _align_weights(U: dict, w) -> tuple[np.ndarray, int]:
    """R: ``w[names(U)]`` when w is named (drops "null"), else ``w[seq_along(U)]``; NA -> 0."""
    names = list(U)
    if w is None:
        return np.ones(len(names)), len(names)
    if isinstance(w, dict):
        w = pd.Series(w)
    if isinstance(w, pd.Series) and not isinstance(w.index, pd.RangeIndex):
        aligned = w.reindex(names).to_numpy(dtype=float, copy=True)
        m = len(w)
    else:
        arr = np.asarray(w, dtype=float).ravel()
        m = arr.size
        aligned = np.full(len(names), np.nan)
        k = min(arr.size, len(names))
        aligned[:k] = arr[:k]
    aligned[np.isnan(aligned)] = 0.0
    return aligned, m


def _heatmap(ax, X: np.ndarray, labels: list[str], title: str, to_cor: bool, cmap,
             remove_label: bool, size: float | None = None):
    """One prior heatmap: normalised matrix, upper triangle, row 1 at the top."""
    n = X.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        if to_cor:
            d = np.sqrt(np.diag(X))
            lat = X / np.outer(d, d)
            np.fill_diagonal(lat, 1.0)   # cov2cor sets the diagonal to exactly 1
        else:
            lat = X / np.max(np.diag(X))
    lat = np.where(np.tril(np.ones((n, n), dtype=bool), -1), np.nan, lat)
    if remove_label:
        labels = [f"t{i + 1}" for i in range(n)]
    masked = np.ma.masked_invalid(lat)
    # one image per panel (a raster of n x n cells; a mesh of n^2 patches is several times slower
    # to write as PDF), rows bottom-up: reversing them (R's lat[n:1, ]) puts row 1 on top;
    # white lines between the cells
    mesh = ax.imshow(masked[::-1], cmap=cmap, vmin=-1.0, vmax=1.0, origin="lower",
                     extent=(0, n, 0, n), interpolation="nearest", resample=False)
    grid = np.arange(n + 1)
    ax.hlines(grid, 0, n, colors="white", linewidth=0.5)
    ax.vlines(grid, 0, n, colors="white", linewidth=0.5)
    _square_axes(ax, n, labels, size)
    ax.set_title(title, fontsize=10, loc="left")
    return mesh, lat


def _label_size(n: int, side_in: float = 3.0) -> float:
    """Tick label size (points) for an n x n heatmap whose axes are ``side_in`` inches wide:
    80 % of a cell, between 4 and 8 points (8 pt up to about 12 conditions in a 4-inch panel)."""
    return float(np.clip(0.8 * side_in * 72.0 / max(n, 1), 4.0, 8.0))


def _square_axes(ax, n: int, labels, size: float | None = None) -> None:
    """Style a heatmap of an n x n matrix drawn on cells [0, n]^2 with row 1 on top.

    Equal aspect, the labels centred on the cells, no tick marks or spines. The font
    follows the cell size (:func:`_label_size`) so that neighbouring labels do not
    overlap; x labels are rotated 45 degrees up to 20 conditions and 90 beyond, where
    45-degree labels of neighbouring cells would touch.
    """
    ax.set_aspect("equal")
    if size is None:
        size = float(np.clip(8.0 * 12.0 / max(n, 1), 4.0, 8.0))
    ax.set_xticks(np.arange(n) + 0.5)
    if n > 20:
        ax.set_xticklabels(labels, rotation=90, ha="center", fontsize=size)
    else:
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=size)
    ax.set_yticks(np.arange(n) + 0.5)
    ax.set_yticklabels(labels[::-1], fontsize=size)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)


def _one_heatmap_figure(n: int, labels, cell_in: float, right_in: float, top_in: float):
    """A figure with one n x n heatmap axes in explicit geometry: the heatmap grows with n
    (``cell_in`` inches per cell, at least 3 inches), the left and bottom margins with the
    longest label, ``right_in``/``top_in`` inches beside and above it. Returns (fig, ax, label
    font size)."""
    side = max(3.0, cell_in * n)
    size = _label_size(n, side)
    lab_in = 0.52 * size * max(len(x) for x in labels) / 72.0 + 0.15
    W, H = side + lab_in + right_in, side + lab_in + top_in
    fig = Figure(figsize=(W, H))
    ax = fig.add_axes([(lab_in + 0.1) / W, (lab_in + 0.1) / H, side / W, side / H])
    return fig, ax, size


def _layout(n: int, labels: list[str]) -> dict:
    """Panel geometry of plot_U for n conditions.

    Up to 20 conditions: R's layout (5 panels of 4 inches per row, horizontal colour bar).
    Beyond: wider panels (0.11 inch per condition for the heatmap itself), 3 or 2 per row,
    labels sized to the cells and rotated 90 degrees, the colour bar on the right, and the
    gaps computed from the longest label, so that 20-60 conditions stay readable.
    """
    if n <= 20:
        return {"ncol": _N_COL, "unit_w": _UNIT, "unit_h": _UNIT, "size": None, "big": False}
    side = max(3.0, 0.11 * n)
    size = _label_size(n, side)
    longest = max((len(str(x)) for x in labels), default=1)
    lab_in = 0.52 * size * longest / 72.0 + 0.1           # extent of the longest label
    ncol = 3 if n <= 45 else 2
    return {"ncol": ncol, "unit_w": side + lab_in + 1.1, "unit_h": side + lab_in + 0.6, "size": size,
            "big": True, "side": side, "lab_in": lab_in}


def _r_round(x: float, digits: int = 6) -> str:
    """``paste(round(x, digits))``: R's shortest 15-significant-digit form.

    R prints fixed notation unless scientific is narrower (``scipen = 0``), e.g.
    ``1e-04`` but ``0.001``, and ``5e-06``.
    """
    v = round(float(x), digits)
    if v == 0 or not np.isfinite(v):
        return "0" if v == 0 else str(v)
    for k in range(1, 16):                       # fewest significant digits that round-trip
        sci = f"{v:.{k - 1}e}"
        if float(sci) == float(f"{v:.15g}"):
            break
    mant, exp = sci.split("e")
    e = int(exp)
    sci = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    ndec = max(0, k - 1 - e)
    fixed = f"{v:.{ndec}f}"
    return fixed if len(fixed) <= len(sci) else sci


def plot_U(prior, max_comp: int = -1, to_cor: bool = False, tol: float = 1e-6,
           remove_label: bool = False, name: str = "", output=None, data_name=None,
           png: bool = True, dpi: int = 150):
    r"""Heatmaps of the prior covariance components, ordered by mixture weight (``plot_U``).

    Behaviour of the protocol's ``mash_plot_prior.R``:

    1. with ``name``, plot ``prior[name]``;
    2. unnamed components are called ``Comp_i``;
    3. the weights are aligned **by name** (``w[names(U)]``, which drops ``"null"``), or by
       position when ``w`` has no names; missing weights become 0;
    4. ``n_comp = #{k: w_k > tol}`` (counted before any truncation);
    5. components are sorted by decreasing weight and truncated to ``max_comp`` only when
       ``max_comp > 1`` (1 and -1 both mean "all"); the first ``n_comp`` of that list are
       drawn (rows beyond the truncation are skipped);
    6. a component given as ``{"mat": ...}`` (udr's structure) is unwrapped.

    Unlabelled matrices (canonical, ``ED_*``) take the condition names of a labelled
    component of the same size (R prints 1..R for them).

    Each panel shows :math:`L = \mathrm{cov2cor}(U)` when ``to_cor`` else
    :math:`L = U / \max_i U_{ii}` (a zero matrix gives NaN, drawn blank), its upper
    triangle with row 1 at the top, coloured by ``colorRampPalette(rev(RdYlBu7))(128)``
    on :math:`[-1, 1]`, titled ``"<name> w = <round(w, 6)>"``. Panels are laid out 5 per
    row in 4-inch cells with the footer ``"Data source: <basename>"``. Pages hold at most
    10 rows (50 panels), so a prior with many components gives a multi-page PDF.
    Beyond 20 conditions the panels grow with the number of conditions (3 or 2 per row,
    labels sized to the cells and rotated 90 degrees, see :func:`_layout`), so that 20-60
    conditions stay readable.

    Parameters
    ----------
    prior : dict, or str / path
        ``{"U": {name: R x R}, "w": weights (named Series/dict or array), "loglik": ...}``,
        a bare dict of covariance matrices (every weight then 1), or the path of a
        prior RDS (read with :func:`mashlib.read_rds`).
    max_comp : int
        Maximum number of components to draw (``-1`` or ``1``: all above ``tol``).
    to_cor : bool
        Draw correlations (``cov2cor``) instead of ``U / max(diag(U))``.
    tol : float
        Weight threshold for drawn components.
    remove_label : bool
        Replace the condition names with ``t1 .. tR``. (R's script then prints the
        numbers 1..R as tick labels; ``t1..tR`` is kept here as documented in the map.)
    name : str
        Optional sub-element of ``prior`` to plot.
    output : str or path, optional
        PDF path to write (a ``.png`` beside it, ``_page<k>`` suffixes for pages after
        the first); nothing is written when None.
    data_name : str, optional
        Source shown in the footer (its basename); default: the RDS path if ``prior``
        was a path, otherwise no footer.
    png : bool
        Also write the PNG(s).
    dpi : int
        PNG resolution (150: labels of 60 conditions stay legible).

    Returns
    -------
    list of matplotlib.figure.Figure
        One figure per page.

    Raises
    ------
    MashInputError
        No ``U`` in ``prior``; no component with weight above ``tol`` (use a smaller
        ``tol``); bad ``max_comp``/``tol``.
    """
    if not (isinstance(tol, (int, float)) and np.isfinite(tol)):
        raise MashInputError(f"`tol` must be a finite number; got {tol!r}.")
    if not isinstance(max_comp, (int, np.integer)) or max_comp == 0 or max_comp < -1:
        raise MashInputError(f"`max_comp` must be -1 (all components) or a positive integer; "
                             f"got {max_comp!r}.")
    U, w, path_name = _load_prior(prior, name)
    data_name = data_name if data_name is not None else path_name
    weights, m_total = _align_weights(U, w)
    names = list(U)
    n_comp = int(np.sum(weights > tol))
    order = np.argsort(-weights, kind="stable")
    if max_comp > 1:
        order = order[:max_comp]
    say(_log, True, f"{n_comp} of {m_total} components have weight > {tol:g}")
    if n_comp == 0:
        raise MashInputError(
            f"plot_U: none of the {m_total} components has weight > tol = {tol:g} "
            f"(largest weight {weights.max() if weights.size else float('nan'):.3g}); "
            "pass a smaller `tol` (e.g. tol=0) to plot them.")
    # condition names for unlabelled matrices (canonical, ED_*): those of any labelled
    # component of the same size (R would print 1..R)
    shared = {}
    for v in U.values():
        Xv, labv = _as_matrix(v, "")
        if labv is not None:
            shared.setdefault(Xv.shape[0], labv)
    panels = []
    for k in order[:n_comp]:
        X, lab = _as_matrix(U[names[k]], names[k])
        if X is None:
            continue
        if lab is None:
            lab = shared.get(X.shape[0], [str(i + 1) for i in range(X.shape[0])])
        panels.append((names[k], weights[k], X, lab))
    if not panels:
        raise MashInputError("plot_U: none of the selected components is a square matrix; "
                             "check prior['U'].")
    cmap = prior_palette(128)
    lay = _layout(max(p[2].shape[0] for p in panels), max((p[3] for p in panels), key=len))
    ncol = lay["ncol"]
    rows_per_page = _ROWS_PER_PAGE if not lay["big"] else max(1, min(_ROWS_PER_PAGE, int(190 // lay["unit_h"])))
    per_page = ncol * rows_per_page
    figs = []
    for start in range(0, len(panels), per_page):
        chunk = panels[start:start + per_page]
        n_row = math.ceil(len(chunk) / ncol)
        W, H = lay["unit_w"] * ncol, lay["unit_h"] * n_row
        fig = Figure(figsize=(W, H))
        if lay["big"]:
            # explicit geometry: y labels left of each heatmap, x labels below, bar on the right
            axes = []
            for k in range(len(chunk)):
                r, c = divmod(k, ncol)
                x0 = c * lay["unit_w"] + lay["lab_in"] + 0.1
                y0 = H - (r + 1) * lay["unit_h"] + lay["lab_in"] + 0.15
                axes.append(fig.add_axes([x0 / W, y0 / H, lay["side"] / W, lay["side"] / H]))
        else:
            grid = fig.subplots(n_row, ncol, squeeze=False)
            for ax in grid.ravel()[len(chunk):]:
                ax.set_axis_off()
            axes = list(grid.ravel())
        for ax, (nm, wk, X, lab) in zip(axes, chunk):
            mesh, _ = _heatmap(ax, X, lab, f"{nm} w = {_r_round(wk)}", to_cor, cmap, remove_label,
                               size=lay["size"])
            if lay["big"]:
                cb = fig.colorbar(mesh, ax=ax, orientation="vertical", fraction=0.04, pad=0.02, shrink=0.7)
            else:
                cb = fig.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.04,
                                  pad=0.18, shrink=0.6)
            cb.ax.tick_params(labelsize=7)
            if cb.solids is not None:
                cb.solids.set_rasterized(False)   # a full-page raster per colorbar is slow
        if data_name:
            fig.text(0.5, 0.005, f"Data source: {os.path.basename(str(data_name))}",
                     ha="center", va="bottom", fontsize=11)
        if not lay["big"]:
            height = _UNIT * n_row
            fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.35 / height,
                                bottom=0.7 / height, wspace=0.45, hspace=0.55)
        figs.append(fig)
    if output is not None:
        _save_pages(figs, output, png=png, dpi=dpi)
    return figs


def plot_component(U, name: str = "", w: float | None = None, to_cor: bool = False, labels=None,
                   remove_label: bool = False):
    r"""One prior component as a ``plot_U`` panel (for notebooks and widgets).

    Draws :math:`L = U / \max_i U_{ii}` (or :math:`\mathrm{cov2cor}(U)` with ``to_cor``;
    use ``to_cor=True`` for a correlation such as V) on the same [-1, 1] scale, palette and
    upper-triangle layout as the PDF of :func:`plot_U`, with condition names on both axes.

    Parameters
    ----------
    U : array_like, pandas.DataFrame or dict
        An R x R matrix (a DataFrame's column names become the labels; udr's ``{"mat": U}``
        is unwrapped).
    name : str
        Title; ``w`` is appended as in plot_U (``"<name> w = <w>"``).
    w : float, optional
        The component's mixture weight.
    to_cor : bool
        Draw the correlation instead of ``U / max(diag U)``.
    labels : list of str, optional
        Condition names (default: the DataFrame's, else 1..R).
    remove_label : bool
        Replace the names with ``t1 .. tR``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    X, lab = _as_matrix(U, name)
    if X is None:
        raise MashInputError(f"plot_component: {name or 'U'} is not a square matrix")
    n = X.shape[0]
    labels = [str(x) for x in (labels or lab or [str(i + 1) for i in range(n)])]
    if len(labels) != n:
        raise MashInputError(f"plot_component: {len(labels)} labels for a {n} x {n} matrix")
    fig, ax, size = _one_heatmap_figure(n, labels, 0.11, 1.2, 0.5)
    title = name if w is None else f"{name} w = {_r_round(w)}"
    mesh, _ = _heatmap(ax, X, labels, title, to_cor, prior_palette(128), remove_label, size=size)
    cb = fig.colorbar(mesh, ax=ax, orientation="vertical", fraction=0.05, pad=0.03, shrink=0.8)
    cb.ax.tick_params(labelsize=7)
    cb.set_label("correlation" if to_cor else "U / max(diag U)", fontsize=8)
    return fig


def _save_pages(figs, output, png: bool = True, dpi: int = 150) -> list[Path]:
    """Write all figures as one multi-page PDF and one PNG per page, atomically."""
    out = Path(output)
    if out.suffix.lower() != ".pdf":
        out = out.with_suffix(out.suffix + ".pdf") if out.suffix else out.with_suffix(".pdf")
    written = [out]
    with atomic_path(out) as tmp:
        with PdfPages(tmp) as pdf:
            for fig in figs:
                pdf.savefig(fig)
    if png:
        for k, fig in enumerate(figs):
            p = out.with_suffix(".png") if k == 0 else out.with_name(f"{out.stem}_page{k + 1}.png")
            with atomic_path(p) as tmp:     # fast zlib level: a page is tens of megapixels
                fig.savefig(tmp, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
            written.append(p)
    return written


# --------------------------------------------------------------------------- sharing / meta
def plot_sharing(m_or_matrix, factor: float = 0.5, lfsr_thresh: float = 0.05,
                 output=None, title: str | None = None, annotate: bool | None = None,
                 png: bool = True):
    r"""Heatmap of mashr's pairwise sharing matrix.

    :math:`S_{ij}` is the fraction of effects significant (lfsr < ``lfsr_thresh``) in
    condition *i* or *j* whose posterior means are within a factor ``factor`` of each
    other, :math:`\text{factor} < \mathrm{PM}_{ai}/\mathrm{PM}_{aj} < 1/\text{factor}`
    (:func:`mashlib.get_pairwise_sharing`).

    Parameters
    ----------
    m_or_matrix : MashResult, pandas.DataFrame or array_like
        A fitted mash result (sharing computed from it) or a precomputed R x R
        sharing matrix.
    factor, lfsr_thresh : float
        Passed to ``get_pairwise_sharing``.
    output : str or path, optional
        PDF path (a PNG is written beside it).
    title : str, optional
        Plot title.
    annotate : bool, optional
        Print the values in the cells (default: when R <= 20).
    png : bool
        Also write a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(m_or_matrix, (pd.DataFrame, np.ndarray, list)):
        S = m_or_matrix
    else:
        from .model import get_pairwise_sharing  # noqa: PLC0415

        S = get_pairwise_sharing(m_or_matrix, factor=factor, lfsr_thresh=lfsr_thresh)
    labels = None
    if isinstance(S, pd.DataFrame):
        labels = [str(c) for c in S.columns]
        S = S.to_numpy()
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise MashInputError(f"`m_or_matrix`: a sharing matrix must be square; got shape "
                             f"{S.shape}. Pass a mash fit or get_pairwise_sharing(m).")
    n = S.shape[0]
    labels = labels or [str(i + 1) for i in range(n)]
    fig, ax, fsize = _one_heatmap_figure(n, labels, 0.25, 1.4, 0.6)
    cmap = prior_palette(128)
    im = ax.pcolormesh(np.arange(n + 1), np.arange(n + 1), np.ma.masked_invalid(S[::-1]),
                       cmap=cmap, vmin=-1.0, vmax=1.0, edgecolors="white", linewidth=0.5)
    _square_axes(ax, n, labels, fsize)
    if annotate is None:
        annotate = n <= 20
    if annotate:
        for i in range(n):
            for j in range(n):
                if np.isfinite(S[i, j]):
                    ax.text(j + 0.5, n - i - 0.5, f"{S[i, j]:.2f}", ha="center",
                            va="center", fontsize=7)
    ax.set_title(title if title is not None else
                 f"Pairwise sharing by magnitude (factor {factor:g}, lfsr < {lfsr_thresh:g})",
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if output is not None:
        _save_pages([fig], output, png=png)
    return fig


def _pm_psd(m):
    """Posterior mean and sd matrices (DataFrames when labelled) of a mash result."""
    if isinstance(m, dict):
        pm, psd = m.get("PosteriorMean"), m.get("PosteriorSD")
    else:
        pm = psd = None
        try:
            from .model import get_pm, get_psd  # noqa: PLC0415

            pm, psd = get_pm(m), get_psd(m)
        except ImportError:
            pass
        for nm_pm, nm_psd in (("PosteriorMean", "PosteriorSD"), ("posterior_mean", "posterior_sd")):
            if pm is None:
                pm, psd = getattr(m, nm_pm, None), getattr(m, nm_psd, None)
        res = getattr(m, "result", None)
        if pm is None and isinstance(res, dict):
            pm, psd = res.get("PosteriorMean"), res.get("PosteriorSD")
    if pm is None or psd is None:
        raise MashInputError("`m` has no posterior mean / sd; fit mash with outputlevel >= 2 "
                             "or pass {'PosteriorMean': ..., 'PosteriorSD': ...}.")
    return pm, psd


def mash_plot_meta(m, i, xlab: str = "Effect size", ylab: str = "Condition",
                   output=None, png: bool = True):
    r"""Forest plot of one effect's posterior across conditions (mashr ``mash_plot_meta``).

    For effect *i* draws, per condition *r*, the posterior mean
    :math:`\mu_{ir}` with the 95% interval :math:`\mu_{ir} \pm 1.96\,\sigma_{ir}`
    (``rmeta::metaplot(PM[i, ], PSD[i, ])``) and a reference line at 0.

    Parameters
    ----------
    m : MashResult or dict
        A mash fit with posterior summaries (or a dict with ``PosteriorMean`` and
        ``PosteriorSD``).
    i : int or str
        Effect: 0-based row position or row name.
    xlab, ylab : str
        Axis labels.
    output : str or path, optional
        PDF path (a PNG is written beside it).
    png : bool
        Also write a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pm, psd = _pm_psd(m)
    rows = list(pm.index) if isinstance(pm, pd.DataFrame) else None
    cond = ([str(c) for c in pm.columns] if isinstance(pm, pd.DataFrame) else None)
    PM, PSD = np.asarray(pm, dtype=float), np.asarray(psd, dtype=float)
    if isinstance(i, str):
        if rows is None or i not in rows:
            raise MashInputError(f"`i`: effect {i!r} is not a row name of the posterior; give "
                                 "a row name or a 0-based row index.")
        i = rows.index(i)
    if not isinstance(i, (int, np.integer)) or not (-PM.shape[0] <= i < PM.shape[0]):
        raise MashInputError(f"`i` must be a row index in [0, {PM.shape[0] - 1}] or a row "
                             f"name; got {i!r}.")
    mu, sd = PM[i], PSD[i]
    R = mu.size
    cond = cond or [str(r + 1) for r in range(R)]
    lo, hi = mu - 1.96 * sd, mu + 1.96 * sd
    fig = Figure(figsize=(6, max(3.0, 0.3 * R + 1.5)))
    ax = fig.subplots()
    y = np.arange(R)[::-1]
    ax.hlines(y, lo, hi, color="black", lw=1)
    # rmeta: box area proportional to precision
    prec = 1.0 / np.where(sd > 0, sd, np.nan) ** 2
    size = 20 + 60 * np.nan_to_num(prec / np.nanmax(prec) if np.isfinite(prec).any() else 1.0)
    ax.scatter(mu, y, marker="s", s=size, color="black", zorder=3)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(cond)
    ax.set_xlabel(xlab)
    ax.set_ylabel(ylab)
    ax.set_title(str(rows[i]) if rows is not None else f"effect {i}", fontsize=10)
    fig.tight_layout()
    if output is not None:
        _save_pages([fig], output, png=png)
    return fig
