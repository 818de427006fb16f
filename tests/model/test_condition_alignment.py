"""Issue 10, items 4 and 7: new data are matched to a fitted model by condition name (reordered
to the model's order, results in the model's order, logged) or refused; mash(g=MashResult)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import mashlib as ml
from mashlib._errors import MashInputError

CONDS = ["brain", "liver", "lung", "heart"]
SHUF = [2, 0, 3, 1]                                   # lung, brain, heart, liver
OUT = ["PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb"]


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(3)
    J, R = 300, 4
    B = np.where(rng.random((J, 1)) < 0.5, 1.5 * rng.normal(size=(J, 1)), 0.0) * np.array([1, 1, 0.2, 2.0])
    S = 0.5 + rng.random((J, R))
    Bhat = pd.DataFrame(B + S * rng.normal(size=(J, R)), columns=CONDS, index=[f"v{j}" for j in range(J)])
    Shat = pd.DataFrame(S, columns=CONDS, index=Bhat.index)
    V = np.array([[1, .3, .1, 0], [.3, 1, .2, .1], [.1, .2, 1, .4], [0, .1, .4, 1]])
    data = ml.mash_set_data(Bhat, Shat, V=V)
    m = ml.mash(data, ml.cov_canonical(data))
    cols = [CONDS[i] for i in SHUF]
    shuffled = ml.mash_set_data(Bhat[cols], Shat[cols], V=V[np.ix_(SHUF, SHUF)])
    return {"m": m, "data": data, "shuffled": shuffled, "Bhat": Bhat, "Shat": Shat, "V": V}


def close(a, b, keys=OUT, tol=1e-12):
    for k in keys:
        x, y = a[k], b[k]
        for z in (x, y):
            if isinstance(z, pd.DataFrame):
                assert list(z.columns) == CONDS, k
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=tol, rtol=0, err_msg=k)


def test_fitted_g_records_conditions(fit):
    assert fit["m"].fitted_g.conditions == CONDS
    unnamed = ml.mash(ml.mash_set_data(fit["Bhat"].to_numpy(), fit["Shat"].to_numpy()),
                      ml.cov_canonical(ml.mash_set_data(fit["Bhat"].to_numpy())), outputlevel=1)
    assert unnamed.fitted_g.conditions is None


def test_posterior_matrices_align_by_name(fit, caplog):
    ref = ml.mash_compute_posterior_matrices(fit["m"], fit["data"])
    with caplog.at_level(logging.INFO, logger="mashlib"):
        got = ml.mash_compute_posterior_matrices(fit["m"], fit["shuffled"])
    close(ref, got)                                   # main: computed by position, labelled by data
    assert "reordered" in caplog.text and "model's order" in caplog.text
    g_only = ml.mash_compute_posterior_matrices(fit["m"].fitted_g, fit["shuffled"])
    close(ref, g_only)
    vl = ml.mash_compute_vloglik(fit["m"], fit["shuffled"])
    np.testing.assert_allclose(vl, ml.mash_compute_vloglik(fit["m"], fit["data"]), rtol=1e-12)


def test_condition_mismatch_refused_with_list(fit):
    other = ml.mash_set_data(fit["Bhat"].rename(columns={"lung": "lungs"}),
                             fit["Shat"].rename(columns={"lung": "lungs"}))
    with pytest.raises(MashInputError, match=r"model but not the data: \['lung'\].*not the model: \['lungs'\]"):
        ml.mash_compute_posterior_matrices(fit["m"], other)
    with pytest.raises(MashInputError, match="lungs"):
        ml.mash(other, g=fit["m"].fitted_g, fixg=True)


def test_labelled_A_is_reordered_bare_A_refused(fit):
    A = pd.DataFrame([[1.0, -1.0, 0, 0]], columns=CONDS, index=["brain-liver"])
    ref = ml.mash_compute_posterior_matrices(fit["m"], fit["data"], A=A)
    got = ml.mash_compute_posterior_matrices(fit["m"], fit["shuffled"], A=A[[CONDS[i] for i in SHUF]])
    for k in OUT:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(ref[k]), atol=1e-12)
    with pytest.raises(MashInputError, match="unlabelled A are ambiguous"):
        ml.mash_compute_posterior_matrices(fit["m"], fit["shuffled"], A=A.to_numpy())


def test_mash_fixg_aligns_and_accepts_mash_result(fit):
    m = fit["m"]
    ref = ml.mash(fit["data"], g=m.fitted_g, fixg=True)
    got = ml.mash(fit["shuffled"], g=m.fitted_g, fixg=True)
    close(ref.result, got.result)
    np.testing.assert_allclose(got.loglik, ref.loglik, rtol=1e-12)
    # item 7: a MashResult stands for its fitted_g (main: AttributeError)
    via_result = ml.mash(fit["shuffled"], g=m, fixg=True)
    close(ref.result, via_result.result)
    refit = ml.mash(fit["data"], g=m)                  # re-estimates pi on the same U and grid
    np.testing.assert_allclose(refit.fitted_g.pi, m.fitted_g.pi, atol=1e-6)
    with pytest.raises(MashInputError, match="alpha"):
        ml.mash(ml.mash_set_data(fit["Bhat"], fit["Shat"], alpha=1.0, V=fit["V"]), g=m, fixg=True)


def test_streaming_aligns_mashdata_and_frames(fit):
    ref = ml.mash_compute_posterior_matrices(fit["m"], fit["data"])
    # a MashData in another order, with a non-identity V in the data's order
    got = ml.compute_posterior_streaming(fit["m"], fit["shuffled"], progress=False)
    assert got.conditions == CONDS
    close(ref, got.arrays)                             # main: V taken in the wrong order
    cols = [CONDS[i] for i in SHUF]
    got2 = ml.compute_posterior_streaming(fit["m"], fit["Bhat"][cols], fit["Shat"][cols], V=fit["V"],
                                          progress=False)
    close(ref, got2.arrays)
    A = pd.DataFrame([[1.0, -1.0, 0, 0]], columns=CONDS, index=["brain-liver"])
    refA = ml.mash_compute_posterior_matrices(fit["m"], fit["data"], A=A)
    gotA = ml.compute_posterior_streaming(fit["m"], fit["shuffled"], A=A[cols], progress=False)
    np.testing.assert_allclose(np.asarray(gotA["lfsr"]), np.asarray(refA["lfsr"]), atol=1e-12)
    with pytest.raises(MashInputError, match="unlabelled A are ambiguous"):
        ml.compute_posterior_streaming(fit["m"], fit["shuffled"], A=A.to_numpy(), progress=False)


def test_dask_aligns(fit):
    pytest.importorskip("distributed", reason="needs dask.distributed (mashlib[dask])")
    ref = ml.mash_compute_posterior_matrices(fit["m"], fit["data"])
    got = ml.compute_posterior_streaming(fit["m"], fit["shuffled"], engine="dask", n_workers=1,
                                         progress=False, calibrate=False, chunk_size=128)
    close(ref, got.arrays)
