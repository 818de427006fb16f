"""mashr's simulators, cov_all_zeros and get_posterior_condition_wise_summary.

Reference: tests/data/reference/wave2/summary_sims (tests/data/reference/wave2/README.md section 4).
* simulators: R's draws cannot be reproduced; structure exact (dims, names, block layout, zero
  pattern, equal columns, constant Shat) and sd(Bhat - B) within err_sd +- 0.05 at these sizes.
* cov_all_zeros: exact.
* condition-wise summary of A b after mash(data, cov_canonical(data)) on simple_sims(200, 5, 1):
  1e-4 absolute after our own fit, 1e-8 given R's posterior_weights.
"""
import itertools
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mashlib as ml

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

D = Path(__file__).parents[1] / "data" / "reference" / "wave2" / "summary_sims"
FIELDS = ["PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"]


@lru_cache(maxsize=None)
def _json(name):
    return json.load(open(D / name))


def _sd_check(diff, err_sd, ref_sd):
    sd = float(np.std(np.asarray(diff), ddof=1))
    assert abs(sd - err_sd) <= 0.05 and abs(ref_sd - err_sd) <= 0.05


def test_simple_sims_structure():
    r = _json("simulators.json")["simple_sims"]
    s = ml.simple_sims(200, 5, 1, seed=60222)
    assert list(s) == r["returned"]
    for k, dims in r["dims"].items():
        assert list(s[k].shape) == dims
    B, Bhat, S = s["B"].to_numpy(), s["Bhat"], s["Shat"].to_numpy()
    assert list(Bhat.index[:3]) == r["rownames_head"] and list(Bhat.columns) == r["colnames"]
    blk = {k: slice(a - 1, b) for k, (a, b) in r["row_blocks"].items()}
    assert np.all(B[blk["zero"]] == 0)
    assert np.all(B[blk["id"]] != 0) and np.linalg.matrix_rank(B[blk["id"]]) == 5
    assert np.all(B[blk["one"], 1:] == 0) and np.all(B[blk["one"], 0] != 0)
    assert np.all(B[blk["all"]] == B[blk["all"], :1])
    assert np.all(S == r["Shat_constant"])
    _sd_check(Bhat.to_numpy() - B, 1.0, r["check"]["sd_Bhat_minus_B"])
    # moments of the N(0, 1) effects
    assert abs(B[blk["id"]].std() - 1) < 0.1 and abs(B[blk["all"], 0].std() - 1) < 0.2
    assert ml.simple_sims(3, seed=1)["Shat"].to_numpy().max() == 0.01        # R's default err_sd


def test_simple_sims2_structure():
    r = _json("simulators.json")["simple_sims2"]
    s = ml.simple_sims2(200, 1, seed=60223)
    assert list(s) == r["returned"] and list(s["B"].shape) == r["dims"]["B"]
    B = s["B"].to_numpy()
    a, b = (slice(x - 1, y) for x, y in r["row_blocks"].values())
    assert np.all(B[a, 0] == B[a, 1]) and np.all(B[a, 2:] == 0) and np.all(B[a, 0] != 0)
    assert np.all(B[b, :2] == 0) and np.all(B[b, 2:] == B[b, 2:3]) and np.all(B[b, 2] != 0)
    assert np.all(s["Shat"].to_numpy() == 1)
    _sd_check(s["Bhat"].to_numpy() - B, 1.0, r["check"]["sd_Bhat_minus_B"])


def test_sim_contrast1_structure():
    r = _json("simulators.json")["sim_contrast1"]
    s = ml.sim_contrast1(200, 5, 1, seed=60224)
    assert list(s) == r["returned"] == ["C", "Chat", "Shat"]
    C = s["C"].to_numpy()
    assert C.shape == (200, 5) and list(s["C"].index[:3]) == r["rownames_head"]
    assert np.all(C == C[:, :1])
    assert abs(C.mean() - 10) < 0.25 and abs(C[:, 0].std() - 1) < 0.15
    _sd_check(s["Chat"].to_numpy() - C, 1.0, r["check"]["sd_Chat_minus_C"])
    assert np.allclose(ml.sim_contrast1(2, seed=0)["Shat"], np.sqrt(0.5))


