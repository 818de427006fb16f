"""The protocol layer (mashlib.protocol): every workflow on the 8-condition fixture.

Outputs are checked for names, dims and values: against R's chain on the same fixture
(golden/chain_values.json) where the step is deterministic, and against the library
called directly otherwise.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib import MashInputError, protocol
from mashlib.io import RArray, RList, read_rds, write_rds
from mashlib.protocol import naming, steps

GOLD = Path(__file__).parents[1] / "data" / "reference" / "golden"
CONDS = ["ALL", "Ast", "End", "Exc", "Inh", "Mic", "OPC", "Oli"]
PFX = "mashr_input_fixture"


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLD / "chain_values.json").read_text())


@pytest.fixture(scope="module")
def chain(tmp_path_factory, protocol_fixture):
    """ed_bovy with the defaults on the fixture: runs flash, flash_nonneg, pca, canonical, vhat_simple."""
    cwd = tmp_path_factory.mktemp("mixture_prior")
    lines = []
    outs = protocol.ed_bovy(data=str(protocol_fixture), cwd=str(cwd), log=lines.append,
                            ed_accelerate=False)  # R parity: plain EM
    return cwd, outs, lines


def test_file_names():
    assert naming.component_file("o", "p", "flash_nonneg") == Path("o/p.flash_nonneg.rds")
    assert naming.vhat_file("o", "p", "ez", "simple") == Path("o/p.EZ.V_simple.rds")
    assert naming.vhat_file("o", "p", "EE", "corshrink_xcondition") == Path("o/p.EE.V_vhat_corshrink_xcondition.rds")
    assert naming.prior_file("o", "p", "EE") == Path("o/p.EE.prior.rds")
    assert naming.mash_model_file("o", "p", "EE") == Path("o/p.EE.mash_model.rds")
    assert naming.posterior_file("o", "p", "EZ") == Path("o/p.EZ.posterior.rds")
    assert naming.plot_file("o", "x/protocol_example.EE.prior.rds") == Path("o/protocol_example.EE.prior.pdf")
    assert naming.plot_file("o", "a.rds", name="U$x") == Path("o/a_U_x.pdf")
    assert naming.prefix_of("in/protocol_example.mashr_input.rds", "") == "protocol_example.mashr_input"
    assert naming.effect_model("ee") == "EE" and naming.alpha_of("ez") == 1.0
    with pytest.raises(MashInputError, match="not an effect model"):   # issue 10: no silent EE
        naming.effect_model("anything")


def test_plan_follows_sos_dependencies():
    d = dict(data="x.rds")
    assert protocol.plan("mixture_prior", "ed_bovy", d) == [
        "flash", "flash_nonneg", "pca", "canonical", "vhat_simple", "ed_bovy"]
    # vhat mle: the prior is built with V_simple, then V_mle is refined against it (map 1.7)
    assert protocol.plan("mixture_prior", "vhat_mle", dict(d, vhat="mle", mixture_components="pca,canonical")) == [
        "pca", "canonical", "vhat_simple", "ed_bovy", "vhat_mle"]
    assert protocol.plan("mixture_prior", "ud", dict(d, vhat="identity", mixture_components=["canonical"])) == [
        "canonical", "vhat_identity", "ud"]
    assert protocol.plan("mash_fit", "mash", dict(d, vhat_data="v", prior_data="p")) == ["mash_1", "mash_2"]
    assert protocol.plan("mash_fit", "mash", dict(d, vhat_data="v", prior_data="p",
                                                  compute_posterior=False)) == ["mash_1"]


def test_ed_bovy_chain_outputs_match_r(chain, golden):
    cwd, outs, lines = chain
    assert outs == [cwd / f"{PFX}.EE.prior.rds"]
    steps_run = list(dict.fromkeys(ln.split("]")[0][1:] for ln in lines))
    assert steps_run == ["flash", "flash_nonneg", "pca", "canonical", "vhat_simple", "ed_bovy"]
    # one line when each step starts (with why) and one when it ends (with the elapsed time)
    assert [ln for ln in lines if " start " in ln][0].startswith("[flash] start (no output yet): ")
    assert sum(" wrote " in ln and ln.rstrip().endswith(" s") for ln in lines) == 6
    assert any(ln.startswith("[ed_bovy] extreme deconvolution: 17 strong rows x 16 components x 8 conditions")
               for ln in lines)
    assert any(ln.startswith("[ed_bovy] ED iteration") for ln in lines)   # the engine's progress
    # flash finds no factor on 17 rows: an empty list, as R
    assert read_rds(cwd / f"{PFX}.flash.rds") in ([], {})
    can = read_rds(cwd / f"{PFX}.canonical.rds")
    assert list(can) == golden["names_canonical"]
    assert isinstance(can["identity"], np.ndarray)  # canonical matrices carry no dimnames
    pca = read_rds(cwd / f"{PFX}.pca.rds")
    assert list(pca) == golden["names_pca2"]
    assert list(pca["tPCA"].columns) == CONDS
    for k in golden["names_pca2"]:
        np.testing.assert_allclose(pca[k].to_numpy(), np.array(golden["U_pca2"][k]), atol=1e-10)
    V = read_rds(cwd / f"{PFX}.EE.V_simple.rds")
    assert list(V.index) == CONDS
    np.testing.assert_allclose(V.to_numpy(), np.array(golden["V_simple"]), atol=1e-12)
    prior = read_rds(outs[0])
    assert list(prior) == ["U", "w", "loglik"] and prior["loglik"] is None
    assert list(prior["U"]) == golden["prior_U_names"]
    assert list(prior["w"].index) == ["null"] + golden["prior_U_names"]
    np.testing.assert_allclose(prior["w"].to_numpy(), golden["prior_w"], atol=1e-4)
    np.testing.assert_allclose(np.asarray(prior["U"]["ED_PCA_1"]), np.array(golden["U_ed_first"]), rtol=1e-4, atol=1e-6)
    # mashr's bovy_wrapper names the refined matrices by condition; canonical ones stay bare
    for k in prior["U"]:
        if k.startswith("ED_") or k.startswith("PCA") or k == "tPCA":
            assert list(prior["U"][k].columns) == CONDS and list(prior["U"][k].index) == CONDS, k
        else:
            assert isinstance(prior["U"][k], np.ndarray), k


def test_sidecar_and_skip_when_up_to_date(chain, protocol_fixture):
    cwd, outs, _ = chain
    side = json.loads(naming.sidecar_of(outs[0]).read_text())
    import hashlib
    assert side["step"] == "ed_bovy" and side["mashlib_version"]
    assert side["parameters"]["mixture_components"] == ["flash", "flash_nonneg", "pca", "canonical"]
    assert side["inputs"][str(protocol_fixture)] == hashlib.sha256(protocol_fixture.read_bytes()).hexdigest()
    mtimes = {p: p.stat().st_mtime_ns for p in cwd.glob("*.rds")}
    lines = []
    protocol.ed_bovy(data=str(protocol_fixture), cwd=str(cwd), log=lines.append, ed_accelerate=False)
    assert all("up to date" in ln for ln in lines) and len(lines) == 6
    assert mtimes == {p: p.stat().st_mtime_ns for p in cwd.glob("*.rds")}


def test_changed_parameter_or_newer_input_reruns(tmp_path, protocol_fixture):
    lines = []
    protocol.pca(data=str(protocol_fixture), cwd=str(tmp_path), npc=2, log=lines.append)
    protocol.pca(data=str(protocol_fixture), cwd=str(tmp_path), npc=3, log=lines.append)
    assert "wrote" in lines[-1]
    assert "[pca] start (parameter npc 2 -> 3 changed; overwrites the previous output)" in lines[-2]
    assert list(read_rds(tmp_path / f"{PFX}.pca.rds")) == ["PCA_1", "PCA_2", "PCA_3", "tPCA"]
    data = tmp_path / "in.rds"
    data.write_bytes(protocol_fixture.read_bytes())
    protocol.canonical(data=str(data), cwd=str(tmp_path), log=lines.append)
    out = tmp_path / "in.canonical.rds"
    os.utime(data, (time.time() + 5, time.time() + 5))  # touched, same content: still up to date
    protocol.canonical(data=str(data), cwd=str(tmp_path), log=lines.append)
    assert "up to date" in lines[-1]
    d = read_rds(data)
    d["strong.b"] = d["strong.b"] + 1
    write_rds(data, d)  # new content
    protocol.canonical(data=str(data), cwd=str(tmp_path), log=lines.append)
    assert "wrote" in lines[-1] and out.is_file()
    naming.sidecar_of(out).unlink()  # no sidecar: the mtime rule
    protocol.canonical(data=str(data), cwd=str(tmp_path), log=lines.append)
    assert "up to date" in lines[-1]
    os.utime(data, (time.time() + 50, time.time() + 50))
    protocol.canonical(data=str(data), cwd=str(tmp_path), log=lines.append)
    assert "wrote" in lines[-1]


def test_vhat_workflows(tmp_path, protocol_fixture, golden):
    kw = dict(data=str(protocol_fixture), cwd=str(tmp_path), log=lambda s: None)
    (out,) = protocol.vhat_identity(**kw)
    assert out.name == f"{PFX}.EE.V_identity.rds"
    np.testing.assert_array_equal(read_rds(out), np.eye(8))
    (out,) = protocol.vhat_simple_specific(**kw)
    V = read_rds(out)
    assert list(V.columns) == CONDS
    np.testing.assert_allclose(V.to_numpy(), np.array(golden["V_simple_specific"]), atol=1e-6)
    (out,) = protocol.vhat_simple(effect_model="EZ", **kw)
    assert out.name == f"{PFX}.EZ.V_simple.rds"


def test_vhat_corshrink(tmp_path, protocol_fixture, golden):
    (out,) = protocol.vhat_corshrink_xcondition(data=str(protocol_fixture), cwd=str(tmp_path), log=lambda s: None)
    assert out.name == f"{PFX}.EE.V_vhat_corshrink_xcondition.rds"
    np.testing.assert_allclose(read_rds(out).to_numpy(), np.array(golden["V_corshrink"]), atol=1e-4)


def _small_prior(path, data_path):
    """A 3-component prior so that mash fits take a moment (the full ED prior has 32)."""
    inp = steps.load_input(data_path)
    from mashlib.model import cov_canonical, cov_pca
    d = steps.make_data(inp.strong.b, inp.strong.s, 0.0)
    can, pca = cov_canonical(d), cov_pca(d, 2)
    U = {"equal_effects": can["equal_effects"], "identity": can["identity"],
         "tPCA": pd.DataFrame(pca["tPCA"], index=CONDS, columns=CONDS)}
    write_rds(path, {"U": U, "w": pd.Series([0.5, 0.2, 0.2, 0.1], index=["null", *U]), "loglik": None})
    return {k: np.asarray(v, dtype=float) for k, v in U.items()}


def test_vhat_mle_step_equals_library(tmp_path, protocol_fixture):
    from mashlib.vhat import vhat_mle
    U = _small_prior(tmp_path / f"{PFX}.EE.prior.rds", protocol_fixture)
    from mashlib.protocol.cells import Params
    from mashlib.protocol.nbcode import exec_step
    p = protocol.check_inputs("mixture_prior", "vhat_mle", dict(data=str(protocol_fixture), cwd=str(tmp_path),
                                                                vhat="mle", max_iter=2))
    P = Params(p, "mixture_prior", "vhat_mle", ["vhat_mle"], log=lambda s: None)
    P.checked.add("ed_bovy")                       # take the prior written above as it is
    exec_step("mixture_prior", "vhat_mle", P)      # the notebook's vhat_mle cell, in-process
    res = read_rds(naming.vhat_file(tmp_path, PFX, "EE", "mle"))
    inp = steps.load_input(protocol_fixture)
    ref = vhat_mle(inp.random.b, inp.random.s, U, alpha=0, n_subset=6000, max_iter=2, seed=999)
    np.testing.assert_allclose(res.to_numpy(), np.asarray(ref), atol=1e-12)
    assert list(res.columns) == CONDS and np.allclose(np.diag(res), 1)


def test_ud_unconstrained_refuses_ee(tmp_path, protocol_fixture):
    with pytest.raises(MashInputError, match="EZ"):
        protocol.ud_unconstrained(data=str(protocol_fixture), cwd=str(tmp_path), vhat="identity",
                                  mixture_components=["canonical"], log=lambda s: None)
    assert not (tmp_path / f"{PFX}.EE.prior.rds").exists()


def test_plot_U(chain, tmp_path):
    cwd, outs, _ = chain
    (pdf,) = protocol.plot_U(data=str(outs[0]), cwd=str(tmp_path), output_prefix="plots", max_comp=4,
                             log=lambda s: None)
    assert pdf == tmp_path / f"{PFX}.EE.prior.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    with pytest.raises(MashInputError, match="tol"):
        protocol.plot_U(data=str(outs[0]), cwd=str(tmp_path), name="", tol=2.0, output_prefix="x",
                        max_comp=3, log=lambda s: None)
    with pytest.raises(MashInputError, match="step 1"):
        protocol.plot_U(data=str(tmp_path / "nope.EE.prior.rds"), cwd=str(tmp_path), log=lambda s: None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, protocol_fixture):
    cwd = tmp_path_factory.mktemp("mash_fit")
    U = _small_prior(cwd / "prior.rds", protocol_fixture)
    V = pd.DataFrame(np.eye(8), index=CONDS, columns=CONDS)
    write_rds(cwd / "V.rds", V)
    outs = protocol.mash(data=str(protocol_fixture), vhat_data=str(cwd / "V.rds"), prior_data=str(cwd / "prior.rds"),
                         cwd=str(cwd), output_prefix="fx", log=lambda s: None)
    return cwd, outs, U


def test_mash_fit_outputs_equal_library(fitted, protocol_fixture):
    from mashlib.model import mash, mash_compute_posterior_matrices
    cwd, outs, U = fitted
    assert outs == [cwd / "fx.EE.mash_model.rds", cwd / "fx.EE.posterior.rds"]
    saved = read_rds(outs[0])
    assert list(saved) == ["mash_model", "vhat_file", "prior_file"]
    assert saved["prior_file"] == str(cwd / "prior.rds")
    m = saved["mash_model"]
    assert isinstance(m, RList) and m.r_class == ["mash"]
    assert list(m) == ["result", "loglik", "vloglik", "null_loglik", "alt_loglik", "fitted_g",
                       "posterior_weights", "alpha", "lm"]
    assert list(m["fitted_g"]) == ["pi", "Ulist", "grid", "usepointmass"]
    assert m["fitted_g"]["pi"].index[0] == "null" and m["fitted_g"]["pi"].index[1] == "equal_effects.1"
    inp = steps.load_input(protocol_fixture)
    d = steps.make_data(inp.random.b, inp.random.s, 0.0, np.eye(8))
    ref = mash(d, U, outputlevel=4)
    assert m["loglik"] == pytest.approx(ref.loglik, rel=1e-12)
    np.testing.assert_allclose(m["fitted_g"]["pi"].to_numpy(), ref.fitted_g.pi, atol=1e-12)
    assert m["lm"]["loglik_matrix"].shape == (50, len(ref.fitted_g.pi))
    assert list(m["result"]) == ["PosteriorMean", "PosteriorSD", "NegativeProb", "lfsr", "PosteriorCov"]
    post = read_rds(outs[1])
    assert list(post) == ["PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr", "PosteriorCov"]
    pm = post["PosteriorMean"]
    assert pm.shape == (17, 8) and list(pm.columns) == CONDS and pm.index[0] == "mash::mash::var1"
    cov = post["PosteriorCov"]
    assert isinstance(cov, RArray) and cov.shape == (8, 8, 17) and cov.dimnames[2][16] == "mash::mash::var17"
    ds = steps.make_data(inp.strong.b, inp.strong.s, 0.0, np.eye(8))
    rp = mash_compute_posterior_matrices(ref.fitted_g, ds, output_posterior_cov=True)
    for k in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"):
        np.testing.assert_allclose(post[k].to_numpy(), np.asarray(rp[k]), atol=1e-12)
    np.testing.assert_allclose(cov.values[:, :, 3], np.asarray(rp["PosteriorCov"])[3], atol=1e-14)


def test_mash_fit_errors(fitted, protocol_fixture, tmp_path):
    cwd, outs, _ = fitted
    kw = dict(data=str(protocol_fixture), vhat_data=str(cwd / "V.rds"), cwd=str(tmp_path), log=lambda s: None)
    with pytest.raises(MashInputError, match=r"--prior-data .*not found.*step 1.*ed_bovy"):
        protocol.mash(prior_data=str(tmp_path / "missing.EE.prior.rds"), **kw)
    assert list(tmp_path.iterdir()) == []
    # a model fitted with EE cannot give EZ posteriors
    kw.pop("log")
    with pytest.raises(MashInputError, match="alpha"):
        steps.read_fitted_g(outs[0], alpha=1.0)
    outs2 = protocol.mash(prior_data=str(cwd / "prior.rds"), compute_posterior=False, output_prefix="np",
                          log=lambda s: None, **kw)
    assert [o.name for o in outs2] == ["np.EE.mash_model.rds"]
    assert not (tmp_path / "np.EE.posterior.rds").exists()


def test_bad_parameters():
    with pytest.raises(MashInputError, match="valid: flash, flash_nonneg"):
        protocol.run_workflow("mixture_prior", "edbovy", data="x.rds")
    with pytest.raises(MashInputError, match="no workflow given"):
        protocol.run_workflow("mixture_prior", "", data="x.rds")
    with pytest.raises(MashInputError, match="did you mean --npc"):
        protocol.run_workflow("mixture_prior", "pca", data="x.rds", npcs=3)
    with pytest.raises(MashInputError, match="unknown --vhat"):
        protocol.run_workflow("mixture_prior", "pca", data="x.rds", vhat="bogus")
    with pytest.raises(MashInputError, match=r"--data \S*/x.rds: file not found"):
        protocol.run_workflow("mixture_prior", "pca", data="x.rds")
    with pytest.raises(MashInputError, match="npc"):
        protocol.run_workflow("mixture_prior", "pca", data="x.rds", npc="two")


def test_other_input_file_with_older_mtime_reruns(tmp_path, protocol_fixture):
    """A step's signature includes its input paths and checksums, not only mtimes."""
    a, b = tmp_path / "a.rds", tmp_path / "b.rds"
    d = read_rds(protocol_fixture)
    write_rds(a, d)
    d["strong.b"] = d["strong.b"] * 2
    write_rds(b, d)
    old = time.time() - 100
    os.utime(a, (old, old))
    os.utime(b, (old, old))
    lines = []
    protocol.pca(data=str(a), output_prefix="x", cwd=str(tmp_path), log=lines.append)
    protocol.pca(data=str(b), output_prefix="x", cwd=str(tmp_path), log=lines.append)
    assert [ln.split()[1] for ln in lines] == ["start", "wrote", "start", "wrote"]
    assert "input b.rds changed (another file than last time)" in lines[2]


