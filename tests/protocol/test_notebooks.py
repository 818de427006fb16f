"""The workflow notebooks as the product (issue 12): sections, selection, chaining across path
spellings, no silent overwrite, progress lines, figures kept, SoS task options, make lab."""
from __future__ import annotations

import ast
import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mashlib import protocol
from mashlib.cli import lab_workspace, main
from mashlib.io import read_rds, write_rds
from mashlib.protocol import nbcode
from mashlib.protocol.cells import Params
from mashlib.protocol.chain import STEPS, plan_resolved
from mashlib.protocol.params import PARAMS, WORKFLOWS

PFX = "mashr_input_fixture"


def _cells(nb):
    return nbcode.load(nb)["cells"]


@pytest.mark.parametrize("nb", list(PARAMS))
def test_one_section_per_step_with_its_library_calls(nb):
    cells = _cells(nb)
    assert cells[0]["cell_type"] == "markdown"
    intro = nbcode.source(cells[0])
    for heading in ("## Input", "## Output", "mashlib run", "## How this notebook runs"):
        assert heading in intro, heading
    tags = [c["metadata"].get("tags", []) for c in cells]
    assert tags[1] == ["parameters"] and tags[2] == ["setup"]
    steps = [n for n, s in STEPS.items() if s.notebook == nb]
    for step in steps:
        sec = [c for c in cells if nbcode.section_of(c) == step]
        kinds = [(c["cell_type"], "compute" in c["metadata"]["tags"]) for c in sec]
        assert kinds == [("markdown", False), ("code", True), ("code", False)], step
        src = nbcode.source(sec[1])
        assert src.startswith(f's = protocol.step("{step}", p)\nif s.needed:') and "s.save(" in src
        # the cell names only what the in-process runner provides (setup imports, p, builtins)
        tree = ast.parse(src)
        stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert loaded - stored - set(dir(builtins)) <= {"p", "ml", "protocol", "np"}, step
    # every section is a step the library knows; sections come producers first
    order = [nbcode.section_of(c) for c in cells if "compute" in c["metadata"].get("tags", [])]
    assert sorted(order) == sorted(steps)
    for name in order:
        for _, producer in STEPS[name].inputs(_fake_params(nb)):
            if producer is not None:
                assert order.index(producer) < order.index(name), (producer, name)


def _fake_params(nb):
    from mashlib.protocol.params import options_class

    p = protocol.defaults(nb)
    p.update(data="/x/d.rds", cwd="/x", output_prefix="d", vhat_data="/x/v.rds", prior_data="/x/p.rds")
    cls = options_class(nb)
    return cls(**{k: v for k, v in p.items() if k in cls.__dataclass_fields__})


@pytest.mark.parametrize("nb", list(PARAMS))
def test_select_keeps_the_workflow_and_its_producers_in_order(nb):
    full = nbcode.load(nb)
    for wf in WORKFLOWS[nb]:
        p = _fake_params(nb)
        plan = plan_resolved(nb, wf, p)
        sel = nbcode.select(full, plan)
        got = list(dict.fromkeys(nbcode.section_of(c) for c in sel["cells"] if nbcode.section_of(c)))
        assert got == plan, wf
        assert [c["metadata"].get("tags") for c in sel["cells"][1:3]] == [["parameters"], ["setup"]]
    p = _fake_params("mixture_prior")
    assert plan_resolved("mixture_prior", "vhat_mle", p)[-2:] == ["ed_bovy", "vhat_mle"]


def test_chaining_across_path_spellings(tmp_path, protocol_fixture, monkeypatch):
    """output/x, ./output/x/, an absolute path and output/../output/x are one cache."""
    lines = []
    out = tmp_path / "output" / "x"
    protocol.pca(data=str(protocol_fixture), cwd=str(out), log=lines.append)
    assert lines[-1].startswith("[pca] wrote ")
    data = tmp_path / "in.rds"
    shutil.copy(protocol_fixture, data)              # the same content under another name
    monkeypatch.chdir(tmp_path)
    for cwd in ("output/x", "./output/x/", "output/../output/x", str(out)):
        for d in (str(protocol_fixture), "in.rds"):
            protocol.pca(data=d, output_prefix=PFX, cwd=cwd, log=lines.append)
            assert lines[-1] == f"[pca] up to date: {out / f'{PFX}.pca.rds'}", (cwd, d)
    side = json.loads((out / f"{PFX}.pca.rds.json").read_text())
    assert list(side["outputs"]) == [f"{PFX}.pca.rds"]             # outputs by name: a moved folder keeps its cache
    shutil.move(str(out), str(tmp_path / "moved"))
    protocol.pca(data="in.rds", output_prefix=PFX, cwd="moved", log=lines.append)
    assert "up to date" in lines[-1]