def test_sim_contrast2_structure():
    r = _json("simulators.json")["sim_contrast2"]
    s = ml.sim_contrast2(200, 5, 1, seed=60225)
    C = s["C"].to_numpy()
    assert C.shape == (200, 5)
    dev = C - C[:, -1:]                                  # deviation from the reference (last)
    nz = np.flatnonzero(np.any(dev != 0, axis=1)) + 1
    assert list(nz) == r["check"]["deviation_from_last_col_nonzero_rows_1based"]
    blk = {k: slice(a - 1, b) for k, (a, b) in r["row_blocks"].items()}
    assert np.all(dev[blk["id"], :4] != 0)
    assert np.all(dev[blk["all"], :4] == dev[blk["all"], :1]) and np.all(dev[blk["all"], 0] != 0)
    assert np.all(dev[blk["one"], 1:] == 0) and np.all(dev[blk["one"], 0] != 0)
    _sd_check(s["Chat"].to_numpy() - C, 1.0, r["check"]["sd_Chat_minus_C"])


def test_simulators_seeded_and_validated():
    a, b = ml.simple_sims(20, seed=5), ml.simple_sims(20, seed=5)
    pd.testing.assert_frame_equal(a["Bhat"], b["Bhat"])
    assert not np.allclose(a["Bhat"], ml.simple_sims(20, seed=6)["Bhat"])
    with pytest.raises(ml.MashInputError, match="nsamp"):
        ml.simple_sims(0)
    with pytest.raises(ml.MashInputError, match="err_sd"):
        ml.sim_contrast2(10, err_sd=-1)


def test_cov_all_zeros():
    r = _json("cov_all_zeros.json")
    d5 = ml.mash_set_data(np.ones((3, 5)))
    np.testing.assert_array_equal(ml.cov_all_zeros(d5), np.array(r["R5"]))
    np.testing.assert_array_equal(ml.cov_all_zeros(np.ones((2, 3))), np.array(r["R3"]))
    assert ml.cov_canonical(d5, ["null"])["null"].shape == (5, 5)


@lru_cache(maxsize=None)
def _cw_fit():
    data = ml.mash_set_data(pd.read_csv(D / "A_Bhat.csv"), pd.read_csv(D / "A_Shat.csv"))
    return data, ml.mash(data, ml.cov_canonical(data))


def _with_R_weights(m, r):
    import dataclasses
    W = pd.DataFrame(np.array(r["posterior_weights"]), columns=r["posterior_weights_colnames"])
    return dataclasses.replace(m, posterior_weights=W)


def _A(a):
    return pd.DataFrame(a["A"], index=a["A_rownames"])


def test_condition_wise_fit_matches_R():
    r = _json("condition_wise_summary.json")
    data, m = _cw_fit()
    assert abs(m.loglik - r["mash"]["loglik"]) <= 1e-6 * abs(r["mash"]["loglik"])
    assert list(m.posterior_weights.columns) == r["posterior_weights_colnames"]


@pytest.mark.parametrize("key", ["A_ref_1", "A_custom"])
def test_condition_wise_summary_matches_R(key):
    r = _json("condition_wise_summary.json")
    a = r[key]
    data, m = _cw_fit()
    if key == "A_ref_1":
        L = ml.contrast_matrix(5, 1, data.conditions)
        np.testing.assert_array_equal(L.to_numpy(), a["A"])
        assert list(L.index) == a["A_rownames"]
    own = ml.get_posterior_condition_wise_summary(data, m, _A(a))
    giv = ml.get_posterior_condition_wise_summary(data, _with_R_weights(m, r), _A(a))
    for k in FIELDS:
        assert list(own[k].columns) == a["result_colnames"]
        np.testing.assert_allclose(own[k].to_numpy(), a[k], rtol=0, atol=1e-4, err_msg=k)
        np.testing.assert_allclose(giv[k].to_numpy(), a[k], rtol=0, atol=1e-8, err_msg=k)