def test_mash_fit_on_ed_bovy_prior_matches_r(chain, golden, protocol_fixture):
    """Step 2 on step 1's outputs: R's fit on the random set and posterior on the strong set."""
    cwd, outs, _ = chain
    m_file, p_file = protocol.mash(data=str(protocol_fixture), vhat_data=str(cwd / f"{PFX}.EE.V_simple.rds"),
                                   prior_data=str(outs[0]), cwd=str(cwd), log=lambda s: None)
    m = read_rds(m_file)["mash_model"]
    assert m["loglik"] == pytest.approx(golden["fit_loglik"], rel=1e-6)
    # dimnames as R keeps them: labelled prior matrices keep them through mash(), canonical
    # ones have none; posterior_weights has no row names; lm's columns are the components
    U = m["fitted_g"]["Ulist"]
    assert list(U["ED_tPCA"].columns) == CONDS and list(U["tPCA"].index) == CONDS
    assert isinstance(U["identity"], np.ndarray)
    pw = m["posterior_weights"]
    assert isinstance(pw.index, pd.RangeIndex) and pw.columns[0] == "null"
    L = m["lm"]["loglik_matrix"]
    assert isinstance(L.index, pd.RangeIndex) and list(L.columns) == list(m["fitted_g"]["pi"].index)
    assert isinstance(m["lm"]["lfactors"], np.ndarray)
    np.testing.assert_allclose(m["fitted_g"]["grid"], golden["fit_grid"], rtol=1e-10)
    from mashlib.model import get_estimated_pi
    g = steps.fitted_g_from_r(m["fitted_g"])
    np.testing.assert_allclose(get_estimated_pi(g).to_numpy(), golden["fit_pi_cov"], atol=1e-4)
    post = read_rds(p_file)
    assert list(post) == golden["post_names"]
    for key, ref in (("PosteriorMean", "post_mean_row1"), ("PosteriorSD", "post_sd_row1"),
                     ("lfsr", "post_lfsr_row1"), ("NegativeProb", "post_negprob_row1")):
        np.testing.assert_allclose(post[key].iloc[0].to_numpy(), golden[ref], atol=1e-4)
    np.testing.assert_allclose(post["PosteriorCov"].values[:, :, 0], np.array(golden["post_cov_1"]), atol=1e-6)


