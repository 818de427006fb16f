"""sim_protocol (20 conditions): the protocol chain against R, step by step.

* mixture_prior ed_bovy from R's 56 components (their own parity is in test_cov_flash.py
  and test_covariances.py): ED matrices 1e-4 relative Frobenius, weights 1e-4.
* The mash_fit steps below use R's 112-matrix prior, so that they test the fit and not
  the ED upstream of it.

* mash_1: ``mash(mash_set_data(random.b, random.s, V = V_simple, zero_Bhat_Shat_reset = 1000),
  U)`` on the 10,000-row random set (R: 2,514 s): loglik 1e-6 relative, pi 1e-4.
* mash_2: ``mash_compute_posterior_matrices(model, strong data)`` on the 1,500-row strong set
  (R: 12 s), with R's fitted pi plugged in (1e-8) and after our own fit (1e-4).
"""
import json
from pathlib import Path

import numpy as np
import pytest

import mashlib as ml
from mashlib.io import read_mashr_input

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

D = Path(__file__).parents[1] / "data" / "reference" / "sim_protocol"
POSTERIORS = ("PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr")


@pytest.fixture(scope="module")
def chain():
    ref = json.loads((D / "prior_fit_post_cov_ed_EE.json").read_text())
    V = np.array(json.loads((D / "vhat_simple.json").read_text())["V_EE"])
    inp = read_mashr_input(D / "mashr_input.rds").preprocess()
    U = {k: np.array(ref["prior_U"]["matrices"][k]) for k in ref["prior_U"]["names"]}

    def data(which):
        es = getattr(inp, which)
        return ml.mash_set_data(es.b, es.s, alpha=0, V=V, zero_Bhat_Shat_reset=1000)

    random, strong = data("random"), data("strong")
    m = ml.mash(random, U, verbose=False)
    return ref, U, m, strong


@pytest.mark.slow
def test_mash_fit_on_random_set_matches_r(chain):
    ref, _, m, _ = chain
    r = ref["mash_random"]
    assert m.loglik == pytest.approx(r["loglik"], rel=1e-6)
    np.testing.assert_allclose(m.fitted_g.grid, r["grid"], rtol=1e-10)
    pi_r = dict(zip(r["pi"]["names"], r["pi"]["values"]))
    pi = ml.get_estimated_pi(m, dimension="all")
    assert list(pi.index) == r["pi"]["names"]
    np.testing.assert_allclose(pi.to_numpy(), [pi_r[k] for k in pi.index], atol=1e-4)


def _check_posteriors(post, ref, atol):
    for key in POSTERIORS:
        np.testing.assert_allclose(np.asarray(post[key]), np.array(ref[key]), rtol=0, atol=atol,
                                   err_msg=key)


def test_strong_posterior_with_r_pi_matches_r(chain):
    import dataclasses
    ref, _, m, strong = chain
    r = ref["mash_random"]
    g = dataclasses.replace(m.fitted_g, pi=np.array(r["pi"]["values"]),
                            grid=np.array(r["grid"]))
    post = ml.mash_compute_posterior_matrices(g, strong)
    assert list(post["PosteriorMean"].columns) == ref["posterior_strong"]["colnames"]
    _check_posteriors(post, ref["posterior_strong"], 1e-8)


@pytest.mark.slow
def test_strong_posterior_after_our_fit_matches_r(chain):
    ref, _, m, strong = chain
    _check_posteriors(ml.mash_compute_posterior_matrices(m, strong), ref["posterior_strong"], 1e-4)


@pytest.mark.slow
def test_ed_bovy_prior_from_r_components_matches_r():
    """mixture_prior ed_bovy on the 1,500 x 20 strong set from R's 56 components and V_simple:
    cov_ed (R: 1,132 s, 1,855 EM steps) then the mash weights (R: 68 s)."""
    from mashlib.prior import ed_bovy

    ref = json.loads((D / "prior_fit_post_cov_ed_EE.json").read_text())
    comps_ref = json.loads((D / "components_EE.json").read_text())["U"]
    comps = {k: np.array(comps_ref["matrices"][k]) for k in comps_ref["names"]}
    V = np.array(json.loads((D / "vhat_simple.json").read_text())["V_EE"])
    strong = read_mashr_input(D / "mashr_input.rds").preprocess().strong
    data = ml.mash_set_data(strong.b, strong.s, alpha=0, V=V, zero_Bhat_Shat_reset=1000)
    prior = ed_bovy(data, comps, accelerate=False)  # R parity: plain EM
    assert list(prior["U"]) == ref["prior_U"]["names"]
    for name in ref["prior_U"]["names"]:
        R_U = np.array(ref["prior_U"]["matrices"][name])
        err = np.linalg.norm(np.asarray(prior["U"][name]) - R_U) / np.linalg.norm(R_U)
        assert err < 1e-4, name
    assert list(prior["w"].index) == ref["prior_w"]["names"]
    np.testing.assert_allclose(prior["w"].to_numpy(), ref["prior_w"]["values"], atol=1e-4)
    assert prior["loglik"] is None


@pytest.mark.parametrize("model, alpha", [("EE", 0), ("EZ", 1)])
def test_vhat_simple_on_null_set_matches_r(model, alpha):
    from mashlib.vhat import vhat_simple

    ref = json.loads((D / "vhat_simple.json").read_text())
    null = read_mashr_input(D / "mashr_input.rds").preprocess().null
    V = vhat_simple(null.b, null.s, alpha=alpha)
    assert list(V.columns) == ref["colnames"] and list(V.index) == ref["colnames"]
    np.testing.assert_allclose(V.to_numpy(), np.array(ref[f"V_{model}"]), rtol=0, atol=1e-8)
