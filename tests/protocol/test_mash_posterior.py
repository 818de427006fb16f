"""The mash_posterior notebook's workflows (mashlib.protocol.posterior_workflow): per-unit
posteriors equal the library called directly, R's file structures, resumability, parallel
and Dask runs, and bad input named per unit while the other units are done."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mashlib as ml
from mashlib import MashInputError, protocol
from mashlib.io import RArray, preprocess_matrices, read_rds, write_rds
from mashlib.protocol import posterior_units as pu
from mashlib.protocol import posterior_workflow as pw
from mashlib.protocol import steps

CONDS = pw.EXAMPLE_CONDITIONS
quiet = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The notebook's example: a model on six conditions, four units of 25 variants."""
    return pw.make_example(tmp_path_factory.mktemp("example"))


def _units(tmp_path, files):
    f = tmp_path / "units.txt"
    f.write_text("".join(f"{x}\n" for x in files))
    return str(f)


def _direct(example, unit_file, keep=None):
    """The posterior of one unit with the library, as pecotmr's mashPosterior."""
    m = ml.mash_from_r(example["mash_model"])
    V = read_rds(example["vhat_data"])
    u = read_rds(unit_file)
    keep = keep or CONDS
    b, s = preprocess_matrices(u["bhat"][keep], u["sbhat"][keep])
    g = ml.update_mash_model_cov(m.fitted_g, CONDS, keep)
    data = steps.make_data(b, s, 0.0, V.loc[keep, keep].to_numpy())
    return ml.mash_compute_posterior_matrices(g, data, output_posterior_cov=True), b


def test_posterior_equals_library_and_r_structure(example, tmp_path):
    cwd = tmp_path / "out"
    outs = protocol.posterior(cwd=str(cwd), **example, **quiet)
    assert outs == [cwd / "all.posterior_list"]
    lines = outs[0].read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["region1", "region2", "region3", "region4"]
    assert all(Path(ln.split("\t")[1]).is_absolute() for ln in lines)
    post = read_rds(cwd / "cache" / "region2.posterior.rds")
    assert list(post) == ["PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr", "PosteriorCov"]
    ref, b = _direct(example, Path(example["analysis_units"]).parent / "region2.rds")
    assert list(post["PosteriorMean"].columns) == CONDS and list(post["lfsr"].index) == list(b.index)
    assert post["lfsr"].index[0].startswith("mash::mash::chr")
    for k in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"):
        np.testing.assert_allclose(post[k].to_numpy(), ref[k].to_numpy(), atol=1e-13, err_msg=k)
    cov = post["PosteriorCov"]
    assert isinstance(cov, RArray) and cov.values.shape == (6, 6, 25)
    assert cov.dimnames[0] == CONDS and cov.dimnames[2] == list(b.index)
    np.testing.assert_allclose(np.moveaxis(cov.values, -1, 0), ref["PosteriorCov"], atol=1e-13)
    side = json.loads((cwd / "cache" / "region2.posterior.rds.json").read_text())
    assert side["unit"] == "region2" and len(side["input_sha256"]) == 64
    rec = json.loads((cwd / "all.posterior_list.json").read_text())     # the step's sidecar
    assert rec["step"] == "posterior" and rec["notebook"] == "mash_posterior"
    assert sum(Path(k).name.startswith("region") for k in rec["inputs"]) == 4   # every unit file is an input


def test_rerun_skips_up_to_date_units_and_redoes_changed_ones(example, tmp_path):
    ex = dict(example)
    src = Path(ex["analysis_units"]).parent
    for k in (1, 2, 3):
        shutil.copy(src / f"region{k}.rds", tmp_path / f"region{k}.rds")
    ex["analysis_units"] = _units(tmp_path, [tmp_path / f"region{k}.rds" for k in (1, 2, 3)])
    cwd = tmp_path / "out"
    lines = []
    protocol.posterior(cwd=str(cwd), **ex, log=lines.append)
    lines.clear()
    protocol.posterior(cwd=str(cwd), **ex, log=lines.append)
    assert lines == [f"[posterior] up to date: {cwd / 'all.posterior_list'}"]
    u = read_rds(tmp_path / "region2.rds")
    u["bhat"].iloc[0, 0] += 1.0
    write_rds(tmp_path / "region2.rds", u)
    lines.clear()
    protocol.posterior(cwd=str(cwd), **ex, log=lines.append)
    assert "input region2.rds changed (new content)" in lines[0]
    assert any("(1 computed, 2 up to date, 0 failed)" in ln for ln in lines)
    lines.clear()                                      # another option: everything again
    protocol.posterior(cwd=str(cwd), **ex, subset_model="pecotmr", log=lines.append)
    assert "parameter subset_model 'marginal' -> 'pecotmr' changed" in lines[0]
    assert any("(3 computed, 0 up to date, 0 failed)" in ln for ln in lines)


