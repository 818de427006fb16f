"""Contrasts (mashr common-baseline analysis) against R mashr 0.2.81.

Reference: tests/data/reference/wave2/contrast (tests/data/reference/wave2/README.md section 1): contrast_matrix for a
name, an index and "mean"; mash_update_data(mash_set_data(Bhat, Shat, V = V), ref = 2 / "mean")
field by field; mash(dc, cov_canonical(dc)) on it.  Tolerances: contrast matrices and the
transformed Bhat/Shat/LSVSLt 1e-10 absolute; loglik 1e-6 relative; pi 1e-4 absolute;
posteriors 1e-4 absolute (1e-8 with R's pi).
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mashlib as ml

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

D = Path(__file__).parents[1] / "data" / "reference" / "wave2" / "contrast"
CASES = [(2, "mash_contrast_ref2.json"), ("mean", "mash_contrast_refmean.json")]
POST = ["PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb"]


@lru_cache(maxsize=None)
def _json(name):
    return json.load(open(D / name))


@lru_cache(maxsize=None)
def _data():
    B = pd.read_csv(D / "Bhat.csv")
    S = pd.read_csv(D / "Shat.csv")
    V = pd.read_csv(D / "V.csv").to_numpy()
    return ml.mash_set_data(B, S, V=V)


@lru_cache(maxsize=None)
def _fit(ref):
    dc = ml.mash_update_data(_data(), ref=ref)
    return dc, ml.mash(dc, ml.cov_canonical(dc))


@pytest.mark.parametrize("key,R,ref,names", [
    ("ref_name_Brain", 6, "Brain", True), ("ref_index_2", 6, 2, True), ("ref_mean", 6, "mean", True),
    ("ref_index_4_default_names", 6, 4, False), ("ref_mean_R3_default_names", 3, "mean", False)])
def test_contrast_matrix_matches_R(key, R, ref, names):
    r = _json("contrast_matrices.json")[key]
    cn = ["Adipose", "Blood", "Brain", "Heart", "Liver", "Lung"]
    L = ml.contrast_matrix(R, ref, cn if names else None)
    np.testing.assert_allclose(L.to_numpy(), np.array(r["L"]), rtol=0, atol=1e-10)
    assert list(L.index) == r["rownames"]
    assert list(L.columns) == r["colnames"]
    assert L.attrs["reference"] == r["reference"]


@pytest.mark.parametrize("ref,fname", CASES)
def test_update_data_fields_match_R(ref, fname):
    r = _json(fname)
    dc = ml.mash_update_data(_data(), ref=ref)
    for k in ("Bhat", "Shat", "Shat_orig", "Shat_alpha", "V"):
        np.testing.assert_allclose(np.asarray(getattr(dc, k)), np.array(r[k]), rtol=0, atol=1e-10,
                                   err_msg=k)
    np.testing.assert_allclose(dc.L.to_numpy(), np.array(r["L"]), rtol=0, atol=1e-10)
    assert list(dc.L.index) == r["L_rownames"] == dc.conditions
    assert list(dc.L.columns) == r["L_colnames"]
    assert dc.commonV is r["commonV"] and dc.alpha == r["alpha"]
    assert list(dc.LSVSLt.shape) == r["LSVSLt_dims"]               # R's Q x Q x J layout
    np.testing.assert_allclose(np.moveaxis(dc.LSVSLt, 2, 0), np.array(r["LSVSLt_by_row"]),
                               rtol=0, atol=1e-10)
    assert list(ml.cov_canonical(dc)) == r["cov_canonical_names"]


@pytest.mark.parametrize("ref,fname", CASES)
def test_mash_on_contrasts_matches_R(ref, fname):
    r = _json(fname)["mash"]
    dc, m = _fit(ref)
    assert abs(m.loglik - r["loglik"]) <= 1e-6 * abs(r["loglik"])
    np.testing.assert_allclose(m.vloglik, r["vloglik"], rtol=1e-6)
    np.testing.assert_allclose(m.fitted_g.grid, r["grid"], rtol=1e-10)
    assert m.fitted_g.component_names() == list(r["pi"])
    np.testing.assert_allclose(m.fitted_g.pi, list(r["pi"].values()), rtol=0, atol=1e-4)
    for k in POST:
        assert list(m.result[k].columns) == r["result_colnames"], k
        np.testing.assert_allclose(m.result[k].to_numpy(), np.array(r[k]), rtol=0, atol=1e-4,
                                   err_msg=k)
    # with R's pi the posterior is plain linear algebra: 1e-8
    g = ml.FittedG(pi=np.array(list(r["pi"].values())),
                   Ulist={k: np.array(v) for k, v in r["Ulist"].items()}, grid=np.array(r["grid"]))
    post = ml.mash_compute_posterior_matrices(g, dc)
    for k in POST:
        np.testing.assert_allclose(post[k].to_numpy(), np.array(r[k]), rtol=0, atol=1e-8,
                                   err_msg=k)
    if ref == "mean":     # R reports all R deviations from the mean; they sum to zero
        assert post["PosteriorMean"].shape[1] == 6
        np.testing.assert_allclose(post["PosteriorMean"].sum(axis=1), 0, atol=1e-10)


def test_ref_by_name_equals_ref_by_index():
    a = ml.mash_update_data(_data(), ref="Blood")
    b = ml.mash_update_data(_data(), ref=2)
    assert a.conditions == b.conditions
    np.testing.assert_array_equal(a.Bhat, b.Bhat)
    np.testing.assert_array_equal(a.LSVSLt, b.LSVSLt)


def test_contrast_equals_plain_data_with_the_contrast_errors():
    """mash on contrast data = mash on (B L^T, sqrt diag, per-row V = LSVSLt): same model."""
    dc, m = _fit(2)
    plain = ml.mash_set_data(dc.Bhat, dc.Shat, V=dc.LSVSLt)
    m2 = ml.mash(plain, ml.cov_canonical(plain), grid=m.fitted_g.grid)
    assert abs(m2.loglik - m.loglik) <= 1e-9 * abs(m.loglik)
    np.testing.assert_allclose(m2.result["lfsr"].to_numpy(), m.result["lfsr"].to_numpy(),
                               atol=1e-9)


def test_common_shat_gives_one_LSVSLt():
    d = _data()
    dd = ml.mash_set_data(d.Bhat[:50], np.full((50, 6), 0.7), V=d.V,
                          conditions=d.conditions)
    dc = ml.mash_update_data(dd, ref="mean")
    assert dc.LSVSLt.shape == (5, 5) and dc.error_commonV
    Lm = dc.L.to_numpy()
    Sig = Lm @ (0.49 * d.V) @ Lm.T
    np.testing.assert_allclose(dc.Shat, np.tile(np.sqrt(np.diag(Sig)), (50, 1)), atol=1e-12)
    np.testing.assert_allclose(np.diag(dc.LSVSLt), 1.0, rtol=0, atol=0)


def test_subset_and_new_V_on_contrast_data():
    d = _data()
    dc = ml.mash_update_data(d, ref="Brain")
    sub = dc.subset(np.arange(10, 20))
    direct = ml.mash_update_data(d.subset(np.arange(10, 20)), ref="Brain")
    np.testing.assert_allclose(sub.LSVSLt, direct.LSVSLt, atol=1e-14)
    np.testing.assert_allclose(sub.Shat_orig, direct.Shat_orig, atol=0)
    # a new V recomputes the contrast errors (mashr stops with "The contrast is not correct")
    V2 = 0.3 * np.ones((6, 6)) + 0.7 * np.eye(6)
    upd = ml.mash_update_data(dc, V=V2)
    fresh = ml.mash_update_data(ml.mash_update_data(d, V=V2), ref="Brain")
    np.testing.assert_allclose(upd.Shat, fresh.Shat, atol=1e-12)
    np.testing.assert_allclose(upd.LSVSLt, fresh.LSVSLt, atol=1e-12)
    np.testing.assert_array_equal(upd.Bhat, dc.Bhat)


def test_mean_reference_with_user_A():
    dc, m = _fit("mean")
    A = pd.DataFrame([[1, -1, 0, 0, 0, 0], [0, 0, 0, 0.5, 0.5, -1]], index=["Adi-Blo", "HL-Lung"],
                     columns=list(dc.L.columns), dtype=float)
    post = ml.mash_compute_posterior_matrices(m, dc, A=A)
    assert list(post["PosteriorMean"].columns) == ["Adi-Blo", "HL-Lung"]
    full = m.result["PosteriorMean"].to_numpy()                 # all 6 deviations from the mean
    np.testing.assert_allclose(post["PosteriorMean"].to_numpy(), full @ A.to_numpy().T, atol=1e-10)
    with pytest.raises(ml.MashInputError, match="one column per original condition"):
        ml.mash_compute_posterior_matrices(m, dc, A=np.ones((1, 5)))


def test_bad_ref_is_a_one_line_error_listing_conditions():
    d = _data()
    with pytest.raises(ml.MashInputError) as e:
        ml.mash_update_data(d, ref="Kidney")
    msg = str(e.value)
    assert "\n" not in msg and "'Kidney'" in msg and "Adipose, Blood, Brain" in msg and "mean" in msg
    with pytest.raises(ml.MashInputError, match="ref: 7 is not a condition"):
        ml.contrast_matrix(6, 7)
    with pytest.raises(ml.MashInputError, match="ref: True"):
        ml.contrast_matrix(6, True)
    with pytest.raises(ml.MashInputError, match="already contrasts"):
        ml.mash_update_data(ml.mash_update_data(d, ref=1), ref=1)
    with pytest.raises(ml.MashInputError, match="contrast data"):
        ml.mash_estimate_corr_em(ml.mash_update_data(d, ref=1), {"I": np.eye(5)})


def test_cov_ed_on_contrasts_uses_the_contrast_errors():
    dc = ml.mash_update_data(_data(), ref=2).subset(np.arange(300))
    plain = ml.mash_set_data(dc.Bhat, dc.Shat, V=dc.LSVSLt)        # same errors, per-row V
    U0 = ml.cov_pca(dc, 2)
    a, b = ml.cov_ed(dc, U0, maxiter=30), ml.cov_ed(plain, U0, maxiter=30)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-8, atol=1e-10)


def test_streaming_refuses_contrast_data():
    dc, m = _fit(2)
    with pytest.raises(ml.MashInputError, match="contrast data"):
        ml.compute_posterior_streaming(m, dc, max_memory="1GB", progress=False)