def test_condition_wise_summary_mean_contrasts_and_R_rounding():
    """A = contrast_matrix(5, "mean"): every row of A sums to 0, so (A b)_q = 0 exactly under
    equal_effects and the null.  R decides "null" by pmax(0, diag(A U1 A^T)) == 0 on its rounded
    product: per (column, component) it counts some equal_effects grid points as null and others
    not (column 3 all, column 4 none).  Posterior mean/SD do not depend on it (1e-8); lfdr,
    NegativeProb and lfsr match R where R's rounding gave the exact zeros, and elsewhere differ
    by exactly the weights of the equal_effects components R missed."""
    r = _json("condition_wise_summary.json")
    a = r["A_ref_mean"]
    data, m = _cw_fit()
    L = ml.contrast_matrix(5, "mean", data.conditions)
    np.testing.assert_allclose(L.to_numpy(), a["A"], rtol=0, atol=1e-10)
    mR = _with_R_weights(m, r)
    own = ml.get_posterior_condition_wise_summary(data, m, L)
    giv = ml.get_posterior_condition_wise_summary(data, mR, L)
    for k in ("PosteriorMean", "PosteriorSD"):
        np.testing.assert_allclose(own[k].to_numpy(), a[k], rtol=0, atol=1e-4)
        np.testing.assert_allclose(giv[k].to_numpy(), a[k], rtol=0, atol=1e-8)
    for k in ("lfdr", "NegativeProb", "lfsr"):
        np.testing.assert_allclose(giv[k].to_numpy()[:, 2], np.array(a[k])[:, 2], rtol=0, atol=1e-8)
    W = mR.posterior_weights
    ee = [i for i, c in enumerate(W.columns) if c.startswith("equal_effects")]
    diff = giv["lfdr"].to_numpy() - np.array(a["lfdr"])
    missed = []
    for q in range(4):
        fits = [s for n in range(len(ee) + 1) for s in itertools.combinations(ee, n)
                if np.abs(W.to_numpy()[:, list(s)].sum(axis=1) - diff[:, q]).max() < 1e-8]
        assert fits, q
        missed.append(len(fits[0]))
    assert missed[2] == 0 and missed[3] == len(ee)


def test_condition_wise_summary_bad_input():
    data, m = _cw_fit()
    with pytest.raises(ml.MashInputError, match="contrast_mat: must have R = 5"):
        ml.get_posterior_condition_wise_summary(data, m, np.ones((2, 4)))
    with pytest.raises(ml.MashInputError, match="rows"):
        ml.get_posterior_condition_wise_summary(data.subset(np.arange(10)), m, np.eye(5))


def test_mash_A_posterior_counts_structural_zeros_as_null():
    """mash's own posterior with A = contrast_matrix(5, 1) (pairwise differences annihilate
    equal_effects) equals R's condition-wise summary given R's pi: the structural zeros are
    null in lfdr, not rounding noise in NegativeProb."""
    r = _json("condition_wise_summary.json")
    a = r["A_ref_1"]
    data, m = _cw_fit()
    g = ml.FittedG(pi=np.array(list(r["mash"]["pi"].values())),
                   Ulist={k: np.array(v) for k, v in r["mash"]["Ulist"].items()},
                   grid=np.array(r["mash"]["grid"]))
    post = ml.mash_compute_posterior_matrices(g, data, A=ml.contrast_matrix(5, 1, data.conditions))
    for k in FIELDS:
        np.testing.assert_allclose(post[k].to_numpy(), a[k], rtol=0, atol=1e-8, err_msg=k)
