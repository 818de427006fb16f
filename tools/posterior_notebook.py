"""The cells of ``mash_posterior.ipynb`` (used by ``tools/build_notebooks.py``).

A port of xqtl-protocol's ``mash_posterior.ipynb`` (its ``posterior`` and
``mash_posterior_contrast`` workflows and the ``mash_posterior*.R`` scripts, pecotmr's
``mashPosterior`` / ``mashPosteriorContrast``), laid out as the other workflow notebooks.
"""
from __future__ import annotations

__all__ = ["INTRO", "SECTIONS"]

INTRO = """# MASH posteriors per analysis unit (`mash_posterior`)

This notebook applies a fitted MASH model (from `mash_fit`, or `saveRDS(mash(...))` from R) to
every analysis unit (gene, region) of a study, and compares conditions with contrasts of the
posterior. A Python port of xqtl-protocol's `mash_posterior.ipynb` and its `mash_posterior.R` /
`mash_posterior_contrast*.R` scripts (pecotmr's `mashPosterior` and `mashPosteriorContrast`):
`sos run pipeline/mash_posterior.ipynb WORKFLOW ...` becomes `mashlib run mash_posterior
WORKFLOW ...` (SoS's `--name` is `--output-prefix`; its `mash_posterior_contrast` is
`posterior_contrast`, its `posterior_cntrast_plot` `posterior_contrast_plot`).

## Description

For each unit the `posterior` step matches the unit's columns to the model's conditions **by
name**, drops `exclude_condition` (names, or 1-based column numbers of the unit, as the R
script), restricts the model to the conditions kept (`subset_model = "marginal"`: the exact
marginal of the prior; `"pecotmr"`: pecotmr's `updateMashModelCov`), and computes mashr's
`mash_compute_posterior_matrices`. A condition the model has and a unit lacks must be excluded
(or `slice_method = True` drops it, and the unit's conditions and rows with missing estimates,
as the SoS `slice_method`). `posterior_contrast` then computes, per variant, each condition's
deviation from the others and every pairwise difference of the posterior means, with their
posterior standard errors, and summarises their significance over the units.

Units run in parallel processes (`workers`) or on a Dask cluster (`dask_scheduler`). Every unit
output has its own JSON sidecar and is skipped when up to date, so a rerun after a crash, a
failure or a change only does what is left. A unit that fails is named (in the log and in
`*_failed.tsv`); the other units are done and listed in the manifest, then the run reports the
failures in one line (`allow_failed_units = True` accepts them).

## Input

- `analysis_units`: a text file listing the unit RDS files, one per line (first column). Each
  unit is a list holding a variants x conditions effect matrix and its standard errors
  (`bhat_key`/`shat_key`, default `bhat`/`sbhat`; inside `readRDS(unit)$<name>` with
  `data_table_name`).
- `mash_model`: the model, `mash_fit`'s `{{prefix}}.{{EM}}.mash_model.rds` =
  `list(mash_model, vhat_file, prior_file)`, or a bare `saveRDS(mash(...))` from R.
- `vhat_data`: the residual correlation the model was fitted with (default: the `vhat_file` the
  model file records; `identity`), or `posterior_vhat_files`, one per unit.
- `effect_model`: that of the fit (`EE` or `EZ`).

## Output

| workflow | output |
|---|---|
{table}

Per unit `{{cwd}}/cache/[prefix.]<unit>.posterior.rds` = `list(PosteriorMean, PosteriorSD, lfdr,
NegativeProb, lfsr, PosteriorCov)` (the list `mash_posterior.R` saves; rows
`mash::mash::<variant>`, columns the kept conditions, `PosteriorCov` R x R x J), and
`{{cwd}}/contrast/[prefix.]<unit>.posterior_contrast.rds`, the tibble `mash_posterior_contrast.R`
saves (`feature_id`, then `mean_contrast_*`, `se_contrast_*`, `p_contrast_*`). The manifests
`{{cwd}}/[prefix.]{{suffix}}.posterior_list` and `..._contrast_list` hold `unit<TAB>path`;
`posterior_sum.csv` is `mash_posterior_contrast_summary.R`'s table.

## Example commands

```bash
mashlib run mash_posterior posterior --analysis-units units.txt \\
    --mash-model output/mash_fit/protocol_example_mash.EE.mash_model.rds \\
    --vhat-data input/mash/protocol_example.EE.V_simple.rds --cwd output/mash_posterior --workers 2
mashlib run mash_posterior posterior_contrast_plot --analysis-units units.txt \\
    --mash-model output/mash_fit/protocol_example_mash.EE.mash_model.rds \\
    --group1 Brain_Cortex,Brain_Cerebellum --cwd output/mash_posterior
mashlib run mash_posterior -h        # every workflow and parameter, with defaults and help
```

With `analysis_units` empty the notebook runs a small example built from the shipped input
(a model on six conditions fitted on its random set, the strong set cut into four units of 25
variants) into `output/mash_posterior` of the checkout; it takes a few seconds.
"""