def test_units_differing_from_the_model(example, tmp_path):
    """Columns aligned by name; a lacking condition is an error unless excluded (notice) or
    sliced; a column the model lacks is an error naming it; 1-based numbers as the R script."""
    src = read_rds(Path(example["analysis_units"]).parent / "region1.rds")
    rev = {k: v[CONDS[::-1]] for k, v in src.items()}              # same unit, columns reversed
    write_rds(tmp_path / "rev.rds", rev)
    lack = {k: v.drop(columns="Liver") for k, v in src.items()}
    write_rds(tmp_path / "lack.rds", lack)
    extra = {k: v.assign(Lung=1.0) for k, v in src.items()}
    write_rds(tmp_path / "extra.rds", extra)
    ex = dict(example, analysis_units=_units(tmp_path, [tmp_path / "rev.rds", tmp_path / "lack.rds",
                                                        tmp_path / "extra.rds"]))
    cwd = tmp_path / "out"
    lines = []
    with pytest.raises(pw.UnitsFailedError) as err:
        protocol.posterior(cwd=str(cwd), **ex, log=lines.append)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("posterior: 2 of 3 units failed (first: lack: unit lack (")
    assert "lacks the model's condition(s) ['Liver']" in msg and "--exclude-condition" in msg
    failed = (cwd / "all.posterior_failed.tsv").read_text().splitlines()
    assert failed[0] == "unit\tfile\terror" and failed[2].startswith("extra\t")
    assert "condition(s) ['Lung'] are not in the model" in failed[2]
    assert (cwd / "all.posterior_list").read_text().startswith("rev\t")     # the good unit is kept
    ref, _ = _direct(example, Path(example["analysis_units"]).parent / "region1.rds")
    post = read_rds(cwd / "cache" / "rev.posterior.rds")
    assert list(post["PosteriorMean"].columns) == CONDS                     # model order
    np.testing.assert_allclose(post["PosteriorMean"].to_numpy(), ref["PosteriorMean"].to_numpy(), atol=1e-13)
    # excluded by name (and Lung, which the model lacks), or by 1-based number of lack.rds
    lines.clear()
    protocol.posterior(cwd=str(cwd), **ex, exclude_condition=["Liver", "Lung"], log=lines.append)
    assert "[posterior] lack: conditions the unit lacks excluded: Liver" in lines, lines
    keep = [c for c in CONDS if c != "Liver"]
    ref5, _ = _direct(example, Path(example["analysis_units"]).parent / "region1.rds", keep)
    for unit in ("lack", "extra", "rev"):
        post = read_rds(cwd / "cache" / f"{unit}.posterior.rds")
        assert list(post["lfsr"].columns) == keep, unit
        np.testing.assert_allclose(post["lfsr"].to_numpy(), ref5["lfsr"].to_numpy(), atol=1e-13)
    assert (cwd / "all.posterior_failed.tsv").read_text() == "unit\tfile\terror\n"   # none failed
    ex1 = dict(ex, analysis_units=_units(tmp_path, [tmp_path / "lack.rds"]))
    protocol.posterior(cwd=str(tmp_path / "o2"), **ex1, exclude_condition=["2"], slice_method=True, **quiet)
    post = read_rds(tmp_path / "o2" / "cache" / "lack.posterior.rds")
    assert list(post["lfsr"].columns) == ["Brain_Cortex", "Muscle_Skeletal", "Testis", "Whole_Blood"]
    lines.clear()
    protocol.posterior(cwd=str(tmp_path / "o3"), **ex1, exclude_condition=["Kidney", "Liver"], log=lines.append)
    assert ("[posterior] note: --exclude-condition Kidney: not condition(s) of the model; dropped "
            "from the units that have such a column") in lines


