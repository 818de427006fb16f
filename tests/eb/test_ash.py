"""ash, mixture distributions and mash_1by1 against R (ashr 2.2-65, mashr 0.2.81)."""
import json
import pathlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.eb import UniMix, ash, autoselect_mixsd, compute_lfsr, mash_1by1, qval_from_lfdr
from mashlib.eb.mixdist import (e2truncnorm, etruncnorm, normalmix_posterior,
                             posterior_component_probs, unimix_loglik_matrix, unimix_posterior)

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = pathlib.Path(__file__).parents[1] / "data" / "reference"
TOL = 1e-4  # MANIFEST: ash log-likelihood, posterior means; pi 1e-4 absolute


@pytest.fixture(scope="module")
def gold():
    return json.loads((REF / "golden" / "unit_values.json").read_text())


@pytest.fixture(scope="module")
def xs(gold):
    g = gold["ebnm_point_normal"]
    return np.array(g["x"]), np.array(g["s"])


def test_compute_lfsr(gold):
    g = gold["compute_lfsr"]
    np.testing.assert_allclose(compute_lfsr(g["NegativeProb"], g["ZeroProb"]), g["lfsr"],
                               atol=1e-15)


def test_ash_normal(gold, xs):
    g = gold["ash_normal"]
    a = ash(*xs, mixcompdist="normal")
    np.testing.assert_allclose(a.fitted_g.sd, g["mixsd"], rtol=1e-12)
    np.testing.assert_allclose(a.fitted_g.pi, g["pi"], atol=TOL)
    assert a.loglik == pytest.approx(g["loglik"], abs=TOL)
    r = a.result
    for key, col in [("pm", "PosteriorMean"), ("psd", "PosteriorSD"), ("lfsr", "lfsr"),
                     ("lfdr", "lfdr"), ("np", "NegativeProb")]:
        np.testing.assert_allclose(r[col], g[key], atol=TOL, err_msg=col)
    np.testing.assert_allclose(r["PositiveProb"], 1 - r["NegativeProb"] - r["lfdr"], atol=1e-12)


def test_ash_halfuniform_mixem(gold, xs):
    g = gold["ash_halfuniform_mixEM"]
    a = ash(*xs, mixcompdist="halfuniform", optmethod="mixEM", prior="nullbiased",
            pointmass=True, nullweight=10, gridmult=np.sqrt(2),
            control=dict(K=1, method=3, square=True, step_min0=1, step_max0=1, mstep=4,
                         kr=1, objfn_inc=1, tol=1e-5, maxiter=1000, trace=False))
    np.testing.assert_allclose(a.fitted_g.a, g["a"], atol=1e-12)
    np.testing.assert_allclose(a.fitted_g.b, g["b"], atol=1e-12)
    # identical SQUAREM path: far inside the 1e-4 project tolerance
    np.testing.assert_allclose(a.fitted_g.pi, g["pi"], atol=1e-10)
    assert a.loglik == pytest.approx(g["loglik"], abs=1e-8)
    np.testing.assert_allclose(a.result["PosteriorMean"], g["pm"], atol=1e-8)


def test_ash_default_uniform_ebnm_vec():
    inp = pd.read_csv(REF / "ebnm_vec" / "input.csv")
    ref = json.loads((REF / "ebnm_vec" / "ash_default.json").read_text())
    a = ash(inp["x"].to_numpy(), inp["s"].to_numpy())
    assert isinstance(a.fitted_g, UniMix)
    assert a.loglik == pytest.approx(ref["loglik"], abs=TOL)
    np.testing.assert_allclose(a.fitted_g.pi, ref["fitted_g"]["pi"], atol=TOL)
    np.testing.assert_allclose(a.fitted_g.a, ref["fitted_g"]["a"], atol=1e-12)
    for col in ("PosteriorMean", "PosteriorSD", "lfsr", "lfdr"):
        np.testing.assert_allclose(a.result[col], ref[col], atol=TOL, err_msg=col)