def test_a_rerun_says_why(tmp_path, protocol_fixture):
    lines = []
    kw = dict(data=str(protocol_fixture), cwd=str(tmp_path), log=lines.append)
    protocol.canonical(**kw)
    out = tmp_path / f"{PFX}.canonical.rds"
    obj = read_rds(out)
    obj["identity"] = obj["identity"] * 2
    write_rds(out, obj)                                  # someone edited the output
    protocol.canonical(**kw)
    assert f"output {out.name} was modified after it was written" in lines[-2]
    side = out.with_name(out.name + ".json")
    rec = json.loads(side.read_text())
    rec["code"] = "0" * 16                                # as if the cell's code had been edited
    side.write_text(json.dumps(rec))
    protocol.canonical(**kw)
    assert "the code of the canonical cell changed" in lines[-2]
    protocol.canonical(effect_model="EZ", **kw)
    assert "parameter effect_model 'EE' -> 'EZ' changed" in lines[-2]


def test_editing_a_cell_in_jupyterlab_reruns_its_step(tmp_path, protocol_fixture):
    """The digest of the calling cell is in the signature (what IPython registers in linecache)."""
    import linecache
    p = protocol.check_inputs("mixture_prior", "pca", dict(data=str(protocol_fixture), cwd=str(tmp_path)))
    src = nbcode.compute_source("mixture_prior", "pca")
    for k, code in enumerate([src, src + "\n# a comment only", src.replace('p.npc', '3')]):
        lines = []
        P = Params(p, "mixture_prior", "pca", ["pca"], log=lines.append)
        fname = f"<ipython-input-{k}>"
        linecache.cache[fname] = (len(code), None, code.splitlines(True), fname)
        ns = {"p": P, "protocol": protocol, "ml": __import__("mashlib"), "np": np}
        exec(compile(code, fname, "exec"), ns)
        if k == 0:
            assert lines[-1].startswith("[pca] wrote")
        elif k == 1:                                      # comments and layout do not count
            assert lines[-1].startswith("[pca] up to date")
        else:
            assert "the code of the pca cell changed" in lines[0] and lines[-1].startswith("[pca] wrote")
    assert list(read_rds(tmp_path / f"{PFX}.pca.rds")) == ["PCA_1", "PCA_2", "PCA_3", "tPCA"]


@pytest.fixture
def checkout(tmp_path, protocol_fixture, monkeypatch):
    """A checkout-like root whose input/mash holds the fixture under the example's names."""
    import mashlib.protocol.locate as nbmod
    from mashlib.io import read_mashr_input
    from mashlib.vhat import vhat_simple
    root = tmp_path / "repo"
    ex = root / "input" / "mash"
    ex.mkdir(parents=True)
    shutil.copy(protocol_fixture, ex / "protocol_example.mashr_input.rds")
    pre = read_mashr_input(protocol_fixture).preprocess()
    write_rds(ex / "protocol_example.EE.mash.rds", pre.to_dict())
    write_rds(ex / "protocol_example.EE.V_simple.rds", vhat_simple(pre.null.b, pre.null.s))
    U = {"identity": np.eye(8), "equal_effects": np.ones((8, 8))}
    import pandas as pd
    write_rds(ex / "protocol_example.EE.prior.rds",
              {"U": U, "w": pd.Series([0.5, 0.25, 0.25], index=["null", *U]), "loglik": None})
    monkeypatch.setattr(nbmod, "repo_root", lambda: root)
    return root


def test_notebook_defaults_never_overwrite_other_results(checkout):
    lines = []
    ns = {"workflow": "pca", "data": "", "cwd": "./mashr_workflow_output", "npc": 2}
    P = protocol.prepare("mixture_prior", "pca", ns, log=lines.append)
    assert P["cwd"] == str(checkout / "output" / "mixture_prior")
    assert any(ln.startswith("data: ") and "(the shipped example)" in ln for ln in lines)
    nbcode.exec_step("mixture_prior", "pca", P)
    made = checkout / "output" / "mixture_prior" / "protocol_example.pca.rds"
    before = made.read_bytes()
    lines.clear()
    P = protocol.prepare("mixture_prior", "pca", dict(ns, npc=3), log=lines.append)   # other parameters
    assert P["cwd"] == str(checkout / "output" / "scratch" / "mixture_prior")
    assert "never overwrite" in lines[0] and "npc 2 -> 3" in lines[0]
    nbcode.exec_step("mixture_prior", "pca", P)
    assert made.read_bytes() == before
    assert list(read_rds(Path(P["cwd"]) / "protocol_example.pca.rds"))[:3] == ["PCA_1", "PCA_2", "PCA_3"]
    lines.clear()
    P = protocol.prepare("mixture_prior", "pca", ns, log=lines.append)                  # same again: reused
    assert P["cwd"] == str(checkout / "output" / "mixture_prior")