def test_missing_files_and_keys_named_others_done(example, tmp_path):
    src = Path(example["analysis_units"]).parent
    write_rds(tmp_path / "nokey.rds", {"beta": np.eye(2), "sbhat": np.eye(2)})
    ex = dict(example, analysis_units=_units(tmp_path, [src / "region1.rds", tmp_path / "gone.rds",
                                                        tmp_path / "nokey.rds", src / "region3.rds"]))
    cwd = tmp_path / "out"
    outs = protocol.posterior(cwd=str(cwd), **ex, allow_failed_units=True, **quiet)
    assert [ln.split("\t")[0] for ln in outs[0].read_text().splitlines()] == ["region1", "region3"]
    failed = pd.read_csv(cwd / "all.posterior_failed.tsv", sep="\t")
    assert failed["unit"].tolist() == ["gone", "nokey"]
    assert failed["error"][0].endswith("gone.rds: file not found")
    assert "nokey.rds: lacks 'bhat' (--bhat-key/--shat-key); it has ['beta', 'sbhat']" in failed["error"][1]
    # the keys inside a list element, as --data-table-name
    u = read_rds(src / "region4.rds")
    write_rds(tmp_path / "nested.rds", {"strong": {"b": u["bhat"], "s": u["sbhat"]}})
    ex2 = dict(example, analysis_units=_units(tmp_path, [tmp_path / "nested.rds"]))
    protocol.posterior(cwd=str(cwd), **ex2, data_table_name="strong", bhat_key="b", shat_key="s", **quiet)
    ref, _ = _direct(example, src / "region4.rds")
    np.testing.assert_allclose(read_rds(cwd / "cache" / "nested.posterior.rds")["PosteriorSD"].to_numpy(),
                               ref["PosteriorSD"].to_numpy(), atol=1e-13)
    with pytest.raises(pw.UnitsFailedError, match=r"has no element 'strong' \(--data-table-name\)"):
        protocol.posterior(cwd=str(cwd), **dict(ex2, analysis_units=_units(tmp_path, [src / "region4.rds"])),
                           data_table_name="strong", **quiet)


def test_bad_parameters_fail_before_running(example, tmp_path):
    with pytest.raises(MashInputError, match="--mash-model is required"):
        protocol.posterior(analysis_units=example["analysis_units"], cwd=str(tmp_path), **quiet)
    with pytest.raises(MashInputError, match="--analysis-units .*nope.txt: file not found"):
        protocol.posterior(**dict(example, analysis_units=str(tmp_path / "nope.txt")), cwd=str(tmp_path), **quiet)
    with pytest.raises(MashInputError, match="--subset-model 'exact': choose one of marginal, pecotmr"):
        protocol.posterior(**example, subset_model="exact", cwd=str(tmp_path), **quiet)
    with pytest.raises(MashInputError, match="alpha=0 but --effect-model EZ gives alpha=1"):
        protocol.posterior(**example, effect_model="EZ", cwd=str(tmp_path), **quiet)
    with pytest.raises(MashInputError, match=r"group 1 \(Brain_Cortex,Kidney\): \['Kidney'\] are not conditions"):
        protocol.posterior_contrast(**example, group1=["Brain_Cortex", "Kidney"], cwd=str(tmp_path), **quiet)
    with pytest.raises(MashInputError, match="posterior_contrast needs the posterior covariances"):
        protocol.posterior_contrast(**example, posterior_cov=False, cwd=str(tmp_path), **quiet)
    (tmp_path / "dup").mkdir()
    shutil.copy(Path(example["analysis_units"]).parent / "region1.rds", tmp_path / "dup" / "region1.rds")
    ex = dict(example, analysis_units=_units(tmp_path, [Path(example["analysis_units"]).parent / "region1.rds",
                                                        tmp_path / "dup" / "region1.rds"]))
    with pytest.raises(MashInputError, match="unit id 'region1' .* is also the id of"):
        protocol.posterior(**ex, cwd=str(tmp_path), **quiet)
    # the V recorded in the model file is used when --vhat-data is not given
    lines = []
    ex = {k: v for k, v in example.items() if k != "vhat_data"}
    protocol.posterior(**ex, cwd=str(tmp_path / "rec"), log=lines.append)
    assert any("(recorded in the model file)" in ln for ln in lines)


def test_contrast_workflow_and_plot(example, tmp_path):
    cwd = tmp_path / "out"
    outs = protocol.posterior_contrast_plot(cwd=str(cwd), output_prefix="ex", group1=CONDS[:2], **example, **quiet)
    assert outs == [cwd / "ex.posterior_sum.png"] and outs[0].stat().st_size > 5000
    tab = read_rds(cwd / "contrast" / "ex.region3.posterior_contrast.rds")
    assert tab.attrs["r_class"] == ["tbl_df", "tbl", "data.frame"]
    post = read_rds(cwd / "cache" / "ex.region3.posterior.rds")
    u = read_rds(Path(example["analysis_units"]).parent / "region3.rds")
    orig = u["bhat"][CONDS].set_axis(post["PosteriorMean"].index)
    ref = ml.mash_posterior_contrast(post["PosteriorMean"], post["PosteriorCov"], orig,
                                     {c: int(c in CONDS[:2]) for c in CONDS})
    assert list(tab.columns) == list(ref.columns) and list(tab["feature_id"]) == list(ref["feature_id"])
    np.testing.assert_allclose(tab.iloc[:, 1:].to_numpy(float), ref.iloc[:, 1:].to_numpy(float), rtol=1e-13)
    summ = pd.read_csv(cwd / "ex.posterior_sum.csv", index_col=0)
    assert list(summ.index) == ["n_sig_snp", "n_snp", "n_sig_feature", "n_all_feature"]
    assert summ.shape == (4, 15) and summ.columns[0] == "Brain_Cortex_vs_Brain_Cerebellum"
    tabs = [read_rds(cwd / "contrast" / f"ex.region{k}.posterior_contrast.rds") for k in range(1, 5)]
    from mashlib.model import contrast_summary
    np.testing.assert_array_equal(summ.to_numpy(), contrast_summary(tabs, CONDS, 1e-5).to_numpy())
    assert (cwd / "ex.all.posterior_contrast_list").read_text().count("\n") == 4
    # a new cutoff reuses the contrast files and recounts from them
    lines = []
    protocol.posterior_contrast(cwd=str(cwd), output_prefix="ex", group1=CONDS[:2], p_cut=0.05, **example,
                                log=lines.append)
    assert any("(4 computed, 0 up to date" in ln for ln in lines if ln.startswith("[posterior_contrast]"))
    summ2 = pd.read_csv(cwd / "ex.posterior_sum.csv", index_col=0)
    np.testing.assert_array_equal(summ2.to_numpy(), contrast_summary(tabs, CONDS, 0.05).to_numpy())


