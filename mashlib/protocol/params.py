"""Parameters and workflows of the protocol notebooks (mixture_prior, mash_fit, mash_posterior).

The defaults are those of the xqtl-protocol SoS notebooks (issue #5, map section 1).
The notebooks' ``parameters`` cells are generated from these tables (one line per
parameter, with the help text as a ``#`` comment), and the CLI reads the help back
from the notebook, so the notebook is what users see and edit.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["Param", "NOTEBOOKS", "WORKFLOWS", "PARAMS", "TASK_OPTIONS_IGNORED", "defaults", "workflow_names",
           "Options", "options_class"]


@dataclasses.dataclass(frozen=True)
class Param:
    """One notebook parameter: name, default value and one-line help text."""

    name: str
    default: Any
    help: str


_COMMON = [
    Param("cwd", "./mashr_workflow_output",
          "output folder, created if missing (notebook with data empty: <checkout>/output/<notebook>)"),
    Param("data", "", "mashr input RDS: strong/random/null .b/.s/.z matrices (variants x conditions); "
                      "required on the command line (a notebook with data empty uses the shipped example)"),
    Param("output_prefix", "", "prefix of output file names (default: basename of --data without extension)"),
    Param("output_suffix", "all", "accepted as in the SoS notebook (its outputs do not use it; mash_posterior's do)"),
    Param("effect_model", "EE", "EE (exchangeable effects: alpha 0) or EZ (exchangeable z-scores: alpha 1)"),
    Param("numThreads", 0, "BLAS threads of the run (SoS task option; 0: leave the BLAS default)"),
    Param("mem", "", "memory budget, e.g. 16G (SoS task option; bounds the likelihood/posterior "
                     "working blocks to a quarter of it; empty: 256 MiB blocks)"),
]

#: SoS task options a cluster wrapper passes that a local run has no use for
TASK_OPTIONS_IGNORED = ("container", "job_size", "walltime")

MIXTURE_PRIOR_PARAMS = _COMMON + [
    Param("vhat", "simple", "residual correlation: identity, simple, mle, vhat_corshrink_xcondition or vhat_simple_specific"),
    Param("mixture_components", ["flash", "flash_nonneg", "pca", "canonical"],
          "covariance components that seed the prior (flash, flash_nonneg, pca, canonical)"),
    Param("npc", 2, "pca: number of principal components (the SoS default 2; the mash paper used 3)"),
    Param("n_subset", 6000, "vhat_mle: number of random-set rows used"),
    Param("max_iter", 6, "vhat_mle: maximum EM iterations"),
    Param("max_comp", -1, "plot_U: plot at most this many components (-1: all)"),
    Param("to_cor", False, "plot_U: show correlations instead of covariances scaled by max(diag)"),
    Param("tol", 1e-6, "plot_U: plot components whose weight exceeds tol"),
    Param("remove_label", False, "plot_U: replace condition names by t1..tn"),
    Param("name", "", "plot_U: plot the element 'name' of the RDS list; also a suffix of the PDF name"),
    Param("seed", 999, "random seed (vhat_mle subset, ud initial matrices)"),
    Param("ed_accelerate", True, "ed_bovy: SQUAREM-accelerated extreme deconvolution (--no-ed-accelerate: mashr's plain EM, R's matrices)"),
]

MASH_FIT_PARAMS = _COMMON + [
    Param("vhat_data", "", "residual correlation RDS written by mixture_prior (e.g. {prefix}.EE.V_simple.rds)"),
    Param("prior_data", "", "mixture prior RDS written by mixture_prior ed_bovy/ud (list(U, w, loglik))"),
    Param("output_level", 4, "mash outputlevel (4 keeps the likelihood matrix in the model)"),
    Param("compute_posterior", True, "also compute posteriors for the strong set (--no-compute-posterior to skip)"),
]

MASH_POSTERIOR_PARAMS = [
    Param("cwd", "./mash_posterior_output", "output folder (created if missing)"),
    Param("analysis_units", "", "file listing the unit RDS files, one path per line (first column)"),
    Param("mash_model", "", "mash model RDS: mash_fit's {prefix}.{EM}.mash_model.rds, or saveRDS(mash(...)) from R"),
    Param("vhat_data", "", "residual correlation RDS the model was fitted with (empty: the model file's vhat_file; 'identity')"),
    Param("posterior_vhat_files", [], "one V RDS per unit (--analysis-units order), or one for all; instead of --vhat-data"),
    Param("effect_model", "EE", "EE (alpha 0) or EZ (alpha 1): the effect model of the fit"),
    Param("data_table_name", "", "list element of each unit RDS that holds the matrices (readRDS(unit)$name); empty: the top level"),
    Param("bhat_key", "bhat", "list element of each unit with the effect estimates (variants x conditions)"),
    Param("shat_key", "sbhat", "list element of each unit with their standard errors"),
    Param("exclude_condition", [], "conditions to drop: names, or 1-based column numbers of the unit"),
    Param("posterior_cov", True, "keep the posterior covariances (posterior_contrast needs them; --no-posterior-cov to omit)"),
    Param("slice_method", False, "drop the conditions a unit lacks or has no estimate for, and its rows with a missing estimate"),
    Param("subset_model", "marginal", "model on a unit's conditions: marginal (exact) or pecotmr (its updateMashModelCov)"),
    Param("output_prefix", "", "prefix of the output names (SoS --name): {cwd}/cache/{prefix}.{unit}.posterior.rds"),
    Param("output_suffix", "all", "manifest name: {cwd}/{prefix}.{suffix}.posterior_list"),
    Param("workers", 1, "units computed in parallel processes"),
    Param("compress_level", 0, "gzip level of the per-unit RDS files: 0 none (fastest; gzip shrinks posterior doubles <10 %), 1-9"),
    Param("dask_scheduler", "", "address of a Dask scheduler: run the units as Dask tasks instead"),
    Param("allow_failed_units", False, "finish normally when some units failed (they are listed in *_failed.tsv)"),
    Param("orig_key", "", "posterior_contrast: unit element with the original estimates (default: --bhat-key)"),
    Param("cells", [], "posterior_contrast: conditions, in order, for the grouping and the summary (default: the model's)"),
    Param("group1", [], "posterior_contrast: conditions that are replicates of one cell type (share contrast weight)"),
    Param("group2", [], "posterior_contrast: a second group"),
    Param("group3", [], "posterior_contrast: a third group"),
    Param("grouping_recipe", "", "posterior_contrast: file of comma-separated groups, one per line (instead of --group1/2/3)"),
    Param("p_cut", 1e-5, "posterior_contrast: p-value cutoff of the significance summary"),
]

PARAMS: dict[str, list[Param]] = {
    "mixture_prior": MIXTURE_PRIOR_PARAMS,
    "mash_fit": MASH_FIT_PARAMS,
    "mash_posterior": MASH_POSTERIOR_PARAMS,
}

WORKFLOWS: dict[str, dict[str, str]] = {
    "mixture_prior": {
        "flash": "FLASH factors of the strong set -> {prefix}.flash.rds",
        "flash_nonneg": "FLASH with non-negative factors -> {prefix}.flash_nonneg.rds",
        "pca": "PCA components (npc) -> {prefix}.pca.rds",
        "canonical": "canonical covariances -> {prefix}.canonical.rds",
        "vhat_identity": "identity residual correlation -> {prefix}.{EM}.V_identity.rds",
        "vhat_simple": "null-set z correlation (|z|<2) -> {prefix}.{EM}.V_simple.rds",
        "vhat_mle": "EM residual correlation given the prior -> {prefix}.{EM}.V_mle.rds",
        "vhat_corshrink_xcondition": "CorShrink of null z -> {prefix}.{EM}.V_vhat_corshrink_xcondition.rds",
        "vhat_simple_specific": "nearest correlation of cov(null z) -> {prefix}.{EM}.V_vhat_simple_specific.rds",
        "ud": "udr prior (ED updates) -> {prefix}.{EM}.prior.rds",
        "ud_unconstrained": "udr prior (TED updates; EZ only) -> {prefix}.{EM}.prior.rds",
        "ed_bovy": "extreme-deconvolution prior (default) -> {prefix}.{EM}.prior.rds",
        "plot_U": "heatmaps of the prior components in --data -> {basename}[_name].pdf",
    },
    "mash_fit": {
        "mash": "fit mash on the random set, then posteriors for the strong set",
    },
    "mash_posterior": {
        "posterior": "the fitted model applied to every unit -> {cwd}/cache/{prefix}.{unit}.posterior.rds + posterior_list",
        "posterior_contrast": "deviation and pairwise contrasts per unit -> {cwd}/contrast/... + posterior_sum.csv",
        "posterior_contrast_plot": "the contrast summary as a heatmap -> {cwd}/{prefix}.posterior_sum.png",
    },
}

NOTEBOOKS = tuple(PARAMS)


class Options(Mapping):
    """The resolved parameters of one notebook run: a frozen dataclass, one field per parameter.

    Made by :func:`mashlib.protocol.resolve_params` from the table above (the field types are
    those of the defaults), so a reader follows ``p.effect_model`` from the command line
    (``--effect-model``) to the engine call. It is also a read-only mapping (``p["npc"]``,
    ``dict(p)``, ``dict(p, workflow=...)``), which is what papermill injects into a notebook.
    """

    def __getitem__(self, key):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self):
        return len(self.__dataclass_fields__)


def _make_options(notebook: str) -> type:
    fields = [(p.name, type(p.default), dataclasses.field(default=None)) for p in PARAMS[notebook]]
    cls_name = "".join(w.capitalize() for w in notebook.split("_")) + "Options"
    return dataclasses.make_dataclass(cls_name, fields, bases=(Options,), frozen=True, eq=True,
                                      namespace={"__doc__": f"Resolved parameters of the ``{notebook}`` notebook "
                                                            f"(see :class:`Options`)."})


_OPTIONS: dict[str, type] = {}


def options_class(notebook: str) -> type:
    """The :class:`Options` dataclass of ``notebook`` (one field per row of its parameter table)."""
    if notebook not in _OPTIONS:
        _OPTIONS[notebook] = _make_options(notebook)
    return _OPTIONS[notebook]


def defaults(notebook: str) -> dict[str, Any]:
    """Default parameter values of a notebook (fresh copies of list defaults)."""
    return {p.name: (list(p.default) if isinstance(p.default, list) else p.default)
            for p in PARAMS[notebook]}


def workflow_names(notebook: str) -> list[str]:
    """The workflows a notebook provides, in the source notebook's order."""
    return list(WORKFLOWS[notebook])

#: The three example commands of the protocol page (CLI docstring and the driver notebook).
EXAMPLE_COMMANDS = """mashlib run mixture_prior ed_bovy --output-prefix protocol_example \\
    --data input/mash/protocol_example.mashr_input.rds --cwd output/mixture_prior
mashlib run mash_fit mash --output-prefix protocol_example_mash \\
    --data input/mash/protocol_example.EE.mash.rds \\
    --vhat-data input/mash/protocol_example.EE.V_simple.rds \\
    --prior-data output/mixture_prior/protocol_example.EE.prior.rds \\
    --effect-model EE --compute-posterior --cwd output/mash_fit
mashlib run mixture_prior plot_U --output-prefix protocol_example_plots \\
    --data output/mixture_prior/protocol_example.EE.prior.rds --cwd output/mixture_prior"""