def _sim_small():
    B = pd.read_csv(REF / "sim_small" / "Bhat.csv").to_numpy()
    S = pd.read_csv(REF / "sim_small" / "Shat.csv").to_numpy()
    return SimpleNamespace(Bhat=B, Shat=S, conditions=[f"c{i}" for i in range(B.shape[1])])


def test_mash_1by1_sim_small():
    ref = json.loads((REF / "sim_small" / "d_pca_ed_mash.json").read_text())
    m = mash_1by1(_sim_small())
    r = ref["mash_1by1"]
    assert m.loglik == pytest.approx(r["loglik"], rel=1e-6)
    for key in ("PosteriorMean", "PosteriorSD", "lfsr"):
        np.testing.assert_allclose(m.result[key].to_numpy(), r[key], atol=TOL, err_msg=key)
    assert list(m.result["lfsr"].columns) == [f"c{i}" for i in range(5)]
    # strong set = rows with min lfsr < 0.05, ordered by min lfsr (get_significant_results)
    top = m.result["lfsr"].to_numpy().min(axis=1)
    sig = np.flatnonzero(top < 0.05)
    sig = sig[np.argsort(top[sig], kind="stable")]
    assert (sig + 1).tolist() == ref["strong_idx_1based"]


def test_mash_1by1_chain2_fixture():
    f = json.loads((REF / "golden" / "fixture_mashr_input.json").read_text())
    c = json.loads((REF / "golden" / "chain2_values.json").read_text())
    b = np.array(f["strong.b"]["values"], dtype=float)
    s = np.array(f["strong.s"]["values"], dtype=float)
    b[np.isnan(b)] = 0.0  # pecotmr preprocessing as in chain2.R
    s[np.isnan(s) | (s <= 0)] = 1000.0
    m = mash_1by1(SimpleNamespace(Bhat=b, Shat=s))
    np.testing.assert_allclose(m.result["PosteriorMean"].to_numpy()[0], c["m1by1_pm_row1"],
                               atol=TOL)
    np.testing.assert_allclose(m.result["lfsr"].to_numpy()[0], c["m1by1_lfsr_row1"], atol=TOL)
    assert m.loglik == pytest.approx(c["m1by1_loglik"], abs=TOL)


def test_unimix_comp_postprob_tails():
    # ashr test: unimix(c(.5,.5), c(1,2), c(0,0)) at x = -10 and -20, s = 0.5 -> (2/3, 1/3)
    for x in (-10.0, -20.0):
        ll = unimix_loglik_matrix(np.array([x]), np.array([0.5]), [1, 2], [0, 0])
        np.testing.assert_allclose(posterior_component_probs(ll, [0.5, 0.5])[0], [2 / 3, 1 / 3],
                                   rtol=1e-6)


def test_truncnorm_moments():
    assert etruncnorm(-np.inf, -100, 0, 1) == pytest.approx(-100, abs=0.01)
    assert etruncnorm(-np.inf, -100, 0, 0) == -100
    assert etruncnorm(30, 100, 0, 0) == 30
    m = etruncnorm(np.array([[-np.inf, 30], [1, 2]]), np.array([[-100, 100], [1.5, 3]]),
                   0, np.array([[1, 0], [1, 1]]))
    assert m.shape == (2, 2) and m[0, 1] == 30
    # closed forms: symmetric interval mean 0; E[Z^2 | -1<Z<1] = 1 - 2 phi(1)/(2 Phi(1) - 1)
    from scipy.stats import norm
    assert etruncnorm(-1, 1) == pytest.approx(0, abs=1e-15)
    assert e2truncnorm(-1, 1) == pytest.approx(1 - 2 * norm.pdf(1) / (2 * norm.cdf(1) - 1),
                                               rel=1e-12)
    # far tail, one-sided: E[Z | Z > 40] ~ 40 + 1/40
    assert etruncnorm(40, np.inf) == pytest.approx(40.02494, rel=1e-5)
    assert e2truncnorm(40, np.inf) == pytest.approx(40**2 + 2, rel=1e-4)


