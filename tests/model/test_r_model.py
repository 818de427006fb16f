"""Fitted mash models written by R, passed straight to mashlib, and models written for R.

The R objects are ``saveRDS(mash(...))`` files of the first-round references
(``sim_small/a_mash_EE_canonical.rds``, ``b_mash_EZ_canonical.rds``, and the ``m`` of
``d_pca_ed_mash.rds``: canonical + ED(PCA) with labelled matrices), with their JSON
values (MANIFEST: posteriors with R's fitted pi plugged in agree to 1e-8).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mashlib as ml
from mashlib import MashInputError
from mashlib.io import RArray, RList, read_rds, write_rds

REF = Path(__file__).parents[1] / "data" / "reference" / "sim_small"
pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)


@pytest.fixture(scope="module")
def r_ee():
    return read_rds(REF / "a_mash_EE_canonical.rds"), json.loads((REF / "a_mash_EE_canonical.json").read_text())


@pytest.fixture(scope="module")
def data_ee():
    return ml.mash_set_data(read_rds(REF / "Bhat.rds"), read_rds(REF / "Shat.rds"))


def test_r_model_is_what_read_rds_gives(r_ee):
    m, _ = r_ee
    assert isinstance(m, RList) and m.r_class == ["mash"] and "fitted_g" in m


def test_get_accessors_on_r_model(r_ee):
    m, ref = r_ee
    assert ml.get_loglik(m) == pytest.approx(ref["loglik"], rel=1e-12)
    pi = ml.get_estimated_pi(m)
    assert list(pi.index) == ref["pi_by_cov"]["names"]
    np.testing.assert_allclose(pi.to_numpy(), ref["pi_by_cov"]["values"], atol=1e-12)
    pi_all = ml.get_estimated_pi(m, "all")
    assert list(pi_all.index) == ref["pi"]["names"]
    np.testing.assert_allclose(pi_all.to_numpy(), ref["pi"]["values"], atol=1e-12)
    np.testing.assert_allclose(ml.get_estimated_pi(m, "grid").to_numpy(), ref["pi_by_grid"]["values"], atol=1e-12)
    bf = (np.ravel(ref["alt_loglik"]) - np.ravel(ref["null_loglik"])) / np.log(10)
    np.testing.assert_allclose(ml.get_log10bf(m), bf, atol=1e-10)
    np.testing.assert_allclose(ml.get_pm(m).to_numpy(), ref["PosteriorMean"], atol=1e-12)
    np.testing.assert_allclose(ml.get_lfsr(m).to_numpy(), ref["lfsr"], atol=1e-12)
    assert ml.get_significant_results(m).size == int((np.min(ref["lfsr"], axis=1) < 0.05).sum())
    # a bare fitted_g list, and the protocol's list(mash_model, vhat_file, prior_file)
    np.testing.assert_allclose(ml.get_estimated_pi(m["fitted_g"]).to_numpy(), pi.to_numpy(), atol=0)
    wrapped = {"mash_model": m, "vhat_file": "V.rds", "prior_file": "prior.rds"}
    assert ml.get_loglik(wrapped) == ml.get_loglik(m)
    np.testing.assert_allclose(ml.get_psd(wrapped).to_numpy(), ref["PosteriorSD"], atol=1e-12)


def test_posterior_and_fixg_with_r_model(r_ee, data_ee, tmp_path):
    m, ref = r_ee
    post = ml.mash_compute_posterior_matrices(m, data_ee)
    for k in ("PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr"):
        np.testing.assert_allclose(post[k].to_numpy(), ref[k], atol=1e-8, err_msg=k)
    refit = ml.mash(data_ee, g=m, fixg=True)
    assert refit.loglik == pytest.approx(ref["loglik"], rel=1e-6)
    np.testing.assert_allclose(refit.fitted_g.pi, ref["pi"]["values"], atol=1e-15)
    # the protocol's model file, written and read back
    write_rds(tmp_path / "model.rds", {"mash_model": m, "vhat_file": "V.rds", "prior_file": "p.rds"})
    saved = read_rds(tmp_path / "model.rds")
    post2 = ml.mash_compute_posterior_matrices(saved, data_ee)
    np.testing.assert_allclose(post2["lfsr"].to_numpy(), post["lfsr"].to_numpy(), atol=0)
    g = ml.fitted_g_from_r(tmp_path / "model.rds")
    assert isinstance(g, ml.FittedG) and list(g.Ulist)[:2] == ["identity", "condition_1"]
    np.testing.assert_allclose(ml.mash(data_ee, g=saved, fixg=True).loglik, refit.loglik, rtol=1e-12)


def test_r_ez_model_alpha_checked(data_ee):
    m = read_rds(REF / "b_mash_EZ_canonical.rds")
    with pytest.raises(MashInputError, match="alpha = 0.0 but the mash model was fitted with alpha = 1.0"):
        ml.mash_compute_posterior_matrices(m, data_ee)
    ref = json.loads((REF / "b_mash_EZ_canonical.json").read_text())
    d1 = ml.mash_set_data(read_rds(REF / "Bhat.rds"), read_rds(REF / "Shat.rds"), alpha=1)
    post = ml.mash_compute_posterior_matrices(m, d1)
    np.testing.assert_allclose(post["PosteriorMean"].to_numpy(), ref["PosteriorMean"], atol=1e-8)


def test_mash_from_r_fields():
    m_r = read_rds(REF / "d_pca_ed_mash.rds")["m"]
    m = ml.mash_from_r(m_r)
    assert isinstance(m, ml.MashResult)
    assert m.conditions == [f"condition_{i}" for i in range(1, 6)]
    assert m.row_ids[:2] == ["effect_1", "effect_2"]
    assert m.vloglik.shape == (2000,) and m.alt_loglik.shape == (2000,)
    assert m.loglik == pytest.approx(m.vloglik.sum(), rel=1e-12)
    assert list(m.posterior_weights.index[:2]) == ["effect_1", "effect_2"]
    assert list(m.fitted_g.Ulist)[-1] == "ED_tPCA" and isinstance(m.fitted_g.Ulist["ED_tPCA"], np.ndarray)
    assert m.lm is None and "lfdr" in m.result


def test_mash_to_r_has_r_structure(tmp_path):
    """Out and back in: the same elements, classes and dimnames as the file R wrote."""
    m_r = read_rds(REF / "d_pca_ed_mash.rds")["m"]
    m = ml.mash_from_r(m_r)
    labelled = [k for k, v in m_r["fitted_g"]["Ulist"].items() if isinstance(v, pd.DataFrame)]
    assert labelled == ["ED_PCA_1", "ED_PCA_2", "ED_PCA_3", "ED_PCA_4", "ED_PCA_5", "ED_tPCA"]
    write_rds(tmp_path / "m.rds", ml.mash_to_r(m, labelled=labelled))
    back = read_rds(tmp_path / "m.rds")
    assert isinstance(back, RList) and back.r_class == ["mash"]
    assert list(back) == list(m_r)
    assert list(back["fitted_g"]) == list(m_r["fitted_g"])
    for k, U in m_r["fitted_g"]["Ulist"].items():
        assert type(back["fitted_g"]["Ulist"][k]) is type(U), k
        if isinstance(U, pd.DataFrame):
            assert list(back["fitted_g"]["Ulist"][k].columns) == list(U.columns)
        np.testing.assert_allclose(np.asarray(back["fitted_g"]["Ulist"][k]), np.asarray(U), atol=0)
    assert list(back["fitted_g"]["pi"].index) == list(m_r["fitted_g"]["pi"].index)
    pw, pw_r = back["posterior_weights"], m_r["posterior_weights"]
    assert isinstance(pw_r.index, pd.RangeIndex) and isinstance(pw.index, pd.RangeIndex)
    assert list(pw.columns) == list(pw_r.columns)
    for k in ("vloglik", "alt_loglik", "null_loglik"):
        assert np.shape(back[k]) == np.shape(m_r[k]), k
    for k, v in m_r["result"].items():
        assert list(back["result"][k].index) == list(v.index) and list(back["result"][k].columns) == list(v.columns)


def test_mash_to_r_lm_and_posterior_cov(tmp_path, data_ee):
    U = ml.cov_canonical(data_ee)
    d = ml.mash_set_data(read_rds(REF / "Bhat.rds").iloc[:300], read_rds(REF / "Shat.rds").iloc[:300])
    m = ml.mash(d, U, outputlevel=4)
    out = ml.mash_to_r(m)
    write_rds(tmp_path / "m.rds", out)
    back = read_rds(tmp_path / "m.rds")
    L = back["lm"]["loglik_matrix"]
    assert isinstance(L, pd.DataFrame) and isinstance(L.index, pd.RangeIndex)
    assert list(L.columns) == m.fitted_g.component_names()
    assert isinstance(back["lm"]["lfactors"], np.ndarray)
    cov = back["result"]["PosteriorCov"]
    assert isinstance(cov, RArray) and cov.values.shape == (5, 5, 300)
    assert cov.dimnames[0] == m.conditions and cov.dimnames[2][0] == "effect_1"
    np.testing.assert_allclose(cov.values[:, :, 7], m.result["PosteriorCov"][7], atol=0)
    # and the converted model gives the same posterior as the fit it came from
    m2 = ml.mash_from_r(back)
    np.testing.assert_allclose(m2.result["PosteriorCov"], m.result["PosteriorCov"], atol=0)
    post = ml.mash_compute_posterior_matrices(back, d)
    np.testing.assert_allclose(post["lfsr"].to_numpy(), m.result["lfsr"].to_numpy(), atol=1e-12)


def test_bad_r_models(r_ee, tmp_path):
    m, _ = r_ee
    g = dict(m["fitted_g"])
    g["pi"] = g["pi"].iloc[:-1]
    with pytest.raises(MashInputError, match=r"pi has 150 entries but Ulist \(10\) x grid \(15\) \+ null gives 151"):
        ml.fitted_g_from_r(g)
    g = dict(m["fitted_g"])
    del g["grid"]
    with pytest.raises(MashInputError, match="fitted_g lacks grid"):
        ml.mash_from_r({"fitted_g": g})
    with pytest.raises(MashInputError, match="expected a mash model"):
        ml.mash_from_r([1, 2])
    write_rds(tmp_path / "v.rds", np.eye(3))
    with pytest.raises(MashInputError, match=r"v\.rds: expected a mash model"):
        ml.mash_from_r(tmp_path / "v.rds")


def test_mash_to_r_posterior_samples_and_conditions(tmp_path):
    d = ml.mash_set_data(read_rds(REF / "Bhat.rds").iloc[:40], read_rds(REF / "Shat.rds").iloc[:40])
    m = ml.mash(d, ml.cov_canonical(d), posterior_samples=3, seed=1)
    back = read_rds(write_rds(tmp_path / "m.rds", ml.mash_to_r(m)))
    smp = back["result"]["PosteriorSamples"]
    assert isinstance(smp, RArray) and smp.values.shape == (40, 5, 3)
    assert smp.dimnames[1] == m.conditions and smp.dimnames[2] == ["sample_1", "sample_2", "sample_3"]
    np.testing.assert_array_equal(smp.values, m.result["PosteriorSamples"])
    # the model read back knows its conditions: new data in another order are matched by name
    g = ml.fitted_g_from_r(back)
    assert g.conditions == m.conditions
    rev = ml.mash_set_data(read_rds(REF / "Bhat.rds").iloc[:40, ::-1], read_rds(REF / "Shat.rds").iloc[:40, ::-1])
    post = ml.mash_compute_posterior_matrices(back, rev)
    np.testing.assert_allclose(post["PosteriorMean"].to_numpy(), m.result["PosteriorMean"].to_numpy(), atol=1e-12)


def test_to_r_is_the_result_convention():
    """MashResult.to_r() gives mash_to_r's list (the protocol writes it as the mash model)."""
    import mashlib as ml

    rng = np.random.default_rng(5)
    B = rng.normal(size=(60, 3))
    d = ml.mash_set_data(B, np.ones_like(B))
    m = ml.mash(d, ml.cov_canonical(d))
    r = m.to_r()
    ref = ml.mash_to_r(m)
    assert list(r) == list(ref) and r["loglik"] == ref["loglik"] == m.loglik
    np.testing.assert_array_equal(r["fitted_g"]["pi"].to_numpy(), np.asarray(m.fitted_g.pi))
    back = ml.mash_from_r(r)
    assert back.loglik == m.loglik
