"""CorShrink (mashlib.vhat.corshrink) against CorShrink 0.1-6 reference values."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.vhat.corshrink import (_fisher_inputs, _merge_control, _pairwise, corshrink_data,
                               corshrink_matrix, fisher_z_se, vhat_corshrink)

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"

def _json(*parts):
    with open(REF.joinpath(*parts)) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def null_z():
    import pyreadr

    return pyreadr.read_r(str(REF / "corshrink" / "null_z.rds"))[None]


# ----------------------------------------------------------------- pieces that need no ash
def test_fisher_inputs_column_major_both_triangles():
    C = np.array([[1.0, 0.5, 0.999], [0.5, 1.0, -0.2], [0.999, -0.2, 1.0]])
    z, se, pos = _fisher_inputs(C, 30, None, 0.99, -0.99)
    # reshape2::melt order without the diagonal: (2,1), (3,1), (1,2), (3,2), (1,3), (2,3)
    r = np.array([0.5, 0.99, 0.5, -0.2, 0.99, -0.2])
    np.testing.assert_allclose(z, np.arctanh(r), rtol=1e-14)
    np.testing.assert_allclose(se, np.sqrt(1 / 29 + 2 / 29 ** 2), rtol=1e-14)
    assert fisher_z_se(30) == pytest.approx(np.sqrt(1 / 29 + 2 / 841))
    # matrix nsamp: pairs with n <= 2 get z = 0 and n = 1.00001
    N = np.array([[5, 2, 40], [2, 5, 40], [40, 40, 5]], dtype=float)
    z, se, _ = _fisher_inputs(C, N, None, 0.99, -0.99)
    assert z[0] == 0 and z[2] == 0
    assert se[0] == pytest.approx(fisher_z_se(1.00001))
    assert se[1] == pytest.approx(fisher_z_se(40.0))
    # zscore_sd: zero -> 1e8
    sd = np.full((3, 3), 0.1)
    sd[0, 1] = 0
    z, se, _ = _fisher_inputs(C, None, sd, 0.99, -0.99)
    assert se[2] == 1e8 and se[0] == 0.1


def test_ash_control_merge_is_modifylist():
    c = _merge_control({"mixcompdist": "halfuniform", "control": {"maxiter": 50}}, 1000)
    assert c["mixcompdist"] == "halfuniform" and c["optmethod"] == "mixEM"
    assert c["prior"] == "nullbiased" and c["nullweight"] == 10 and c["pointmass"] is True
    assert c["control"]["tol"] == 1e-5 and c["control"]["maxiter"] == 50
    assert c["gridmult"] == pytest.approx(np.sqrt(2))
    assert _merge_control(None, 7)["control"]["maxiter"] == 7
    with pytest.raises(MashInputError, match="ash_control"):
        _merge_control(["halfuniform"], 1000)


def test_pairwise_complete_correlations_and_counts():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12, 3))
    X[0, 1] = np.nan
    X[3, 2] = np.nan
    C, N = _pairwise(X, "pearson")
    assert N.tolist() == [[12, 11, 11], [11, 11, 10], [11, 10, 11]]
    ok = ~np.isnan(X[:, 1]) & ~np.isnan(X[:, 2])
    assert C[1, 2] == pytest.approx(np.corrcoef(X[ok, 1], X[ok, 2])[0, 1], abs=1e-12)
    C0, N0 = _pairwise(np.nan_to_num(X), "pearson")
    np.testing.assert_allclose(C0, np.corrcoef(np.nan_to_num(X), rowvar=False), atol=1e-14)


def test_bad_input():
    with pytest.raises(MashInputError, match="nsamp"):
        corshrink_matrix(np.eye(3))
    with pytest.raises(MashInputError, match="square"):
        corshrink_matrix(np.ones((2, 3)), nsamp=10)
    with pytest.raises(MashInputError, match="image"):
        corshrink_matrix(np.eye(2), nsamp=10, image="png")
    with pytest.raises(MashInputError, match="3 x 3"):
        corshrink_matrix(np.eye(3), nsamp=np.ones((2, 2)))
    with pytest.raises(MashInputError, match="nboot"):
        corshrink_data(np.random.default_rng(1).normal(size=(5, 2)), sd_boot=True, nboot=1)
    with pytest.raises(MashInputError, match="cor_method"):
        corshrink_data(np.ones((5, 2)), cor_method="pearsn")
    with pytest.raises(MashInputError, match="vhat_identity"):
        vhat_corshrink(np.ones((1, 4)))


# ----------------------------------------------------------------- parity with R (needs ash)
def test_unit_corshrink_matrix_matches_r():
    ref = _json("golden", "unit_values.json")["CorShrinkMatrix"]
    out = corshrink_matrix(np.array(ref["input"]), nsamp=np.full((4, 4), 30.0),
                           ash_control={"mixcompdist": "halfuniform"})
    np.testing.assert_allclose(out["cor_before_PD"].to_numpy(), np.array(ref["cor_before_PD"]),
                               atol=1e-4)
    np.testing.assert_allclose(out["cor"].to_numpy(), np.array(ref["cor"]), atol=1e-4)
    assert list(out["cor"].columns) == ["1", "2", "3", "4"]


def test_vhat_corshrink_sim_protocol_matches_r(null_z):
    ref = _json("corshrink", "corshrink_data_halfuniform.json")
    V = vhat_corshrink(null_z)
    assert list(V.columns) == ref["colnames"] == list(V.index)
    np.testing.assert_allclose(V.to_numpy(), np.array(ref["cor"]), atol=1e-4)
    # measured: 2.6e-8 (R's SQUAREM path is reproduced on this 380-observation fit)
    assert np.abs(V.to_numpy() - np.array(ref["cor"])).max() < 1e-6
    assert V.attrs["n_null_rows"] == 10000
    csv = pd.read_csv(REF / "corshrink" / "vhat_corshrink.csv")
    np.testing.assert_allclose(V.to_numpy(), csv.to_numpy(), atol=1e-4)
    np.testing.assert_allclose(np.diag(V.to_numpy()), 1.0)
    np.linalg.cholesky(V.to_numpy())


def test_corshrink_data_full_output_matches_r(null_z):
    ref = _json("corshrink", "corshrink_data_halfuniform.json")
    out = corshrink_data(null_z, ash_control={"mixcompdist": "halfuniform"}, report_model=True)
    np.testing.assert_allclose(out["cor_before_PD"].to_numpy(), np.array(ref["cor_before_PD"]),
                               atol=1e-4)
    fit = out["model"]
    loglik = fit["loglik"] if isinstance(fit, dict) else getattr(fit, "loglik")
    assert float(loglik) == pytest.approx(ref["ash_loglik"], abs=1e-3)
    # default ash control: normal mixture
    ref_d = _json("corshrink", "corshrink_data_default.json")
    out_d = corshrink_data(null_z)
    np.testing.assert_allclose(out_d["cor"].to_numpy(), np.array(ref_d["cor"]), atol=1e-4)


def test_corshrink_matrix_scalar_nsamp_matches_r():
    ref = _json("corshrink", "corshrink_matrix_halfuniform_nsamp.json")
    cor = pd.read_csv(REF / "corshrink" / "null_z_cor.csv")
    out = corshrink_matrix(cor, nsamp=10000, ash_control={"mixcompdist": "halfuniform"})
    np.testing.assert_allclose(out["cor"].to_numpy(), np.array(ref["cor"]), atol=1e-4)
    assert list(out["cor"].columns) == ref["colnames"]


def test_chain_fixture_vhat_corshrink_matches_r():
    f = _json("golden", "fixture_mashr_input.json")
    b = np.array(f["null.b"]["values"], dtype=float)
    s = np.array(f["null.s"]["values"], dtype=float)
    b[np.isnan(b)] = 0.0
    s[np.isnan(s) | (s <= 0)] = 1000.0
    V = vhat_corshrink(pd.DataFrame(b / s, columns=f["null.b"]["colnames"]))
    ref = np.array(_json("golden", "chain_values.json")["V_corshrink"])
    np.testing.assert_allclose(V.to_numpy(), ref, atol=1e-4)


def test_missing_values_and_pcor():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(200, 4))
    A[:, 1] += 0.8 * A[:, 0]
    A[rng.random(A.shape) < 0.05] = np.nan
    out = corshrink_data(A, ash_control={"mixcompdist": "halfuniform"})
    C = out["cor"].to_numpy()
    np.testing.assert_allclose(np.diag(C), 1.0)
    np.testing.assert_allclose(C, C.T, atol=1e-12)
    raw = pd.DataFrame(A).corr().to_numpy()
    # shrinkage pulls towards 0, keeps the strong correlation
    assert abs(C[0, 1]) <= abs(raw[0, 1]) + 1e-12 and C[0, 1] > 0.5
    pc = corshrink_data(A, type="pcor", ash_control={"mixcompdist": "halfuniform"})["cor"]
    P = np.linalg.inv(C)
    assert pc.iloc[0, 1] == pytest.approx(-P[0, 1] / np.sqrt(P[0, 0] * P[1, 1]))