def test_excluded_get_prior_and_lfdr_nullcomp():
    x = np.array([1.0, -2.0, 3.0, 0.5, 2.0])
    s = np.array([1.0, 0.0, 1.0, np.inf, 1.0])
    a = ash(x, s, mixcompdist="normal")
    g = a.fitted_g
    r = a.result
    prior_mean = np.sum(g.pi * g.mean)
    prior_sd = np.sqrt(np.sum(g.pi * (g.mean**2 + g.sd**2)) - prior_mean**2)
    for i in (1, 3):
        assert r["PosteriorMean"][i] == pytest.approx(prior_mean, abs=1e-12)
        assert r["PosteriorSD"][i] == pytest.approx(prior_sd, abs=1e-12)
        assert r["lfdr"][i] == pytest.approx(g.pi[g.sd == 0].sum())
    assert np.isfinite(a.loglik)


def test_null_loglik_alpha_invariance_and_logLR_null_g():
    rng = np.random.default_rng(3)
    x, s = rng.normal(size=30), rng.uniform(0.5, 2, 30)
    a0, a1 = ash(x, s, alpha=0), ash(x, s, alpha=1)
    assert a0.loglik - a0.logLR == pytest.approx(a1.loglik - a1.logLR, rel=1e-12)
    gnull = UniMix(np.array([1.0]), np.array([0.0]), np.array([0.0]))
    assert ash(x, s, g=gnull, fixg=True).logLR == pytest.approx(0.0, abs=1e-10)


def test_null_shortcut_pure_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200) * 0.3
    a = ash(x, np.ones(200), mixcompdist="normal")
    assert a.fitted_g.pi[0] == 1.0 and np.all(a.fitted_g.pi[1:] == 0)
    np.testing.assert_allclose(a.result["lfdr"], 1.0)
    np.testing.assert_allclose(a.result["PosteriorMean"], 0.0, atol=1e-15)


def test_grid_and_qvalue():
    grid = autoselect_mixsd(np.array([0.1, -0.2]), np.array([1.0, 1.0]), np.sqrt(2))
    # all x^2 <= s^2 -> sigma_max = 8 sigma_min = 0.8; npoint = ceil(log2(8)/0.5) = 6
    np.testing.assert_allclose(grid, np.r_[0, 0.8 * np.sqrt(2) ** -np.arange(6, -1, -1.0)])
    np.testing.assert_allclose(qval_from_lfdr([0.3, 0.1, np.nan, 0.2]), [0.2, 0.1, np.nan, 0.15])


def test_mixture_posterior_shapes_and_sd():
    x, s = np.array([0.0, 2.0, -5.0]), np.ones(3)
    p = normalmix_posterior(x, s, [0.5, 0.5], [0.0, 2.0])
    assert p.mean.shape == (3,) and np.all(p.sd >= 0)
    # single N(0, 2^2) component: conjugate posterior
    q = normalmix_posterior(x, s, [1.0], [2.0])
    np.testing.assert_allclose(q.mean, x * 4 / 5)
    np.testing.assert_allclose(q.sd, np.sqrt(4 / 5))
    u = unimix_posterior(x, s, [1.0], [-1.0], [1.0])
    assert np.all(u.mean <= 1) and np.all(u.mean >= -1) and u.prob_zero.sum() == 0


def test_bad_inputs():
    with pytest.raises(MashInputError, match="sebetahat"):
        ash([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(MashInputError, match="sebetahat"):
        ash([1.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(MashInputError, match="mixcompdist"):
        ash([1.0], [1.0], mixcompdist="laplace")
    with pytest.raises(MashInputError, match="Bhat"):
        mash_1by1(SimpleNamespace())


def test_mash_1by1_with_mashdata_and_get_significant_results():
    import mashlib as ml

    ref = json.loads((REF / "sim_small" / "d_pca_ed_mash.json").read_text())
    sim = _sim_small()
    m = ml.mash_1by1(ml.mash_set_data(sim.Bhat, sim.Shat))
    assert m["loglik"] == m.loglik and m.result is m["result"]
    sig = ml.get_significant_results(m, 0.05)
    assert (np.asarray(sig) + 1).tolist() == ref["strong_idx_1based"]
