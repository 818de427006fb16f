"""The command line (mashlib.cli): option parsing, help, bad input, papermill runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib import MashInputError
from mashlib.cli import main, parse_run_args
from mashlib.io import read_rds, write_rds
from mashlib.protocol.params import PARAMS

CONDS = ["ALL", "Ast", "End", "Exc", "Inh", "Mic", "OPC", "Oli"]


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_parse_kebab_flags_and_lists():
    wf, p, h, nonb, _ = parse_run_args("mash_fit", ["mash", "--output-prefix", "x", "--no-compute-posterior",
                                                    "--output-level=2", "--effect-model", "EZ"])
    assert (wf, h, nonb) == ("mash", False, False)
    assert p == {"output_prefix": "x", "compute_posterior": False, "output_level": "2", "effect_model": "EZ"}
    wf, p, _, nonb, _ = parse_run_args("mixture_prior", ["--mixture-components", "pca", "canonical", "--to-cor",
                                                         "ed_bovy", "--no-notebook"])
    assert wf == "ed_bovy" and nonb
    assert p == {"mixture_components": ["pca", "canonical"], "to_cor": True}
    with pytest.raises(MashInputError, match="did you mean --output-prefix"):
        parse_run_args("mixture_prior", ["pca", "--output-prefx", "x"])
    with pytest.raises(MashInputError, match="needs a value"):
        parse_run_args("mixture_prior", ["pca", "--npc"])


def test_help_lists_workflows_and_parameters_from_notebook(capsys):
    rc, out, _ = _run(capsys, "run", "mixture_prior", "-h")
    assert rc == 0
    for w in ("flash", "vhat_corshrink_xcondition", "ud_unconstrained", "ed_bovy", "plot_U"):
        assert f"  {w} " in out
    for spec in PARAMS["mixture_prior"]:
        assert "--" + spec.name.replace("_", "-") in out
        assert spec.help in out
    assert "(default: 2)" in out and "--to-cor/--no-to-cor" in out
    rc, out, _ = _run(capsys, "run", "pipeline/mash_fit.ipynb", "-h")  # the SoS spelling works too
    assert rc == 0 and "--compute-posterior/--no-compute-posterior  (default: True)" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "mixture_prior", "--data", "x.rds"], "no workflow given; choose one of: flash, flash_nonneg"),
    (["run", "mixture_prior", "edbovy", "--data", "x.rds"], "unknown workflow 'edbovy' (did you mean ed_bovy?)"),
    (["run", "mixture_prior", "ed_bovy", "--data", "missing.rds"], "/missing.rds: file not found"),
    (["run", "mixture_prior", "ed_bovy"], "--data is required"),
    (["run", "mixture_prior", "ed_bovy", "--data", "x.rds", "--numThreads", "-1"], "--numThreads"),
    (["run", "mixture_prior", "ed_bovy", "--data", "x.rds", "--mem", "lots"], "'2GB'"),
    (["run", "mixture_prior", "ed_bovy", "--dta", "x.rds"], "did you mean --data?"),
    (["run", "mixtur_prior", "ed_bovy"], "did you mean mixture_prior?"),
    (["runn"], "did you mean run?"),
])
def test_bad_input_one_line_nonzero(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_step2_before_step1_names_the_producer(capsys, tmp_path, protocol_fixture):
    rc, _, err = _run(capsys, "run", "mash_fit", "mash", "--data", str(protocol_fixture),
                      "--vhat-data", str(tmp_path / "p.EE.V_simple.rds"),
                      "--prior-data", str(tmp_path / "p.EE.prior.rds"), "--cwd", str(tmp_path / "out"))
    assert rc == 2 and err.count("\n") == 1
    assert "--vhat-data" in err and "step 1" in err and "mashlib run mixture_prior vhat_simple" in err
    assert not (tmp_path / "out").exists()


def _tiny_inputs(tmp_path, protocol_fixture):
    U = {"identity": np.eye(8), "equal_effects": np.ones((8, 8))}
    write_rds(tmp_path / "p.EE.prior.rds", {"U": U, "w": pd.Series([0.5, 0.25, 0.25], index=["null", *U]),
                                            "loglik": None})
    write_rds(tmp_path / "p.EE.V_simple.rds", pd.DataFrame(np.eye(8), index=CONDS, columns=CONDS))


def test_prior_without_component_above_tol_suggests_tol(capsys, tmp_path, protocol_fixture):
    _tiny_inputs(tmp_path, protocol_fixture)
    rc, _, err = _run(capsys, "run", "mixture_prior", "plot_U", "--data", str(tmp_path / "p.EE.prior.rds"),
                      "--tol", "0.9", "--cwd", str(tmp_path / "plots"), "--no-notebook")
    assert rc == 2 and err.count("\n") == 1 and "tol" in err
    assert not any((tmp_path / "plots").glob("*.pdf"))


@pytest.mark.slow
def test_papermill_runs_keep_executed_notebooks(capsys, tmp_path, protocol_fixture):
    """One papermill run per notebook: outputs, executed copy, and the library's numbers."""
    _tiny_inputs(tmp_path, protocol_fixture)
    cwd = tmp_path / "mf"
    rc, out, err = _run(capsys, "run", "mash_fit", "mash", "--output-prefix", "fx", "--data", str(protocol_fixture),
                        "--vhat-data", str(tmp_path / "p.EE.V_simple.rds"),
                        "--prior-data", str(tmp_path / "p.EE.prior.rds"), "--effect-model", "EE",
                        "--compute-posterior", "--cwd", str(cwd))
    assert rc == 0, err
    assert (cwd / "fx.mash.ipynb").is_file() and (cwd / "fx.EE.mash_model.rds.json").is_file()
    post = read_rds(cwd / "fx.EE.posterior.rds")
    assert post["lfsr"].shape == (17, 8)
    model = read_rds(cwd / "fx.EE.mash_model.rds")["mash_model"]
    assert model["fitted_g"]["pi"].sum() == pytest.approx(1.0)
    # the mixture_prior notebook, with a plot_U error inside the kernel: one line, no output
    # left but the partly executed notebook under a failed name (removed by the next success)
    rc, _, err = _run(capsys, "run", "mixture_prior", "plot_U", "--data", str(tmp_path / "p.EE.prior.rds"),
                      "--tol", "0.9", "--cwd", str(tmp_path / "plots"), "--output-prefix", "pl")
    assert rc == 2 and err.count("\n") == 1 and "tol" in err and "pl.plot_U.FAILED.ipynb" in err
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["pl.plot_U.FAILED.ipynb"]
    rc, _, err = _run(capsys, "run", "mixture_prior", "plot_U", "--data", str(tmp_path / "p.EE.prior.rds"),
                      "--cwd", str(tmp_path / "plots"), "--output-prefix", "pl")
    assert rc == 0, err
    assert (tmp_path / "plots" / "p.EE.prior.pdf").stat().st_size > 1000
    assert (tmp_path / "plots" / "pl.plot_U.ipynb").is_file()
    assert not (tmp_path / "plots" / "pl.plot_U.FAILED.ipynb").exists()


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "mashlib", "run", "mash_fit", "-h"], capture_output=True, text=True,
                       cwd=Path(__file__).parents[1], timeout=120)
    assert r.returncode == 0 and "--prior-data" in r.stdout