def test_mash_fit_defaults_use_the_last_mixture_prior_run(checkout):
    lines = []
    ns = {"workflow": "mash", "data": "", "cwd": "./mashr_workflow_output"}
    P = protocol.prepare("mash_fit", "mash", ns, log=lines.append)
    assert P["prior_data"] == str(checkout / "input" / "mash" / "protocol_example.EE.prior.rds")
    assert any(ln.startswith("prior: ") and "shipped example prior" in ln for ln in lines)
    assert any(ln.startswith("V: ") for ln in lines)
    last = checkout / "output" / "mixture_prior" / "protocol_example.EE.prior.rds"
    last.parent.mkdir(parents=True)
    shutil.copy(checkout / "input" / "mash" / "protocol_example.EE.prior.rds", last)
    lines.clear()
    P = protocol.prepare("mash_fit", "mash", ns, log=lines.append)
    assert P["prior_data"] == str(last)
    assert any("the last mixture_prior run" in ln for ln in lines if ln.startswith("prior: "))


def test_memory_budget_param():
    """--mem bounds the working blocks of mash's likelihood/posterior to a quarter of it."""
    from mashlib.model import DEFAULT_MEMORY_BYTES
    assert Params({"mem": "16G"}, "mash_fit", "mash", []).memory_bytes == 4 * 10 ** 9
    assert Params({"mem": "10M"}, "mash_fit", "mash", []).memory_bytes == 16 * 2 ** 20
    assert Params({"mem": ""}, "mash_fit", "mash", []).memory_bytes == DEFAULT_MEMORY_BYTES


