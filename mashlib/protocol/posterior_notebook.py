"""Cells of ``notebooks/mash_posterior.ipynb`` (generated with the other protocol notebooks by
:mod:`mashlib.protocol.build_notebooks`)."""
from __future__ import annotations

__all__ = ["INTRO", "cells"]

INTRO = """# MASH posteriors per analysis unit (`mash_posterior`)

Applies a fitted MASH model (from `mash_fit`, or `saveRDS(mash(...))` from R) to every
analysis unit (gene, region) listed in `--analysis-units`, then compares conditions with
contrasts of the posterior. A port of xqtl-protocol's `mash_posterior.ipynb` and its
`mash_posterior.R` / `mash_posterior_contrast*.R` scripts (pecotmr's `mashPosterior` and
`mashPosteriorContrast`): `sos run pipeline/mash_posterior.ipynb WORKFLOW ...` becomes
`mashlib run mash_posterior WORKFLOW ...`.

| workflow | output |
|---|---|
{table}

Each unit is an RDS list holding a variants x conditions effect matrix and its standard
errors (`--bhat-key`/`--shat-key`, default `bhat`/`sbhat`; inside `readRDS(unit)$<name>`
with `--data-table-name`). Its columns are matched to the model's conditions **by name**;
`--exclude-condition` drops conditions (names, or 1-based column numbers of the unit); a
condition the model has and the unit lacks must be excluded (or `--slice-method` drops it,
and the conditions and rows with missing estimates, as the SoS `slice_method`). The model
is restricted to the kept conditions exactly (`--subset-model marginal`) or as pecotmr's
`updateMashModelCov` (`pecotmr`).

Units run in parallel processes (`--workers`) or on a Dask cluster (`--dask-scheduler`).
Every unit output has a JSON sidecar and is skipped when up to date, so a rerun only does
what is left. A unit that fails is named in the log and in `*_failed.tsv`; the others are
done and listed in the manifest (`unit<TAB>path`), then the run reports the failures
(`--allow-failed-units` to accept them).

```
mashlib run mash_posterior posterior --analysis-units units.txt \\
    --mash-model output/mash_fit/protocol_example_mash.EE.mash_model.rds \\
    --vhat-data input/mash/protocol_example.EE.V_simple.rds --cwd output/mash_posterior --workers 2
mashlib run mash_posterior posterior_contrast_plot --analysis-units units.txt \\
    --mash-model ... --group1 Brain_Cortex,Brain_Cerebellum --cwd output/mash_posterior
```

With the parameters left empty this notebook runs on a small example built from the shipped
input (a model on six conditions, four units of 25 variants).
"""

SETUP = """from mashlib.protocol import posterior_units as pu
from mashlib.protocol import posterior_workflow as pw
from mashlib.protocol.notebook import prepare

p = prepare("mash_posterior", workflow, globals())  # checked parameters (empty analysis_units: the example)
steps = pw.plan(workflow, p)                      # the steps this workflow runs
model = pu.load_unit_model(p["mash_model"])       # mashlib.mash_from_r on the model RDS, read once
units = pu.read_units_file(p["analysis_units"])
print(f"{len(units)} units; model: {model.n_conditions} conditions, {len(model.g.Ulist)} covariances x "
      f"{len(model.g.grid)} grid values, alpha = {model.alpha:g}; steps: {', '.join(steps)}")"""

POSTERIOR_MD = """## `posterior`: the model applied to every unit

For each unit, `pw.run_posterior` runs (in a worker process or a Dask task, unless the
unit's output is up to date):

```python
B, S = pu.read_unit_matrices(unit.path, opts)                 # readRDS(unit)[[bhat_key]], [[shat_key]]
B, S, keep, conds, notices = pu.prepare_unit(B, S, model, opts, where)   # align by name, exclude, slice,
                                                              # NA b -> 0, NA/Inf s -> 1000
g = ml.update_mash_model_cov(model.g, conds, keep, method=opts.subset_method)
data = ml.mash_set_data(B, S, alpha=opts.alpha, V=V[keep, keep], zero_Bhat_Shat_reset=1000)
post = ml.mash_compute_posterior_matrices(g, data, output_posterior_cov=opts.posterior_cov)
```

and saves `list(PosteriorMean, PosteriorSD, lfdr, NegativeProb, lfsr, PosteriorCov)` (rows
`mash::mash::<variant>`, columns the kept conditions; `PosteriorCov` R x R x J) to
`{cwd}/cache/[prefix.]<unit>.posterior.rds`. The table: per unit, the variants and the number
with lfsr < 0.05 in each condition."""

POSTERIOR = """post = contrast = None
if "posterior" in steps:
    post, manifest = pw.run_posterior(p, log=print, model=model)
    pw.show(p, "posterior", post, interactive)"""

CONTRAST_MD = """## `posterior_contrast`: contrasts between conditions

Per variant, over the conditions it was tested in (a non-zero original estimate),
`ml.mash_posterior_contrast(PosteriorMean, PosteriorCov, bhat, grouping)` gives each
condition's **deviation** from the mean of the others and every **pairwise** difference,
with posterior standard errors $\\sqrt{d^\\top \\Sigma_j d}$ and normal p-values, as pecotmr's
`mashPosteriorContrast`. `--group1/2/3` (or `--grouping-recipe`) mark replicate datasets
of one cell type, which then share its contrast weight. One tibble per unit
(`{cwd}/contrast/[prefix.]<unit>.posterior_contrast.rds`); `posterior_sum.csv` counts, per
pair of conditions, the variants and units with a contrast p < `p_cut`."""

CONTRAST = """if "posterior_contrast" in steps:
    contrast, contrast_manifest, summary = pw.run_contrast(p, post, log=print, model=model)
    pw.show(p, "posterior_contrast", contrast, interactive)"""

PLOT_MD = """## `posterior_contrast_plot`: the summary as a heatmap

Above the diagonal: the share of significant variant-unit pairs; below: the share of units
with a significant variant, for each pair of conditions."""

PLOT = """if "posterior_contrast_plot" in steps:
    png = pw.plot_summary(pw.summary_file(p), pw.plot_file(p))
    print(f"wrote {png}")
    pw.show(p, "posterior_contrast_plot")"""

FAILURES_MD = """## Failed units

Units that failed are listed in `*_failed.tsv`; the run stops here with their count and the
first one, unless `allow_failed_units`."""

FAILURES = """for step, res in (("posterior", post), ("posterior_contrast", contrast)):
    if res is not None:
        pw.check_failures(p, res, step)"""


def cells(table: str, param_cell: str) -> list:
    """The notebook's cells as ``(kind, source, *tags)`` for ``build_notebooks._nb``."""
    return [
        ("md", INTRO.replace("{table}", table)),
        ("code", param_cell, "parameters"),
        ("code", SETUP),
        ("md", POSTERIOR_MD),
        ("code", POSTERIOR),
        ("md", CONTRAST_MD),
        ("code", CONTRAST),
        ("md", PLOT_MD),
        ("code", PLOT),
        ("md", FAILURES_MD),
        ("code", FAILURES),
    ]