def _builder():
    import importlib.util
    path = Path(__file__).resolve().parents[2] / "tools" / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("build_notebooks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebooks_in_sync_with_builder():
    """The notebooks are generated by tools/build_notebooks.py (regenerate after edits)."""
    import nbformat
    b = _builder()
    for name, nb in b.notebooks().items():
        disk = nbformat.read(str(b.destination(name)), as_version=4)
        assert [c.source for c in disk.cells] == [c.source for c in nb.cells], name
        assert [c.metadata.get("tags") for c in disk.cells] == [c.metadata.get("tags") for c in nb.cells]


def test_workflow_notebooks_are_package_data():
    """mashlib run finds its notebooks through importlib.resources, not in a checkout."""
    from mashlib.protocol.notebook import notebook_dir, notebook_path
    pkg = Path(__import__("mashlib").__file__).parent / "protocol" / "notebooks"
    assert notebook_dir() == pkg
    for nb in PARAMS:
        assert notebook_path(nb) == pkg / f"{nb}.ipynb"
    assert notebook_path("mash_protocol").parent.name == "notebooks"
    import tomllib
    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "protocol/notebooks/*.ipynb" in cfg["tool"]["setuptools"]["package-data"]["mashlib"]
    assert not (pkg.parent / "build_notebooks.py").exists()


def test_papermill_reads_every_parameter():
    import papermill as pm
    from mashlib.protocol.notebook import notebook_path
    for nb in PARAMS:
        names = list(pm.inspect_notebook(str(notebook_path(nb))))
        assert names == ["workflow"] + [p.name for p in PARAMS[nb]] + ["interactive"]


@pytest.mark.slow
@pytest.mark.slow
def test_run_notebooks_side_by_side_and_first_error(capsys, tmp_path, protocol_fixture):
    """Independent workflow runs in parallel processes: both outputs complete; a failed job
    is reported in one line naming its notebook and workflow, after the other has finished."""
    from mashlib.protocol.notebook import run_notebooks
    _tiny_inputs(tmp_path, protocol_fixture)
    prior = str(tmp_path / "p.EE.prior.rds")
    jobs = [("mixture_prior", "plot_U", dict(data=prior, cwd=str(tmp_path / "a"), output_prefix="a")),
            ("mixture_prior", "plot_U", dict(data=prior, cwd=str(tmp_path / "b"), output_prefix="b",
                                             tol=0.9))]
    with pytest.raises(MashInputError, match=r"^mixture_prior plot_U: .*tol.*b\.plot_U\.FAILED\.ipynb"):
        run_notebooks(jobs, parallel=2)
    assert (tmp_path / "a" / "p.EE.prior.pdf").stat().st_size > 1000
    assert (tmp_path / "a" / "a.plot_U.ipynb").is_file()
    assert not any((tmp_path / "b").glob("*.pdf"))
    out = capsys.readouterr().out
    assert "[plot_U] start" in out and "[plot_U] wrote " in out       # the children's progress
    jobs[1][2].update(tol=1e-6, cwd=str(tmp_path / "c"), output_prefix="c")
    done = run_notebooks(jobs, parallel=2, quiet=True)                  # results in the jobs' order
    assert [p for p, _ in done] == [tmp_path / "a" / "a.plot_U.ipynb", tmp_path / "c" / "c.plot_U.ipynb"]
    assert all(t > 0 for _, t in done)
    assert "[plot_U]" not in capsys.readouterr().out
    with pytest.raises(MashInputError, match="file not found"):          # checked before any start
        run_notebooks([jobs[0], ("mixture_prior", "plot_U", dict(data=str(tmp_path / "no.rds")))])


def test_demo_runs_the_driver_end_to_end(capsys, tmp_path, protocol_fixture):
    """`mashlib demo` on the 8-condition fixture laid out as the shipped example."""
    from mashlib.io import read_mashr_input
    from mashlib.vhat import vhat_simple
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "protocol_example.mashr_input.rds").write_bytes(protocol_fixture.read_bytes())
    pre = read_mashr_input(protocol_fixture).preprocess()
    write_rds(inp / "protocol_example.EE.mash.rds", pre.to_dict())
    write_rds(inp / "protocol_example.EE.V_simple.rds", vhat_simple(pre.null.b, pre.null.s))
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "demo", "--input", str(inp), "--output", str(out))
    assert rc == 0, err
    assert (out / "mash_protocol.ipynb").is_file()
    assert (out / "mixture_prior" / "protocol_example.EE.prior.pdf").stat().st_size > 1000
    assert (out / "mixture_prior" / "protocol_example.ed_bovy.ipynb").is_file()
    post = read_rds(out / "mash_fit" / "protocol_example_mash.EE.posterior.rds")
    assert post["PosteriorMean"].shape == (17, 8) and "PosteriorCov" in post
    assert "posterior:" in stdout
    # progress streamed from the nested kernels: one start and one end line per step
    for step in ("flash", "pca", "canonical", "vhat_simple", "ed_bovy", "mash_1", "mash_2", "plot_U"):
        assert f"[{step}] start (no output yet)" in stdout and f"[{step}] wrote " in stdout, step
    # the results section: prior weights, significant effects per condition, sharing heatmap,
    # a variant's forest plot and the plot_U page, all kept as images
    import json
    cells = json.loads((out / "mash_protocol.ipynb").read_text())["cells"]
    pngs = [sum("image/png" in o.get("data", {}) for o in c.get("outputs", [])) for c in cells
            if c["cell_type"] == "code"]
    assert pngs[-2] >= 1 and pngs[-1] >= 5
    # the executed workflow notebooks keep their figures too
    step_nb = json.loads((out / "mixture_prior" / "protocol_example.ed_bovy.ipynb").read_text())
    assert sum("image/png" in o.get("data", {}) for c in step_nb["cells"] for o in c.get("outputs", [])) >= 5