def _code_outputs(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    return [(c["metadata"].get("tags", []), c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.slow
def test_cli_progress_task_options_and_figures(capsys, tmp_path, protocol_fixture):
    out = tmp_path / "mp"
    rc = main(["run", "mixture_prior", "pca", "--data", str(protocol_fixture), "--cwd", str(out),
               "--container", "docker://x.sif", "--job-size", "2", "--walltime", "5h", "--mem", "16G",
               "--numThreads", "1", "--output-suffix", "all"])
    o, e = capsys.readouterr()
    assert rc == 0, e
    assert "note: --container docker://x.sif, --job-size 2, --walltime 5h: SoS task options, ignored" in e
    assert "mixture_prior pca: pca" in o and "BLAS threads: 1" in o        # streamed from the kernel
    assert f"[pca] start (no output yet): {PFX}.rds -> {PFX}.pca.rds" in o
    assert "[pca] wrote " in o and o.index("[pca] start") < o.index("[pca] wrote")
    # the executed notebook keeps only the pca section, and its figures
    executed = out / f"{PFX}.pca.ipynb"
    cells = _code_outputs(executed)
    assert {t for tags, _ in cells for t in tags if t.startswith("section:")} == {"section:pca"}
    show = [outs for tags, outs in cells if tags == ["section:pca"]][0]
    assert any("image/png" in o_.get("data", {}) for o_ in show)
    side = json.loads((out / f"{PFX}.pca.rds.json").read_text())
    assert side["all_parameters"]["mem"] == "16G" and side["all_parameters"]["numThreads"] == 1
    # --quiet: nothing but the result lines; the step is up to date
    rc = main(["run", "mixture_prior", "pca", "--data", str(protocol_fixture), "--cwd", str(out), "--quiet"])
    o, e = capsys.readouterr()
    assert rc == 0 and "[pca]" not in o and o.splitlines()[-1].startswith("mixture_prior pca: done in")


@pytest.mark.slow
def test_every_mixture_prior_section_runs_under_papermill(tmp_path, protocol_fixture):
    """One papermill run of every section but the udr ones (run in-process in test_protocol)
    and plot_U (whose data is a prior: test_cli), in dependency order; figures in each."""
    from mashlib.protocol.notebook import execute_notebook
    p = protocol.check_inputs("mixture_prior", "vhat_mle", dict(data=str(protocol_fixture), cwd=str(tmp_path),
                                                                max_iter=1))
    plan = ["flash", "flash_nonneg", "pca", "canonical", "vhat_identity", "vhat_simple",
            "vhat_corshrink_xcondition", "vhat_simple_specific", "ed_bovy", "vhat_mle"]
    out = execute_notebook("mixture_prior", dict(p, workflow="vhat_mle", interactive=False), tmp_path / "all.ipynb",
                           plan=plan, quiet=True)
    cells = _code_outputs(out)
    ran = [t[0][len("section:"):] for t, _ in cells if "compute" in t]
    assert ran == plan
    for step in plan:
        assert STEPS[step].outputs(p)[0].is_file(), step
        if step.startswith(("vhat", "pca", "canonical", "ed_bovy")):
            show = [outs for tags, outs in cells if tags == [f"section:{step}"]][0]
            assert any("image/png" in o.get("data", {}) for o in show), step


def test_lab_works_from_a_scratch_copy_and_as_root(tmp_path, monkeypatch):
    import subprocess
    dest = lab_workspace(tmp_path / "lab")
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["mash_fit.ipynb", "mash_posterior.ipynb", "mash_protocol.ipynb", "mixture_prior.ipynb",
                     "multivariate_mixture_vignette.ipynb"]
    (dest / "mash_fit.ipynb").write_text("{}")                  # the user's edited copy is kept
    lab_workspace(dest)
    assert (dest / "mash_fit.ipynb").read_text() == "{}"
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda *a, **k: "/usr/bin/jupyter")
    assert main(["lab", "--dir", str(dest), "--no-browser"]) == 0
    assert calls[0][:2] == ["/usr/bin/jupyter", "lab"] and "--allow-root" in calls[0]
    assert f"--notebook-dir={dest}" in calls[0] and "--no-browser" in calls[0]
    assert "lab/" in (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()


def test_help_matches_the_cli(capsys):
    assert main(["run", "mixture_prior", "-h"]) == 0
    out = capsys.readouterr().out
    assert "required on the command line" in out            # --data: no silent example on the CLI
    assert "<checkout>/output/<notebook>" in out             # where a notebook with data empty writes
    assert "--numThreads" in out and "--mem" in out and "--output-suffix" in out and "--quiet" in out
    assert "--container, --job-size, --walltime" in out
    assert "3 as in the mash paper" not in out and "the mash paper used 3" in out


def test_iteration_progress_lines_and_bar(tmp_path, protocol_fixture, capsys):
    """ED's iterations: throttled [ed_bovy] lines in batch; a tqdm bar (not lines) in JupyterLab."""
    p = protocol.check_inputs("mixture_prior", "ed_bovy", dict(data=str(protocol_fixture), cwd=str(tmp_path),
                                                              mixture_components=["pca"]))
    for interactive in (False, True):
        lines = []
        P = Params(p, "mixture_prior", "ed_bovy", ["pca", "vhat_simple", "ed_bovy"], log=lines.append,
                   interactive=interactive)
        if interactive:
            (tmp_path / f"{PFX}.EE.prior.rds").unlink()
        for step in P.plan:
            nbcode.exec_step("mixture_prior", step, P)
        it_lines = [ln for ln in lines if ln.startswith("[ed_bovy] ED iteration")]
        cap = capsys.readouterr()
        err = cap.out + cap.err
        if not interactive:
            assert it_lines and len(it_lines) < 10           # throttled: not one per 10 iterations
            assert any(ln.startswith("[ed_bovy] ED:") for ln in lines)
        else:
            assert not it_lines and "[ed_bovy]" in err and " it" in err    # the bar (text form outside Jupyter)
        assert lines[-1].startswith("[ed_bovy] wrote ")


@pytest.mark.parametrize("nb", list(PARAMS))
def test_resolved_options_are_a_frozen_typed_dataclass(nb, protocol_fixture):
    """The options travel as p.effect_model (a frozen dataclass made from the parameter table)."""
    import dataclasses

    wf = protocol.workflow_names(nb)[0]
    extra = {"vhat_data": str(protocol_fixture), "prior_data": str(protocol_fixture)} if nb == "mash_fit" else {}
    main = "analysis_units" if nb == "mash_posterior" else "data"
    if nb == "mash_posterior":                      # a unit list and a model instead of data
        extra = {"mash_model": str(protocol_fixture)}
    p = protocol.resolve_params(nb, wf, {main: str(protocol_fixture), "effect_model": "ez", **extra})
    assert dataclasses.is_dataclass(p) and [f.name for f in dataclasses.fields(p)] == [q.name for q in PARAMS[nb]]
    assert p.effect_model == "EZ" and p["effect_model"] == "EZ" and dict(p)[main] == getattr(p, main)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.effect_model = "EE"