def test_ud_workflows_equal_library(tmp_path, protocol_fixture):
    from mashlib import prior as engines
    kw = dict(data=str(protocol_fixture), cwd=str(tmp_path), mixture_components=["pca", "canonical"],
              log=lambda s: None)
    (out,) = protocol.ud(**kw)
    pr = read_rds(out)
    names = list(pr["U"])
    assert names[:13] == json.loads((GOLD / "chain_values.json").read_text())["names_canonical"]
    assert names[13:] == [f"unconstrained{i}" for i in range(1, 51)]
    assert list(pr["w"].index) == names and pr["w"].sum() == pytest.approx(1.0)  # no "null" (map 1.10)
    inp = steps.load_input(protocol_fixture)
    V = read_rds(tmp_path / f"{PFX}.EE.V_simple.rds").to_numpy()
    d = steps.make_data(inp.strong.b, inp.strong.s, 0.0, V)
    comps = steps.read_components(protocol.resolve_params("mixture_prior", "ud", {k: v for k, v in kw.items()
                                                                                  if k != "log"}))
    ref = engines.ud(d, steps._bare(comps), seed=999)
    assert pr["loglik"] == pytest.approx(ref["loglik"], rel=1e-12)
    np.testing.assert_allclose(pr["w"].to_numpy(), ref["w"].to_numpy(), atol=1e-12)
    (out,) = protocol.ud_unconstrained(effect_model="EZ", **kw)
    assert out.name == f"{PFX}.EZ.prior.rds" and np.isfinite(read_rds(out)["loglik"])


def test_vhat_mle_chain_matches_r(chain, golden, protocol_fixture):
    """vhat=mle: the prior built with V_simple (already there: skipped), then the EM V (map 1.7)."""
    cwd, _, _ = chain
    lines = []
    (out,) = protocol.vhat_mle(data=str(protocol_fixture), cwd=str(cwd), vhat="mle", log=lines.append,
                                ed_accelerate=False)  # the R-parity prior of `chain`
    assert out.name == f"{PFX}.EE.V_mle.rds"
    assert [ln.split("]")[0][1:] for ln in lines if "up to date" in ln][-1] == "ed_bovy"
    V = read_rds(out)
    assert list(V.columns) == CONDS
    np.testing.assert_allclose(V.to_numpy(), np.array(golden["V_mle"]), atol=1e-6)
