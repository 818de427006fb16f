"""The ``mash_posterior`` notebook: its workflows as functions (xqtl-protocol ``mash_posterior.ipynb``).

=========================  ===================================================================
workflow                   output (``[p.]`` is ``--output-prefix`` and a dot, SoS's ``--name``)
=========================  ===================================================================
``posterior``              ``{cwd}/cache/[p.]{unit}.posterior.rds`` per unit (the list
                           ``mash_posterior.R`` saves) and the manifest
                           ``{cwd}/[p.]{suffix}.posterior_list`` (``unit<TAB>path``)
``posterior_contrast``     ``{cwd}/contrast/[p.]{unit}.posterior_contrast.rds`` per unit (the
                           tibble ``mash_posterior_contrast.R`` saves), the manifest
                           ``{cwd}/[p.]{suffix}.posterior_contrast_list`` and the summary
                           ``{cwd}/[p.]posterior_sum.csv`` (``mash_posterior_contrast_summary.R``)
``posterior_contrast_plot``  ``{cwd}/[p.]posterior_sum.png``: the summary as a heatmap
                           (``mash_posterior_contrast_plot.R``)
=========================  ===================================================================

Each workflow runs the ones before it (``posterior_contrast_plot`` runs ``posterior`` and
``posterior_contrast``): the three are steps of :mod:`mashlib.protocol.chain` computed by the
sections of ``mash_posterior.ipynb``, whose cells call :func:`run_posterior`,
:func:`run_contrast` and :func:`plot_summary`.  A step reruns when its parameters, the unit
list, the model, V or any unit file changed (the unit files are its inputs); every per-unit
output then has its own JSON sidecar and is skipped when up to date, so a rerun after a
crash, a failure or a change only does what is left.  A unit that fails is
named (with its error) in the log and in ``{cwd}/[p.]{suffix}.<step>_failed.tsv``; the other
units are done and listed in the manifest, then the workflow reports the failures in one
line (exit status 2 on the command line) unless ``--allow-failed-units``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import MashInputError
from . import posterior_units as pu

__all__ = ["STEPS", "finish_params", "plan", "run", "run_posterior", "run_contrast",
           "write_summary", "plot_summary", "check_failures", "resolve_example", "make_example", "show_step",
           "posterior_results", "posterior_inputs", "contrast_inputs", "POSTERIOR_STEP_PARAMS", "CONTRAST_STEP_PARAMS",
           "unit_output", "contrast_output", "manifest_file", "summary_file", "plot_file", "UnitsFailedError"]

#: the steps each workflow runs, in order
STEPS = {
    "posterior": ["posterior"],
    "posterior_contrast": ["posterior", "posterior_contrast"],
    "posterior_contrast_plot": ["posterior", "posterior_contrast", "posterior_contrast_plot"],
}

NOTEBOOK = "mash_posterior"


class UnitsFailedError(MashInputError):
    """Some units failed; the others are written. The message names the first and the list file."""


# --------------------------------------------------------------------------- names


def _pre(p) -> str:
    return f"{p['output_prefix']}." if p.get("output_prefix") else ""


def unit_output(p, unit_id: str) -> Path:
    """``{cwd}/cache/[p.]{unit}.posterior.rds``."""
    return Path(p["cwd"]) / "cache" / f"{_pre(p)}{unit_id}.posterior.rds"


def contrast_output(p, unit_id: str) -> Path:
    """``{cwd}/contrast/[p.]{unit}.posterior_contrast.rds``."""
    return Path(p["cwd"]) / "contrast" / f"{_pre(p)}{unit_id}.posterior_contrast.rds"


def manifest_file(p, step: str = "posterior") -> Path:
    """``{cwd}/[p.]{suffix}.posterior_list`` (``posterior_contrast_list`` for the contrasts)."""
    return Path(p["cwd"]) / f"{_pre(p)}{p['output_suffix']}.{step}_list"


def failed_file(p, step: str) -> Path:
    return Path(p["cwd"]) / f"{_pre(p)}{p['output_suffix']}.{step}_failed.tsv"


def summary_file(p) -> Path:
    """``{cwd}/[p.]posterior_sum.csv``."""
    return Path(p["cwd"]) / f"{_pre(p)}posterior_sum.csv"


def plot_file(p) -> Path:
    """``{cwd}/[p.]posterior_sum.png``."""
    return Path(p["cwd"]) / f"{_pre(p)}posterior_sum.png"


# --------------------------------------------------------------------------- parameters


def finish_params(workflow: str, p: dict) -> dict:
    """Validate the ``mash_posterior`` parameters (types are already checked) and the input
    files no step produces, so that bad input fails before anything runs."""
    from . import naming
    from ..model.condition_subset import SUBSET_METHODS
    p["effect_model"] = naming.effect_model(p["effect_model"])
    if not p["analysis_units"]:
        raise MashInputError(f"{NOTEBOOK} {workflow}: --analysis-units is required (a file listing one unit RDS per line)")
    if not Path(p["analysis_units"]).is_file():
        raise MashInputError(f"--analysis-units {p['analysis_units']}: file not found")
    if not p["mash_model"]:
        raise MashInputError(f"{NOTEBOOK} {workflow}: --mash-model is required (mash_fit's "
                             "{prefix}.{EM}.mash_model.rds, or saveRDS(mash(...)) from R)")
    if not Path(p["mash_model"]).is_file():
        raise MashInputError(f"--mash-model {p['mash_model']}: file not found; it is written by "
                             "`mashlib run mash_fit mash ...`")
    if p["vhat_data"] and p["posterior_vhat_files"]:
        raise MashInputError("--vhat-data and --posterior-vhat-files: give one of them")
    for f in ([p["vhat_data"]] if p["vhat_data"] and p["vhat_data"] != "identity" else []) + p["posterior_vhat_files"]:
        if not Path(f).is_file():
            raise MashInputError(f"V file {f}: file not found (--vhat-data / --posterior-vhat-files)")
    if p["subset_model"] not in SUBSET_METHODS:
        raise MashInputError(f"--subset-model {p['subset_model']!r}: choose one of {', '.join(SUBSET_METHODS)}")
    if not 0 <= p["compress_level"] <= 9:
        raise MashInputError(f"--compress-level {p['compress_level']}: must be 0 (none) to 9")
    if p["workers"] < 1:
        raise MashInputError(f"--workers {p['workers']}: must be at least 1")
    if not 0 < p["p_cut"] <= 1:
        raise MashInputError(f"--p-cut {p['p_cut']}: must be in (0, 1]")
    if p["grouping_recipe"] and not Path(p["grouping_recipe"]).is_file():
        raise MashInputError(f"--grouping-recipe {p['grouping_recipe']}: file not found")
    if workflow != "posterior" and not p["posterior_cov"]:
        raise MashInputError(f"{workflow} needs the posterior covariances; drop --no-posterior-cov")
    # one cache per folder however it is spelled (as the other notebooks): paths absolute and resolved
    for k in ("cwd", "analysis_units", "mash_model", "grouping_recipe"):
        if p[k]:
            p[k] = str(Path(p[k]).expanduser().resolve())
    if p["vhat_data"] not in ("", "identity"):
        p["vhat_data"] = str(Path(p["vhat_data"]).expanduser().resolve())
    p["posterior_vhat_files"] = [str(Path(f).expanduser().resolve()) for f in p["posterior_vhat_files"]]
    return p


def plan(workflow: str, p: dict) -> list[str]:
    """The steps ``workflow`` runs."""
    return list(STEPS[workflow])


#: parameters of the step signatures (a change reruns the step; the per-unit sidecars decide
#: which units actually change)
POSTERIOR_STEP_PARAMS = ("effect_model", "data_table_name", "bhat_key", "shat_key", "exclude_condition",
                         "posterior_cov", "slice_method", "subset_model", "compress_level", "vhat_data",
                         "posterior_vhat_files")
CONTRAST_STEP_PARAMS = ("orig_key", "bhat_key", "data_table_name", "cells", "group1", "group2", "group3",
                        "grouping_recipe", "p_cut", "compress_level")


def _unit_files(p) -> list[Path]:
    try:
        return [u.path for u in pu.read_units_file(p["analysis_units"])]
    except MashInputError:
        return []


def posterior_inputs(p) -> list[tuple[Path, None]]:
    """Inputs of the ``posterior`` step: the unit list, the model, V, and every unit file that
    exists (a missing one is named as that unit's failure when the step runs)."""
    ins = [Path(p["analysis_units"]), Path(p["mash_model"])]
    ins += [Path(f) for f in ([p["vhat_data"]] if p["vhat_data"] not in ("", "identity") else [])]
    ins += [Path(f) for f in p["posterior_vhat_files"]]
    ins += [f for f in _unit_files(p) if f.is_file()]
    ff = failed_file(p, "posterior")      # units that failed last time: newer than the manifest, so they rerun
    if ff.is_file():
        ins.append(ff)
    return [(f, None) for f in dict.fromkeys(ins)]


def contrast_inputs(p) -> list[tuple[Path, Optional[str]]]:
    """Inputs of ``posterior_contrast``: the posterior manifest and its sidecar (which changes
    whenever a unit's posterior does), and the grouping recipe when given."""
    from . import naming
    man = manifest_file(p)
    ins = [(man, "posterior"), (naming.sidecar_of(man), "posterior")]
    if p["grouping_recipe"]:
        ins.append((Path(p["grouping_recipe"]), None))
    ff = failed_file(p, "posterior_contrast")
    if ff.is_file():
        ins.append((ff, None))
    return ins


# --------------------------------------------------------------------------- helpers


def _sha_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _write_text(path: Path, text: str):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_list(path: Path, results, p, step: str):
    """Manifest ``unit<TAB>path`` of the units with an output, and ``*_failed.tsv`` listing the
    units that failed (only its header when none did).  The step's sidecar is written by
    ``StepRun.save`` (:mod:`mashlib.protocol.cells`)."""
    ok = [r for r in results if r.status != "failed"]
    _write_text(path, "".join(f"{r.unit_id}\t{Path(r.output).resolve()}\n" for r in ok))
    bad = [r for r in results if r.status == "failed"]
    # always written (just the header when every unit is done): an input of the step, so a run
    # that left failures is rerun next time (its list is newer than the manifest)
    _write_text(failed_file(p, step), "unit\tfile\terror\n" + "".join(
        f"{r.unit_id}\t{r.path}\t{r.error.replace(chr(9), ' ').splitlines()[0] if r.error else ''}\n"
        for r in bad))


def check_failures(p, results, step: str):
    """Raise :class:`UnitsFailedError` (one line: how many, the first, the list file) when
    units of ``step`` failed, unless ``allow_failed_units``."""
    bad = [r for r in results if r.status == "failed"]
    if not bad or p["allow_failed_units"]:
        return
    raise UnitsFailedError(
        f"{step}: {len(bad)} of {len(results)} units failed (first: {bad[0].unit_id}: {bad[0].error}); the other "
        f"{len(results) - len(bad)} are written and listed in {manifest_file(p, step)}; all failures: "
        f"{failed_file(p, step)}. Fix them and rerun (finished units are skipped), or pass --allow-failed-units")


def _client(p, client):
    if client is not None or not p.get("dask_scheduler"):
        return client, False
    try:
        from dask.distributed import Client
    except ImportError:  # pragma: no cover - the dask extra
        raise MashInputError("--dask-scheduler needs dask.distributed: pip install 'mashlib[dask]'") from None
    return Client(p["dask_scheduler"]), True


# --------------------------------------------------------------------------- posterior


def _vhat(p, model: pu.UnitModel, units, log):
    """The common V (array), or a dict unit id -> V file; and the signature of each unit's V."""
    files = p["posterior_vhat_files"]
    if files:
        if len(files) == 1:
            return pu.read_vhat_file(files[0], model), {u.unit_id: pu.sha256_file(files[0]) for u in units}
        if len(files) != len(units):
            raise MashInputError(f"--posterior-vhat-files: {len(files)} files for {len(units)} units; give one per "
                                 "unit (in --analysis-units order) or one for all")
        for f in files:
            pu.read_vhat_file(f, model)             # validated once, here
        return ({u.unit_id: f for u, f in zip(units, files)},
                {u.unit_id: pu.sha256_file(f) for u, f in zip(units, files)})
    src = p["vhat_data"]
    if not src:
        rec = model.vhat_file
        if rec and Path(rec).is_file():
            log(f"[posterior] V: {rec} (recorded in the model file)")
            src = rec
        else:
            raise MashInputError("--vhat-data: not given and the model file records no readable V "
                                 f"({rec or 'none'}); give the residual correlation the model was fitted with, "
                                 "or --vhat-data identity")
    sig = "identity" if src == "identity" else pu.sha256_file(src)
    return pu.read_vhat_file(src, model), {u.unit_id: sig for u in units}


def _record_failed_list(step, p, name: str):
    """The failed-unit list is an input of the step (see :func:`posterior_inputs`): record it
    in the step's sidecar from the first run on."""
    ff = failed_file(p, name)
    if step is not None and ff.is_file() and ff not in step.inputs:
        step.inputs.append(ff)


def run_posterior(p: dict, log: Callable[[str], None] = print, client=None, model: pu.UnitModel = None,
                  step=None):
    """The ``posterior`` step over every unit; returns ``(results, manifest path)``.

    ``step``: the notebook's :class:`~mashlib.protocol.StepRun`, whose recorded inputs get the
    failed-unit list."""
    units = pu.read_units_file(p["analysis_units"])
    model = model or pu.load_unit_model(p["mash_model"])
    alpha = 1.0 if p["effect_model"] == "EZ" else 0.0
    if model.alpha != alpha:
        raise MashInputError(f"--mash-model {p['mash_model']}: the model was fitted with alpha={model.alpha:g} but "
                             f"--effect-model {p['effect_model']} gives alpha={alpha:g}; use the effect model of the fit")
    if model.conditions:
        odd = [t for t in p["exclude_condition"] if not t.isdigit() and t not in model.conditions]
        if odd:
            log(f"[posterior] note: --exclude-condition {', '.join(odd)}: not condition(s) of the model; dropped "
                "from the units that have such a column")
    vhat, vsig = _vhat(p, model, units, log)
    opts = pu.UnitOptions(bhat_key=p["bhat_key"], shat_key=p["shat_key"], data_table_name=p["data_table_name"],
                          exclude=tuple(p["exclude_condition"]), posterior_cov=p["posterior_cov"],
                          slice_method=p["slice_method"], subset_method=p["subset_model"], alpha=alpha,
                          compresslevel=p["compress_level"])
    base = {"model": pu.sha256_file(p["mash_model"]), "opts": {k: v for k, v in vars(opts).items()
                                                                 if k != "compresslevel"}}
    tasks = [(u, str(unit_output(p, u.unit_id)), _sha_json({**base, "V": vsig[u.unit_id]}), "posterior")
             for u in units]
    state = {"fn": pu.posterior_unit_fn, "model": model, "vhat": vhat, "opts": opts}
    client, own = _client(p, client)
    t0 = time.perf_counter()
    try:
        results = pu.run_units(tasks, state, workers=p["workers"], client=client, log=log, label="posterior")
    finally:
        if own:
            client.close()
    man = manifest_file(p)
    _write_list(man, results, p, "posterior")
    _record_failed_list(step, p, "posterior")
    log(f"[posterior] manifest {man}")
    return results, man


# --------------------------------------------------------------------------- contrasts


def _grouping(p, conditions: list):
    from ..model.posterior_contrast import contrast_grouping, read_grouping_recipe
    cells = p["cells"] or conditions
    unknown = [c for c in cells if conditions and c not in conditions]
    if unknown:
        raise MashInputError(f"--cells: {unknown} are not conditions of the model ({', '.join(conditions)})")
    groups = read_grouping_recipe(p["grouping_recipe"]) if p["grouping_recipe"] else \
        [p["group1"], p["group2"], p["group3"]]
    return cells, contrast_grouping(conditions or cells, groups, cells)


def _pair_counts(tab: pd.DataFrame, cells, p_cut) -> dict:
    import itertools
    out = {}
    for a, b in itertools.combinations(cells, 2):
        col = f"p_contrast_{a}_vs_{b}"
        if col in tab.columns:
            pv = pd.to_numeric(tab[col], errors="coerce").to_numpy(dtype=float)
            pv = pv[~np.isnan(pv)]
            if pv.size:
                out[f"{a}_vs_{b}"] = [int((pv < p_cut).sum()), int(pv.size)]
    return out


def contrast_unit_fn(unit: pu.Unit, state: dict, where: str):
    """The ``posterior_contrast`` step of one unit (``fn`` of :func:`posterior_units.run_units`)."""
    from ..io import RArray, preprocess_matrices, read_rds
    from ..model import mash_posterior_contrast
    post_file = Path(state["posterior_files"][unit.unit_id])
    post = read_rds(post_file)
    if not isinstance(post, dict) or "PosteriorMean" not in post:
        raise MashInputError(f"{post_file}: not a posterior list (no PosteriorMean)")
    if not isinstance(post.get("PosteriorCov"), RArray):
        raise MashInputError(f"{post_file}: has no PosteriorCov; rerun the posterior without --no-posterior-cov")
    pm = post["PosteriorMean"]
    opts = state["opts"]
    B, S = pu.read_unit_matrices(unit.path, opts)
    if not isinstance(B.columns, pd.RangeIndex):
        B = B.set_axis([str(c) for c in B.columns], axis=1)
    orig, _ = preprocess_matrices(B, S)          # the posterior's row names (mash::mash::<id>); NA -> 0 = untested
    missing = [c for c in pm.columns if c not in orig.columns]
    if missing:
        raise MashInputError(f"{where}: the original estimates ({opts.bhat_key!r}) lack conditions {missing} "
                             "of the posterior")
    orig = orig.reindex(index=pm.index)
    grouping = state["grouping"]
    if grouping is not None:
        grouping = {c: grouping.get(c, 0) for c in pm.columns}
    tab = mash_posterior_contrast(pm, post["PosteriorCov"], orig, grouping)
    return tab, [], {"pair_counts": _pair_counts(tab, state["cells"], state["p_cut"]),
                     "cells": list(state["cells"]), "p_cut": state["p_cut"]}


def posterior_results(p: dict) -> list:
    """The ``posterior`` step's outcome per unit, from its manifest (units listed there have a
    posterior; the others are failures, named as such)."""
    man = manifest_file(p)
    listed = {}
    if man.is_file():
        for line in man.read_text().splitlines():
            uid, _, path = line.partition("\t")
            listed[uid] = path
    out = []
    for u in pu.read_units_file(p["analysis_units"]):
        if u.unit_id in listed and Path(listed[u.unit_id]).is_file():
            out.append(pu.UnitResult(u.unit_id, str(u.path), listed[u.unit_id], "up to date"))
        else:
            out.append(pu.UnitResult(u.unit_id, str(u.path), str(unit_output(p, u.unit_id)), "failed",
                                     error=f"{u.path}: no posterior (the posterior step failed for this unit)"))
    return out


def run_contrast(p: dict, post_results=None, log: Callable[[str], None] = print, client=None,
                 model: pu.UnitModel = None, step=None):
    """The ``posterior_contrast`` step over the units whose posterior exists (``post_results``,
    default: read from the posterior manifest); writes the manifest and the summary CSV.
    Returns ``(results, manifest, summary)``."""
    post_results = posterior_results(p) if post_results is None else post_results
    model = model or pu.load_unit_model(p["mash_model"])
    conditions = list(model.conditions or [])
    cells, grouping = _grouping(p, conditions)
    if len(cells) < 2:
        raise MashInputError(f"posterior_contrast: needs at least two conditions, the model has {cells}")
    ok = [r for r in post_results if r.status != "failed"]
    opts = pu.UnitOptions(bhat_key=p["orig_key"] or p["bhat_key"], shat_key=p["shat_key"],
                          data_table_name=p["data_table_name"], compresslevel=p["compress_level"])
    tasks = []
    for r in ok:
        side = Path(r.output).with_name(Path(r.output).name + ".json")
        rec = json.loads(side.read_text()) if side.is_file() else {}
        sig = _sha_json({"posterior": [rec.get(k) for k in ("signature", "input_sha256", "output_size",
                                                            "output_mtime_ns")],
                         "orig_key": opts.bhat_key, "table": opts.data_table_name, "grouping": grouping,
                         "cells": cells, "p_cut": p["p_cut"]})
        tasks.append((pu.Unit(r.unit_id, Path(r.path)), str(contrast_output(p, r.unit_id)), sig, "posterior_contrast"))
    state = {"fn": contrast_unit_fn, "opts": opts, "grouping": grouping, "cells": cells, "p_cut": p["p_cut"],
             "posterior_files": {r.unit_id: r.output for r in ok}}
    client, own = _client(p, client)
    t0 = time.perf_counter()
    try:
        results = pu.run_units(tasks, state, workers=p["workers"], client=client, log=log,
                               label="posterior_contrast")
    finally:
        if own:
            client.close()
    man = manifest_file(p, "posterior_contrast")
    _write_list(man, results, p, "posterior_contrast")
    _record_failed_list(step, p, "posterior_contrast")
    summ = write_summary(p, results, cells)
    log(f"[posterior_contrast] manifest {man}; summary {summ}")
    return results, man, summ


def write_summary(p: dict, results, cells) -> Path:
    """``posterior_sum.csv`` as R's ``write.csv``: rows n_sig_snp, n_snp, n_sig_feature,
    n_all_feature; one column per pair of ``cells`` (from the per-unit counts kept in the
    sidecars, or the contrast files when those were made with another cutoff)."""
    import itertools
    from ..io import read_rds
    pairs = [f"{a}_vs_{b}" for a, b in itertools.combinations(cells, 2)]
    S = pd.DataFrame(0.0, index=["n_sig_snp", "n_snp", "n_sig_feature", "n_all_feature"], columns=pairs)
    for r in results:
        if r.status == "failed":
            continue
        ex = r.extra or {}
        if ex.get("cells") == list(cells) and ex.get("p_cut") == p["p_cut"]:
            counts = ex["pair_counts"]
        else:
            counts = _pair_counts(read_rds(r.output), cells, p["p_cut"])
        for pair, (nsig, n) in counts.items():
            S[pair] += np.array([nsig, n, nsig > 0, 1], dtype=float)
    lines = ['"",' + ",".join(f'"{c}"' for c in pairs)]
    for row in S.index:
        lines.append(f'"{row}",' + ",".join(f"{v:g}" for v in S.loc[row]))
    out = summary_file(p)
    _write_text(out, "\n".join(lines) + "\n")
    return out


def plot_summary(csv_path, out_png) -> Path:
    """The contrast summary as a symmetric heatmap (``mash_posterior_contrast_plot.R``).

    Each pair is put in alphabetical order (``a_vs_b`` with ``a <= b``); the tile at
    (x = a, y = b) shows the share of significant SNP-feature pairs (``n_sig_snp / n_snp``,
    purple-white-green), the tile at (x = b, y = a) the share of features with a significant
    SNP (``n_sig_feature / n_all_feature``, green-white-purple), each labelled in percent;
    the diagonal is 0.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap
    df = pd.read_csv(csv_path, index_col=0)
    cons: list[str] = []
    snp, feat = {}, {}
    for col in df.columns:
        a, _, b = str(col).partition("_vs_")
        if a > b:
            a, b = b, a
        with np.errstate(invalid="ignore", divide="ignore"):
            snp[(a, b)] = df.loc["n_sig_snp", col] / df.loc["n_snp", col]
            feat[(b, a)] = df.loc["n_sig_feature", col] / df.loc["n_all_feature", col]
        for c in (a, b):
            if c not in cons:
                cons.append(c)
    cons = sorted(cons)
    n = len(cons)
    pos = {c: i for i, c in enumerate(cons)}
    Ms, Mf = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for (a, b), v in snp.items():
        Ms[pos[b], pos[a]] = v
    for (a, b), v in feat.items():
        Mf[pos[b], pos[a]] = v
    np.fill_diagonal(Ms, 0.0)
    side = 4 + n * 0.5
    fig, ax = plt.subplots(figsize=(side, side))
    # ggplot's scale_fill_gradient2 (midpoint 0) on ratios in [0, max]: white -> high colour
    cm_s = LinearSegmentedColormap.from_list("snp", ["white", "#1B7837"])
    cm_f = LinearSegmentedColormap.from_list("feature", ["white", "#762A83"])
    top_s = float(np.nanmax(Ms)) if np.isfinite(Ms).any() and np.nanmax(Ms) > 0 else 1.0
    top_f = float(np.nanmax(Mf)) if np.isfinite(Mf).any() and np.nanmax(Mf) > 0 else 1.0
    im1 = ax.imshow(np.ma.masked_invalid(Ms), cmap=cm_s, vmin=0, vmax=top_s, origin="lower")
    im2 = ax.imshow(np.ma.masked_invalid(Mf), cmap=cm_f, vmin=0, vmax=top_f, origin="lower")
    for M in (Ms, Mf):
        for i in range(n):
            for j in range(n):
                if np.isfinite(M[i, j]):
                    ax.text(j, i, f"{round(M[i, j], 4) * 100:g}%", ha="center", va="center",
                            fontsize=max(5, 10 - n // 4))
    ax.set_xticks(range(n), cons, rotation=90)
    ax.set_yticks(range(n), cons)
    ax.set_xlabel("con1")
    ax.set_ylabel("con2")
    fig.colorbar(im1, ax=ax, fraction=0.046, pad=0.03, label="SNP_Feature pair (above the diagonal)")
    fig.colorbar(im2, ax=ax, fraction=0.046, pad=0.02, location="top", label="Feature (below the diagonal)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(out_png)


# --------------------------------------------------------------------------- running


def run(workflow: str, p: dict, log: Callable[[str], None] = print, client=None) -> list[Path]:
    """Run a ``mash_posterior`` workflow from Python on checked parameters ``p`` (from
    ``protocol.check_inputs("mash_posterior", workflow, params)``), optionally on a
    ``dask.distributed.Client``: the same work as the notebook's sections, without the
    step-level skipping (every unit is still skipped when its output is up to date).
    Returns the files the workflow itself wrote."""
    Path(p["cwd"]).mkdir(parents=True, exist_ok=True)
    steps = STEPS[workflow]
    model = pu.load_unit_model(p["mash_model"])
    post, man = run_posterior(p, log, client, model)
    if steps == ["posterior"]:
        check_failures(p, post, "posterior")
        return [man]
    con, cman, summ = run_contrast(p, post, log, client, model)
    outs = [cman, summ]
    if "posterior_contrast_plot" in steps:
        png = plot_summary(summ, plot_file(p))
        log(f"[posterior_contrast_plot] wrote {png}")
        outs = [png]
    check_failures(p, post, "posterior")
    check_failures(p, con, "posterior_contrast")
    return outs


def _repo_root() -> Path:
    """The checkout holding ``input/`` and ``output/`` (as :func:`mashlib.protocol.notebook.repo_root`)."""
    return Path(__file__).resolve().parents[2]


EXAMPLE_CONDITIONS = ["Brain_Cortex", "Brain_Cerebellum", "Liver", "Muscle_Skeletal", "Testis", "Whole_Blood"]


def make_example(dest, source=None) -> dict:
    """A small runnable example from the shipped protocol input (about 3 s): a mash model
    fitted on the random set restricted to six conditions (canonical + PCA covariances),
    its V, and the strong set cut into four units ``region1..4`` (``bhat``/``sbhat``).

    Returns the parameters that point at it (``analysis_units``, ``mash_model``, ``vhat_data``).
    """
    from ..io import read_rds, write_rds
    from ..model import cov_canonical, cov_pca, mash
    from .steps import load_input, make_data, read_vhat
    dest = Path(dest)
    src = Path(source or _repo_root() / "input" / "mash")
    done = dest / "example.analysis_units.txt"
    params = {"analysis_units": str(done), "mash_model": str(dest / "example.EE.mash_model.rds"),
              "vhat_data": str(dest / "example.EE.V_simple.rds")}
    if done.is_file() and all(Path(v).is_file() for v in params.values()):
        return params
    raw = read_rds(src / "protocol_example.mashr_input.rds")
    conds = EXAMPLE_CONDITIONS
    inp = load_input(src / "protocol_example.mashr_input.rds", require=("strong", "random"))
    allc = list(inp.conditions)
    ix = [allc.index(c) for c in conds]
    V = read_vhat(src / "protocol_example.EE.V_simple.rds")[np.ix_(ix, ix)]
    ds = make_data(inp.strong.b[conds], inp.strong.s[conds], 0.0, V)
    U = {**cov_canonical(ds), **cov_pca(ds, 3)}
    dr = make_data(inp.random.b[conds], inp.random.s[conds], 0.0, V)
    m = mash(dr, U, outputlevel=2)
    labelled = [k for k in U if k.startswith("PCA") or k == "tPCA"]
    Vdf = pd.DataFrame(V, index=conds, columns=conds)
    write_rds(params["vhat_data"], Vdf)
    write_rds(params["mash_model"], {"mash_model": m.to_r(list(inp.random.b.index), conds, labelled),
                                     "vhat_file": params["vhat_data"], "prior_file": ""})
    b, s = raw["strong.b"][conds], raw["strong.s"][conds]
    lines = []
    for k, rows in enumerate(np.array_split(np.arange(b.shape[0]), 4), start=1):
        f = dest / f"region{k}.rds"
        bb, ss = b.iloc[rows], s.iloc[rows]
        write_rds(f, {"bhat": bb, "sbhat": ss, "Z": bb / ss})
        lines.append(f"{f}\n")
    _write_text(done, "".join(lines))
    return params


def resolve_example(params: dict) -> dict:
    """Empty ``analysis_units``: the example of :func:`make_example` (built once under
    ``<repo>/output/mash_posterior/example``), outputs in ``<repo>/output/mash_posterior``."""
    params = dict(params)
    if params.get("analysis_units"):
        return params
    out = _repo_root() / "output" / "mash_posterior"
    params.update(make_example(out / "example"))
    params["posterior_vhat_files"] = []
    if not params.get("cwd") or params["cwd"] == "./mash_posterior_output":
        params["cwd"] = str(out)
    if not any(params.get(k) for k in ("group1", "group2", "group3", "grouping_recipe")):
        params["group1"] = ["Brain_Cortex", "Brain_Cerebellum"]
    return params


def _display(obj):
    try:
        from IPython.display import display
        display(obj)
    except ImportError:  # pragma: no cover
        print(obj)


def unit_summary(results, lfsr: float = 0.05, limit: int = 50) -> pd.DataFrame:
    """Per unit (the first ``limit``): rows, and per condition the effects with lfsr < ``lfsr``."""
    from ..io import read_rds
    rows = {}
    for r in [r for r in results if r.status != "failed"][:limit]:
        post = read_rds(r.output)
        L = post["lfsr"]
        rows[r.unit_id] = pd.concat([pd.Series({"rows": L.shape[0]}), (L < lfsr).sum(axis=0)])
    return pd.DataFrame(rows).T.fillna(0).astype(int)


def show_step(step: str, p: dict, outputs: list, interactive: bool = False):
    """What ``protocol.show(s)`` draws for the ``mash_posterior`` steps: per unit the variants
    and the effects with lfsr < 0.05 in each condition (posterior), the contrast summary and
    one unit's contrasts (posterior_contrast), the heatmap (posterior_contrast_plot)."""
    from ..io import read_rds
    if not Path(outputs[0]).is_file():
        print(f"[{step}] no output to show yet ({outputs[0]})")
        return
    if step == "posterior":
        res = posterior_results(p)
        _display(unit_summary(res))
        bad = [r for r in res if r.status == "failed"]
        if bad:
            _display(pd.DataFrame([(r.unit_id, r.error) for r in bad], columns=["unit", "error"]))
    elif step == "posterior_contrast":
        df = pd.read_csv(outputs[1], index_col=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            _display(pd.DataFrame({"snp ratio": df.loc["n_sig_snp"] / df.loc["n_snp"],
                                   "feature ratio": df.loc["n_sig_feature"] / df.loc["n_all_feature"]}).round(4))
        first = next((ln.split("\t", 1) for ln in Path(outputs[0]).read_text().splitlines()), None)
        if first is not None:
            tab = read_rds(first[1])
            cols = ["feature_id"] + [c for c in tab.columns if c.startswith("mean_contrast_")][:6]
            print(f"{first[0]}: {tab.shape[0]} variants x {tab.shape[1] - 1} contrast columns")
            _display(tab[cols].head())
    elif step == "posterior_contrast_plot":
        from IPython.display import Image
        _display(Image(filename=str(outputs[0])))