def test_workers_and_dask_give_the_same_files(example, tmp_path):
    one = tmp_path / "one"
    protocol.posterior(cwd=str(one), **example, **quiet)
    two = tmp_path / "two"
    protocol.posterior(cwd=str(two), workers=2, **example, **quiet)
    for k in range(1, 5):
        a = read_rds(one / "cache" / f"region{k}.posterior.rds")
        b = read_rds(two / "cache" / f"region{k}.posterior.rds")
        np.testing.assert_allclose(b["lfsr"].to_numpy(), a["lfsr"].to_numpy(), rtol=1e-12, atol=1e-15)
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed (the dask extra)")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        dk = tmp_path / "dask"
        p = protocol.check_inputs("mash_posterior", "posterior", dict(cwd=str(dk), **example))
        pw.run("posterior", p, log=lambda s: None, client=client)
    for k in range(1, 5):
        a = read_rds(one / "cache" / f"region{k}.posterior.rds")
        b = read_rds(dk / "cache" / f"region{k}.posterior.rds")
        np.testing.assert_allclose(b["PosteriorMean"].to_numpy(), a["PosteriorMean"].to_numpy(), rtol=1e-12,
                                   atol=1e-15)


def test_units_file_format(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.rds").write_bytes(b"")
    (tmp_path / "sub" / "list.txt").write_text('# units\n"a.rds" extra columns\n\n/abs/b.RDS\n')
    units = pu.read_units_file(tmp_path / "sub" / "list.txt")
    assert [(u.unit_id, str(u.path)) for u in units] == [("a", str(tmp_path / "sub" / "a.rds")), ("b", "/abs/b.RDS")]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(MashInputError, match="lists no unit file"):
        pu.read_units_file(tmp_path / "empty.txt")


def test_cli_no_notebook_and_one_line_errors(example, tmp_path, capsys):
    from mashlib.cli import main
    rc = main(["run", "mash_posterior", "posterior", "--analysis-units", example["analysis_units"],
               "--mash-model", example["mash_model"], "--vhat-data", example["vhat_data"],
               "--cwd", str(tmp_path), "--exclude-condition", "Liver,Testis", "--no-posterior-cov", "--no-notebook"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    post = read_rds(tmp_path / "cache" / "region1.posterior.rds")
    assert "PosteriorCov" not in post and list(post["lfsr"].columns) == ["Brain_Cortex", "Brain_Cerebellum",
                                                                         "Muscle_Skeletal", "Whole_Blood"]
    rc = main(["run", "mash_posterior", "posterior", "--analysis-units", example["analysis_units"], "--cwd",
               str(tmp_path)])
    _, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "--mash-model is required" in err
    rc = main(["run", "mash_posterior", "-h"])
    out, _ = capsys.readouterr()
    assert rc == 0 and "posterior_contrast_plot" in out and "--exclude-condition" in out and "--no-posterior-cov" in out


@pytest.mark.slow
def test_mashlib_run_executes_the_notebook_sections(example, tmp_path, capsys):
    """`mashlib run mash_posterior posterior_contrast`: papermill runs the posterior and contrast
    sections, keeps the executed notebook; a second run finds both steps up to date."""
    from mashlib.cli import main
    args = ["run", "mash_posterior", "posterior_contrast", "--analysis-units", example["analysis_units"],
            "--mash-model", example["mash_model"], "--vhat-data", example["vhat_data"], "--cwd", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "[posterior] start (no output yet)" in out and "[posterior_contrast] wrote" in out
    assert (tmp_path / "mash_posterior.posterior_contrast.ipynb").is_file()
    assert (tmp_path / "posterior_sum.csv").is_file() and (tmp_path / "contrast" / "region4.posterior_contrast.rds").is_file()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[posterior] up to date" in out and "[posterior_contrast] up to date" in out
