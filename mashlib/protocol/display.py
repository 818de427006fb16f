"""What the notebooks show after a step: tables and figures, and ipywidgets in JupyterLab.

Every view draws a static figure first (what papermill and nbval keep in the executed
notebook, as ``image/png`` outputs); with ``interactive`` (a live JupyterLab) a dropdown
below it redraws the view for another component or variant. Heatmaps use the scale and
palette of ``plot_U``'s PDF (``U / max(diag U)`` on [-1, 1], condition names on the axes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import naming

__all__ = ["show", "show_outputs", "posterior_summary", "weights_by_component", "results", "explore"]


def _display(obj):
    try:
        from IPython.display import display
        display(obj)
    except ImportError:  # pragma: no cover
        print(obj)


def _figure(fig, dpi: int = 110):
    """Display a matplotlib Figure (made with the object API) as an ``image/png`` output.

    Rendered here rather than left to IPython's formatter, which only knows figures once
    pyplot has loaded the inline backend: the image is in the executed notebook whatever
    the backend.
    """
    import io
    try:
        from IPython.display import Image
    except ImportError:  # pragma: no cover
        return
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)      # the figures lay themselves out: no second "tight" pass
    _display(Image(data=buf.getvalue(), format="png"))


def explore(options: list[str], draw, interactive: bool, label: str):
    """One view per option: a static figure of the first (what papermill and nbval keep), or,
    in a live frontend (``interactive``), a dropdown with the chosen option's figure below it
    (one figure at a time: a new choice replaces the previous one)."""
    if not options:
        return
    w = None
    if interactive and len(options) > 1:
        try:
            import ipywidgets as w
        except ImportError:  # pragma: no cover
            w = None
    if w is None:
        _figure(draw(options[0]))
        return
    dd = w.Dropdown(options=options, value=options[0], description=label)
    out = w.Output()

    def redraw(value):
        with out:
            out.clear_output(wait=True)
            _figure(draw(value))
    dd.observe(lambda change: redraw(change["new"]), names="value")
    redraw(options[0])
    _display(w.VBox([dd, out]))


def posterior_summary(post: dict, lfsr: float = 0.05) -> pd.DataFrame:
    """Per condition: number of effects with lfsr < ``lfsr``, of which positive, mean |posterior mean|."""
    L = post["lfsr"]
    pm = post["PosteriorMean"]
    return pd.DataFrame({f"n_lfsr<{lfsr:g}": (L < lfsr).sum(axis=0),
                         "n_positive_sig": ((L < lfsr) & (pm > 0)).sum(axis=0),
                         "mean_abs_PM": pm.abs().mean(axis=0).round(4)})


def weights_by_component(pi: pd.Series) -> pd.Series:
    """mash's mixture weights (``<cov>.<grid>`` names) summed over the grid, by covariance."""
    pi = pd.Series(pi, dtype=float)
    names = [str(k).rsplit(".", 1)[0] if "." in str(k) and str(k) != "null" else str(k) for k in pi.index]
    return pi.groupby(names, sort=False).sum().sort_values(ascending=False)


