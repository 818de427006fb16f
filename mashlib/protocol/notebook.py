"""Helpers the protocol notebooks call, and papermill execution of the notebooks.

The notebooks stay thin: a tagged ``parameters`` cell, then :func:`prepare`,
:func:`mashlib.protocol.run_workflow` and :func:`show` (a summary table or plot, with
ipywidgets controls when ``interactive`` and a static rendering otherwise).
"""
from __future__ import annotations

import ast
import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import MashInputError
from . import naming
from .chain import check_inputs
from .params import PARAMS

__all__ = ["notebook_dir", "notebook_path", "read_parameters_cell", "prepare", "show",
           "execute_notebook", "posterior_summary", "EXAMPLE"]

#: shipped example used when a notebook runs with an empty ``data`` (e.g. under nbval)
EXAMPLE = {
    "mixture_prior": {"data": "input/mash/protocol_example.mashr_input.rds",
                      "output_prefix": "protocol_example", "cwd": "output/mixture_prior"},
    "mash_fit": {"data": "input/mash/protocol_example.EE.mash.rds",
                 "vhat_data": "input/mash/protocol_example.EE.V_simple.rds",
                 "prior_data": "input/mash/protocol_example.EE.prior.rds",
                 "output_prefix": "protocol_example_mash", "cwd": "output/mash_fit"},
}


def repo_root() -> Path:
    """The source checkout holding ``notebooks/`` and ``input/`` (when mashlib is installed editable)."""
    return Path(__file__).resolve().parents[2]


#: notebooks that live in a source checkout only (documents, not protocol steps)
CHECKOUT_NOTEBOOKS = ("mash_protocol", "multivariate_mixture_vignette")


def notebook_dir() -> Path:
    """Folder of the workflow notebooks ``mashlib run`` executes.

    ``$MASHLIB_NOTEBOOKS`` when set, else the package data ``mashlib/protocol/notebooks``
    (found with :mod:`importlib.resources`, so an installed wheel finds them too).
    """
    if os.environ.get("MASHLIB_NOTEBOOKS"):
        return Path(os.environ["MASHLIB_NOTEBOOKS"])
    from importlib.resources import files
    return Path(str(files("mashlib.protocol") / "notebooks"))


def notebook_path(name: str) -> Path:
    """``mixture_prior``, ``pipeline/mixture_prior.ipynb`` or a path -> the notebook file.

    The workflow notebooks are package data; the driver ``mash_protocol`` and the vignette
    are documents of a source checkout (``<repo>/notebooks``).
    """
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p
    stem = p.stem if p.suffix == ".ipynb" else p.name
    folder = repo_root() / "notebooks" if stem in CHECKOUT_NOTEBOOKS else notebook_dir()
    cand = folder / f"{stem}.ipynb"
    if not cand.is_file():
        where = ("it is a document of the source checkout (notebooks/); clone the repository"
                 if stem in CHECKOUT_NOTEBOOKS else f"valid: {', '.join(PARAMS)}")
        raise MashInputError(f"notebook {name!r} not found (looked for {cand}); {where}")
    return cand


def read_parameters_cell(path) -> list[tuple[str, Any, str]]:
    """Parse the ``parameters`` cell: ``[(name, default, help text from the # comment)]``."""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise MashInputError(f"{path}: no cell tagged 'parameters'")
    out = []
    for line in cell.source.splitlines():
        code, _, comment = line.partition("#")
        if "=" not in code or line.lstrip().startswith("#"):
            continue
        name, _, value = code.partition("=")
        try:
            default = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            default = value.strip()
        out.append((name.strip(), default, comment.strip()))
    return out


def _resolve_example(notebook: str, params: dict) -> dict:
    """Empty ``data``: point at the shipped example (paths relative to the repository)."""
    params = dict(params)
    if params.get("data"):
        return params
    root = repo_root()
    for k, v in EXAMPLE[notebook].items():
        params[k] = str(root / v) if k != "output_prefix" else v
    return params


def prepare(notebook: str, workflow: str, namespace: dict) -> dict:
    """Collect the notebook's parameters from its namespace, fill the example, validate.

    Returns the resolved parameter dict (raises :class:`MashInputError` on bad input).
    """
    names = [p.name for p in PARAMS[notebook]]
    params = _resolve_example(notebook, {k: namespace[k] for k in names if k in namespace})
    return check_inputs(notebook, workflow, params)


# --------------------------------------------------------------------------- display


def _display(obj):
    try:
        from IPython.display import display
        display(obj)
    except ImportError:  # pragma: no cover
        print(obj)


def posterior_summary(post: dict, lfsr: float = 0.05) -> pd.DataFrame:
    """Per condition: number of effects with lfsr < ``lfsr``, mean |posterior mean|."""
    L = post["lfsr"]
    pm = post["PosteriorMean"]
    return pd.DataFrame({f"n_lfsr<{lfsr:g}": (L < lfsr).sum(axis=0),
                         "mean_abs_PM": pm.abs().mean(axis=0).round(4),
                         "n_positive_sig": ((L < lfsr) & (pm > 0)).sum(axis=0)})