POSTERIOR_TEXT = """The fitted model applied to every unit. For each unit whose output is not up to date
(in a worker process or a Dask task), `protocol.run_posterior` does, with the library:

```python
B, S = pu.read_unit_matrices(unit.path, opts)             # readRDS(unit)[[bhat_key]], [[shat_key]]
B, S, keep, conds, notices = pu.prepare_unit(B, S, model, opts, where)   # align by name, exclude,
                                                          # slice; NA b -> 0, NA/Inf s -> 1000
g = ml.update_mash_model_cov(model.g, conds, keep, method=p.subset_model)
data = ml.mash_set_data(B, S, alpha=p.alpha, V=V[keep, keep], zero_Bhat_Shat_reset=1000)
post = ml.mash_compute_posterior_matrices(g, data, output_posterior_cov=p.posterior_cov)
```

(`pu` is `mashlib.protocol.posterior_units`) and writes `post` as R's list with its sidecar.
The table below: per unit, its variants and the number with lfsr < 0.05 in each condition."""

POSTERIOR = """s = protocol.step("posterior", p)
if s.needed:
    model = protocol.load_unit_model(p.mash_model)      # mashlib.mash_from_r on the model RDS, read once
    results, manifest = protocol.run_posterior(p, log=p.log, model=model, step=s)   # every unit (processes or Dask)
    protocol.check_failures(p, results, "posterior")    # failed units named in one line (the others are written)
    s.save()                                            # the manifest's sidecar (unit list, model, V, unit files)"""

CONTRAST_TEXT = """Per variant, over the conditions it was tested in (a non-zero original estimate),
`ml.mash_posterior_contrast(PosteriorMean, PosteriorCov, bhat, grouping)` gives each condition's
**deviation** from the mean of the others and every **pairwise** difference, with posterior
standard errors $\\sqrt{d^\\top \\Sigma_j d}$ and normal p-values, as pecotmr's
`mashPosteriorContrast`. `group1/2/3` (or `grouping_recipe`) mark replicate datasets of one cell
type, which then share its contrast weight. `posterior_sum.csv` counts, per pair of `cells`, the
variants and the units with a contrast p < `p_cut`."""

CONTRAST = """s = protocol.step("posterior_contrast", p)
if s.needed:
    results, manifest, summary = protocol.run_contrast(p, log=p.log, step=s)   # every unit with a posterior
    protocol.check_failures(p, results, "posterior_contrast")
    s.save()                                            # the contrast manifest and posterior_sum.csv"""

PLOT_TEXT = """The summary as a heatmap (`mash_posterior_contrast_plot.R`): above the diagonal the share of
significant variant-unit pairs, below it the share of units with a significant variant, for
each pair of conditions."""

PLOT = """s = protocol.step("posterior_contrast_plot", p)
if s.needed:
    protocol.plot_summary(protocol.summary_file(p), s.output)   # posterior_sum.png
    s.save()"""

_CMD = ("mashlib run mash_posterior {wf} --analysis-units units.txt \\\n"
        "    --mash-model output/mash_fit/protocol_example_mash.EE.mash_model.rds --cwd output/mash_posterior")

#: (step, title, text, compute cell, example command)
SECTIONS = [
    ("posterior", "# Posteriors\n\n## `posterior`: the model applied to every unit", POSTERIOR_TEXT, POSTERIOR,
     _CMD.format(wf="posterior")),
    ("posterior_contrast", "# Contrasts\n\n## `posterior_contrast`: deviation and pairwise contrasts",
     CONTRAST_TEXT, CONTRAST, _CMD.format(wf="posterior_contrast")),
    ("posterior_contrast_plot", "## `posterior_contrast_plot`: the contrast summary as a heatmap", PLOT_TEXT, PLOT,
     _CMD.format(wf="posterior_contrast_plot")),
]