def _bar(values: pd.Series, title: str, xlabel: str, top: int = 25):
    from matplotlib.figure import Figure
    v = values.head(top)[::-1]
    fig = Figure(figsize=(7, max(2.5, 0.28 * len(v) + 1)))
    ax = fig.subplots()
    ax.barh(range(len(v)), v.to_numpy(), color="#4575B4")
    ax.set_yticks(range(len(v)), [str(k) for k in v.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def _conditions(obj) -> list[str] | None:
    for v in (obj.values() if isinstance(obj, dict) else [obj]):
        if isinstance(v, pd.DataFrame):
            return [str(c) for c in v.columns]
    return None


def _components(U: dict, interactive: bool, weights: pd.Series | None = None):
    from ..plots import plot_component
    labels = _conditions(U)

    def draw(name):
        return plot_component(U[name], name=name, w=None if weights is None else float(weights.get(name, np.nan)),
                              labels=labels)
    names = list(U) if weights is None else [k for k in weights.index if k in U]
    explore(names, draw, interactive, "component")


def _show_prior(obj: dict, interactive: bool):
    w = pd.Series(obj["w"], dtype=float).sort_values(ascending=False)
    kept = w[w > 1e-6]
    print(f"{len(kept)} of {len(w)} weights > 1e-6 (null: {w.get('null', 0.0):.3g})")
    _figure(_bar(kept, "prior weights (> 1e-6)", "weight"))
    _components(obj["U"], interactive, kept.drop("null", errors="ignore"))


def _show_model(model: dict):
    pi = weights_by_component(model["fitted_g"]["pi"])
    print(f"mash loglik = {float(model['loglik']):.4f}; {int((pi > 0).sum())} of {len(pi)} "
          "covariances carry weight (summed over the grid)")
    _figure(_bar(pi[pi > 1e-6], "mixture weights by covariance (summed over the grid)", "weight"))


def _show_posterior(post: dict, interactive: bool, summary: bool = True, sharing: bool = False):
    from ..plots import mash_plot_meta, plot_sharing
    from ..model import get_pairwise_sharing
    pm = post["PosteriorMean"]
    print(f"{pm.shape[0]} variants x {pm.shape[1]} conditions")
    tab = posterior_summary(post)
    if summary:
        _display(tab)
    _figure(_bar(tab.iloc[:, 0].sort_values(ascending=False), "significant effects per condition (lfsr < 0.05)",
                 "effects", top=len(tab)))
    if sharing:
        S = get_pairwise_sharing(post)
        _figure(plot_sharing(S, title="pairwise sharing by magnitude (factor 0.5, lfsr < 0.05)"))
    # the variants with the most significant conditions first
    order = (post["lfsr"] < 0.05).sum(axis=1).sort_values(ascending=False, kind="stable").index
    explore([str(v) for v in order[:200]], lambda v: mash_plot_meta(post, v), interactive, "variant")


def show_outputs(step: str, outputs: list, interactive: bool = False, summary: bool = True) -> None:
    """Show what ``step`` wrote (``outputs``: its files, first one the main output)."""
    from ..io import read_rds
    if step in ("posterior", "posterior_contrast", "posterior_contrast_plot"):
        print(f"[{step}] shown by protocol.show(s) (it needs the run's parameters)")
        return
    out = Path(outputs[0])
    if not out.is_file():
        print(f"[{step}] no output to show yet ({out})")
        return
    if step == "plot_U":
        from IPython.display import Image
        pngs = sorted(out.parent.glob(out.stem + "*.png"))
        print(f"{out} ({len(pngs)} PNG page(s) beside it)")
        for png in pngs:
            _display(Image(filename=str(png)))
        return
    obj = read_rds(out)
    if step in naming.COMPONENTS:
        if not obj:
            print("no component (flash finds no factor on this data)")
            return
        _display(pd.DataFrame({"component": list(obj), "rank": [int(np.linalg.matrix_rank(np.asarray(v, float)))
                                                                 for v in obj.values()],
                               "trace": [float(np.trace(np.asarray(v, float))) for v in obj.values()]}))
        _components(obj, interactive)
    elif step.startswith("vhat"):
        from ..plots import plot_component
        _figure(plot_component(obj, name=f"residual correlation ({step})", to_cor=True,
                               labels=_conditions({"V": obj}) if isinstance(obj, pd.DataFrame) else None))
    elif step in ("ed_bovy", "ud", "ud_unconstrained"):
        _show_prior(obj, interactive)
    elif step == "mash_1":
        _show_model(obj["mash_model"])
    elif step == "mash_2":
        _show_posterior(obj, interactive, summary)


def show(s, interactive: bool | None = None) -> None:
    """Show the result of a :class:`~mashlib.protocol.cells.StepRun` (nothing for a skipped step)."""
    if getattr(s, "skipped", False):
        return
    if interactive is None:
        interactive = getattr(s.p, "interactive", False)
    if getattr(s.p, "notebook", None) == "mash_posterior":
        from .posterior_workflow import show_step
        show_step(s.name, s.p, s.outputs, interactive)
        return
    show_outputs(s.name, s.outputs, interactive)


def results(prior_file, posterior_file, interactive: bool = False) -> None:
    """The driver's results section: prior weights, sharing, significant effects, one variant."""
    from ..io import read_rds
    _show_prior(read_rds(prior_file), interactive=False)
    _show_posterior(read_rds(posterior_file), interactive, summary=True, sharing=True)
