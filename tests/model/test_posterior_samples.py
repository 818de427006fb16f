"""Posterior samples (mash(posterior_samples=), get_samples, get_pairwise_sharing_from_samples).

Reference: tests/data/reference/wave2/posterior_samples (tests/data/reference/wave2/README.md section 2): mashr 0.2.81
``mash(data, cov_canonical(data), posterior_samples = 50, seed = 2718, outputlevel = 3,
algorithm.version = "R")`` on 160 x 4 heterogeneous-SE data, and 2,000 samples from the same g.
Tolerances (wave2/README.md): deterministic posterior 1e-4 after our fit, 1e-8 with R's pi, loglik 1e-6
relative; sharing from R's samples 1e-12; our own samples (any RNG): |mean - PM| <= 6 PSD/sqrt(2000),
pooled variance ratio in [0.97, 1.03], each in [0.6, 1.6]; our 50-sample sharing within 0.04 of
R's 2,000-sample value off the diagonal, 0.01 on it; with 2,000 samples 0.01.
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mashlib as ml

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

D = Path(__file__).parents[1] / "data" / "reference" / "wave2" / "posterior_samples"
POST = ["PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb"]


@lru_cache(maxsize=None)
def _ref():
    return json.load(open(D / "mash_posterior_samples.json"))


@lru_cache(maxsize=None)
def _data():
    return ml.mash_set_data(pd.read_csv(D / "Bhat.csv"), pd.read_csv(D / "Shat.csv"))


@lru_cache(maxsize=None)
def _fit():
    d = _data()
    return ml.mash(d, ml.cov_canonical(d), posterior_samples=50, seed=2718, outputlevel=3)


def _R_g():
    r = _ref()
    return ml.FittedG(pi=np.array(list(r["pi"].values())),
                      Ulist={k: np.array(v) for k, v in r["Ulist"].items()}, grid=np.array(r["grid"]))


@lru_cache(maxsize=None)
def _samples_2000():
    return ml.mash_compute_posterior_matrices(_R_g(), _data(), output_posterior_cov=True,
                                              posterior_samples=2000, seed=20240)


def test_deterministic_posterior_matches_R():
    r, m = _ref(), _fit()
    assert abs(m.loglik - r["loglik"]) <= 1e-6 * abs(r["loglik"])
    np.testing.assert_allclose(m.fitted_g.pi, list(r["pi"].values()), rtol=0, atol=1e-4)
    for k in POST:
        np.testing.assert_allclose(m.result[k].to_numpy(), r[k], rtol=0, atol=1e-4, err_msg=k)
    np.testing.assert_allclose(m.result["PosteriorCov"], r["PosteriorCov_by_row"], rtol=0, atol=1e-4)
    post = ml.mash_compute_posterior_matrices(_R_g(), _data(), output_posterior_cov=True)
    for k in POST:
        np.testing.assert_allclose(post[k].to_numpy(), r[k], rtol=0, atol=1e-8, err_msg=k)
    np.testing.assert_allclose(post["PosteriorCov"], r["PosteriorCov_by_row"], rtol=0, atol=1e-8)


def test_samples_layout_and_get_samples():
    m = _fit()
    s = ml.get_samples(m)
    assert s.shape == tuple(_ref()["samples_50_dims"]) == (160, 4, 50)
    assert np.all(np.isfinite(s))
    assert ml.get_samples(ml.mash(_data(), ml.cov_canonical(_data()))) is None
    # a sample equal to 0 comes from the null component (as R's samples)
    assert (s == 0).any()


def test_sharing_from_R_samples_is_exact():
    r = _ref()
    sh = ml.get_pairwise_sharing_from_samples(samples=np.array(r["samples_50_by_row"]),
                                              lfsr=np.array(r["lfsr"]), factor=0.5, lfsr_thresh=0.05)
    np.testing.assert_allclose(np.asarray(sh), r["pairwise_sharing_from_samples_50"], rtol=0,
                               atol=1e-12)


def test_own_2000_samples_moments():
    post = _samples_2000()
    X = post["PosteriorSamples"]
    assert X.shape == (160, 4, 2000)
    pm, psd = post["PosteriorMean"].to_numpy(), post["PosteriorSD"].to_numpy()
    assert np.all(np.abs(X.mean(axis=2) - pm) <= 6 * psd / np.sqrt(2000))
    ratio = X.var(axis=2, ddof=1) / np.diagonal(post["PosteriorCov"], axis1=1, axis2=2)
    assert 0.97 <= ratio.mean() <= 1.03
    assert ratio.min() >= 0.6 and ratio.max() <= 1.6


def test_own_sharing_close_to_R():
    r = _ref()
    ref2000 = np.array(r["pairwise_sharing_from_samples_2000"])
    off = ~np.eye(4, dtype=bool)
    sh50 = ml.get_pairwise_sharing_from_samples(_fit(), factor=0.5, lfsr_thresh=0.05)
    assert list(sh50.columns) == ["condA", "condB", "condC", "condD"]
    d50 = np.abs(sh50.to_numpy() - ref2000)
    assert d50[off].max() <= 0.04 and d50[~off].max() <= 0.01
    sh2000 = ml.get_pairwise_sharing_from_samples(_samples_2000())
    assert np.abs(np.asarray(sh2000) - ref2000).max() <= 0.01


def test_seed_reproducible_and_independent_of_memory_budget():
    g, d = _R_g(), _data()
    a = ml.mash_compute_posterior_matrices(g, d, posterior_samples=30, seed=5)["PosteriorSamples"]
    b = ml.mash_compute_posterior_matrices(g, d, posterior_samples=30, seed=5,
                                           memory_bytes=20_000)["PosteriorSamples"]
    c = ml.mash_compute_posterior_matrices(g, d, posterior_samples=30, seed=6)["PosteriorSamples"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert not np.allclose(a, c)
    # A = I samples the same effects from the same random numbers
    e = ml.mash_compute_posterior_matrices(g, d, posterior_samples=30, seed=5,
                                           A=np.eye(4))["PosteriorSamples"]
    np.testing.assert_allclose(e, a, rtol=0, atol=1e-10)


def test_samples_of_contrasts_and_EZ():
    rng = np.random.default_rng(3)
    J, R = 120, 4
    B = np.zeros((J, R))
    B[:60] = rng.normal(0, 2, (60, 1))
    S = rng.uniform(0.5, 1.5, (J, R))
    V = 0.3 + 0.7 * np.eye(R)
    Bhat = B + rng.normal(size=(J, R)) * S
    M = 4000
    for d in (ml.mash_update_data(ml.mash_set_data(Bhat, S, V=V), ref="mean"),   # per-row LSVSLt
              ml.mash_set_data(Bhat, S, alpha=1)):                             # EZ
        m = ml.mash(d, ml.cov_canonical(d), posterior_samples=M, seed=11)
        X = ml.get_samples(m)
        pm, psd = m.result["PosteriorMean"].to_numpy(), m.result["PosteriorSD"].to_numpy()
        assert X.shape == (J, pm.shape[1], M)
        assert np.all(np.abs(X.mean(axis=2) - pm) <= 6 * psd / np.sqrt(M) + 1e-12)
        r = X.std(axis=2, ddof=1) / psd
        assert 0.97 <= np.nanmean(r ** 2) <= 1.03
    # reference "mean": the R deviations from the mean sum to zero in every sample
    dm = ml.mash_update_data(ml.mash_set_data(Bhat, S, V=V), ref="mean")
    Xm = ml.get_samples(ml.mash(dm, ml.cov_canonical(dm), posterior_samples=5, seed=1))
    assert Xm.shape == (J, R, 5)
    # (up to sqrt(rounding) of the zero eigenvalue of the singular 6 x 6 covariance, ~1e-8)
    np.testing.assert_allclose(Xm.sum(axis=1), 0, atol=1e-6)


def test_bad_sample_count():
    with pytest.raises(ml.MashInputError, match="posterior_samples"):
        ml.mash_compute_posterior_matrices(_R_g(), _data(), posterior_samples=-3)
    with pytest.raises(ml.MashInputError, match="no posterior samples"):
        ml.get_pairwise_sharing_from_samples(ml.mash(_data(), ml.cov_canonical(_data())))
