"""The MASH protocol of xqtl-protocol: its workflow notebooks, and the same workflows as Python functions.

``mixture_prior`` workflows: :func:`flash`, :func:`flash_nonneg`, :func:`pca`,
:func:`canonical`, :func:`vhat_identity`, :func:`vhat_simple`, :func:`vhat_mle`,
:func:`vhat_corshrink_xcondition`, :func:`vhat_simple_specific`, :func:`ud`,
:func:`ud_unconstrained`, :func:`ed_bovy`, :func:`plot_U`; ``mash_fit``: :func:`mash`;
``mash_posterior``: :func:`posterior`, :func:`posterior_contrast`, :func:`posterior_contrast_plot`.

Each step is defined once, by the code cell of its section in the workflow notebook
(``mashlib/protocol/notebooks/``): ``mashlib run`` executes the notebook with papermill,
these functions run the same cells in-process (:mod:`mashlib.protocol.nbcode`). Each
takes the notebook's parameters (defaults as the SoS notebooks, see
:mod:`mashlib.protocol.params`), chains the steps it needs into the same ``cwd``
(:mod:`mashlib.protocol.chain`), writes R-readable RDS files named as the source
pipeline (:mod:`mashlib.protocol.naming`) and returns the paths it produced::

    from mashlib import protocol
    protocol.ed_bovy(data="input/mash/protocol_example.mashr_input.rds",
                     output_prefix="protocol_example", cwd="output/mixture_prior")

The notebook cells call :func:`prepare` (the setup cell), :func:`step` (one per section),
the readers and converters of :mod:`mashlib.protocol.steps` and :func:`show`.
"""
from __future__ import annotations

import inspect

from . import naming
from .cells import Params, StepRun, prepare, run_step, run_workflow, step
from .chain import STEPS, check_inputs, plan, resolve_params, why_rerun
from .display import posterior_summary, results, show
from .params import NOTEBOOKS, PARAMS, WORKFLOWS, Options, defaults, options_class, workflow_names
from .posterior_units import load_unit_model, read_units_file
from .posterior_workflow import (check_failures, plot_summary, posterior_results, run_contrast, run_posterior,
                                 summary_file)
from .steps import (bare, fitted_g_from_r, load_input, mash_model_file,
                    prior_file, prior_object, prior_vhat_file, read_components, read_fitted_g, read_prior_U,
                    read_vhat, strong_data, with_dimnames)

__all__ = ["run_workflow", "check_inputs", "plan", "resolve_params", "run_step", "why_rerun", "STEPS",
           "NOTEBOOKS", "PARAMS", "WORKFLOWS", "Options", "options_class", "defaults", "workflow_names", "naming",
           "Params", "StepRun", "prepare", "step", "show", "results", "posterior_summary",
           "bare", "fitted_g_from_r", "load_input", "mash_model_file",
           "prior_file", "prior_object", "prior_vhat_file", "read_components", "read_fitted_g", "read_prior_U",
           "read_vhat", "strong_data", "with_dimnames",
           "load_unit_model", "read_units_file", "run_posterior", "run_contrast", "posterior_results",
           "check_failures", "plot_summary", "summary_file"]


def _make(notebook: str, workflow: str):
    def fn(**params):
        return run_workflow(notebook, workflow, **params)
    specs = PARAMS[notebook]
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default) for s in specs]
        + [inspect.Parameter("log", inspect.Parameter.KEYWORD_ONLY, default=print)])
    lines = "\n".join(f"    {s.name} : default {s.default!r}\n        {s.help}" for s in specs)
    fn.__doc__ = (f"Workflow ``{workflow}`` of ``{notebook}``: {WORKFLOWS[notebook][workflow]}.\n\n"
                  f"Parameters\n----------\n{lines}\n    log : callable\n        Progress lines: "
                  "each step's start (and why it runs) and end (elapsed), or 'up to date'.\n\n"
                  "Returns\n-------\nlist of pathlib.Path\n    The files the workflow wrote (or found up to date).\n")
    fn.__name__ = fn.__qualname__ = workflow if workflow != "mash" else "mash"
    return fn


for _nb, _wfs in WORKFLOWS.items():
    for _wf in _wfs:
        globals()[_wf] = _make(_nb, _wf)
        __all__.append(_wf)
del _nb, _wfs, _wf