def _component_heatmap(M, name: str, ax=None):
    import matplotlib.pyplot as plt
    M = np.asarray(M, dtype=float)
    d = np.sqrt(np.clip(np.diag(M), 1e-300, None))
    C = M / np.outer(d, d)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(C, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title(name)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax


def _widget_or_static(options: list[str], fn, interactive: bool, label: str):
    """Render ``fn(options[0])`` statically (what papermill keeps); in a live frontend
    (``interactive``) add a dropdown whose choice is drawn below it."""
    if not options:
        return
    fn(options[0])
    if not interactive or len(options) < 2:
        return
    try:
        import ipywidgets as w
    except ImportError:  # pragma: no cover
        return
    dd = w.Dropdown(options=options, value=options[0], description=label)
    out = w.Output()

    def changed(change):
        with out:
            out.clear_output(wait=True)
            fn(change["new"])
    dd.observe(changed, names="value")
    _display(w.VBox([w.HTML(f"<b>explore:</b> pick another {label}"), dd, out]))


def show(p: dict, workflow: str, outputs: list, interactive: bool = False, summary: bool = True) -> None:
    """Summarise a workflow's outputs: tables, heatmaps, and widgets when ``interactive``.

    ``summary=False`` skips the tables (the mash posterior summary) and keeps the plots.
    """
    import matplotlib.pyplot as plt
    from ..io import read_rds
    out = Path(outputs[0])
    print(f"outputs: {', '.join(str(o) for o in outputs)}")
    if workflow == "plot_U":
        png = out.with_suffix(".png")
        if png.is_file():
            from IPython.display import Image
            _display(Image(filename=str(png)))
        return
    obj = read_rds(out)
    if workflow in naming.COMPONENTS:
        if not obj:
            print("no component (flash finds no factor on this data)")
            return
        _display(pd.DataFrame({"component": list(obj), "trace": [float(np.trace(np.asarray(v))) for v in obj.values()]}))
        _widget_or_static(list(obj), lambda component: (_component_heatmap(obj[component], component), plt.show()),
                          interactive, "component")
    elif workflow.startswith("vhat"):
        _component_heatmap(obj, f"residual correlation ({workflow})")
        plt.show()
    elif workflow in ("ed_bovy", "ud", "ud_unconstrained"):
        w = obj["w"].sort_values(ascending=False)
        _display(w[w > 1e-6].to_frame("weight").round(4))
        U = obj["U"]
        names = [k for k in w.index if k in U and w[k] > 1e-6]
        _widget_or_static(names, lambda component: (_component_heatmap(U[component], f"{component} w={w[component]:.3g}"),
                                                    plt.show()), interactive, "component")
    elif workflow == "mash":
        model = obj["mash_model"]
        pi = model["fitted_g"]["pi"]
        print(f"mash loglik = {model['loglik']:.4f}; {int((pi > 0).sum())} of {len(pi)} mixture weights > 0")
        if len(outputs) > 1:
            post = read_rds(outputs[1])
            if summary:
                _display(posterior_summary(post))
            rows = list(post["PosteriorMean"].index)

            def variant(variant):
                pm, sd = post["PosteriorMean"].loc[variant], post["PosteriorSD"].loc[variant]
                fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(pm)), 3))
                ax.errorbar(range(len(pm)), pm, yerr=1.96 * sd, fmt="o", ms=3)
                ax.axhline(0, color="grey", lw=0.5)
                ax.set_xticks(range(len(pm)), pm.index, rotation=90, fontsize=7)
                ax.set_title(f"posterior mean +/- 1.96 sd: {variant}")
                plt.show()
            _widget_or_static(rows[:200], variant, interactive, "variant")


# --------------------------------------------------------------------------- papermill


def execute_notebook(notebook: str, parameters: dict, output_path, cwd=None, log_output: bool = False) -> Path:
    """Run a notebook with papermill; keep the executed copy at ``output_path`` (atomically).

    Raises
    ------
    MashInputError
        With the notebook's own error message (one line) when a cell fails.
    """
    try:
        import papermill as pm
    except ImportError:  # pragma: no cover - the notebooks extra is not installed
        raise MashInputError("papermill is not installed: pip install 'mashlib[notebooks]', "
                             "or run in-process with --no-notebook") from None
    src = notebook_path(notebook)
    output_path = Path(output_path)
    with atomic_path(output_path) as tmp:
        nb_tmp = tmp.with_suffix(".ipynb")
        try:
            pm.execute_notebook(str(src), str(nb_tmp), parameters=parameters, kernel_name="python3",
                                cwd=str(cwd or os.getcwd()), progress_bar=False, log_output=log_output,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP warning
        except pm.PapermillExecutionError as exc:
            with contextlib.suppress(FileNotFoundError):
                nb_tmp.unlink()
            msg = str(exc.evalue).strip().splitlines()[0] if exc.evalue else exc.ename
            raise MashInputError(msg) from None
        os.replace(nb_tmp, tmp)
    return output_path
