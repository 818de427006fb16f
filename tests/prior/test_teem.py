"""cov_ed(algorithm="teem") (Truncated-Eigenvalue EM) against R mashr 0.2.81.

Reference: tests/data/reference/wave2/teem (tests/data/reference/wave2/README.md section 3): 800 x 5 data, strong set from
mash_1by1 (195 rows), U_pca = cov_pca(data, 3, subset = strong),
cov_ed(data, U_pca, subset = strong, algorithm = "teem").  Tolerances: U_ed 1e-4 relative
Frobenius; teem loglik 1e-6 relative; pi 1e-4 absolute.
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import mashlib as ml

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

D = Path(__file__).parents[1] / "data" / "reference" / "wave2" / "teem"


@lru_cache(maxsize=None)
def _ref():
    return json.load(open(D / "teem.json"))


@lru_cache(maxsize=None)
def _data():
    return ml.mash_set_data(pd.read_csv(D / "Bhat.csv"), pd.read_csv(D / "Shat.csv"))


def _inputs():
    r = _ref()
    return np.array(r["strong_idx_1based"]) - 1, {k: np.array(v) for k, v in r["U_pca"].items()}


def test_strong_set_and_pca_inits_match_R():
    strong, U = _inputs()
    d = _data()
    s = ml.get_significant_results(ml.mash_1by1(d), 0.05)
    assert sorted(s) == sorted(strong)
    Up = ml.cov_pca(d, 3, subset=s)
    assert list(Up) == _ref()["U_pca_names"]
    for k in U:
        np.testing.assert_allclose(Up[k], U[k], rtol=1e-8, atol=1e-10)


def test_teem_matches_R():
    r = _ref()
    strong, U = _inputs()
    Ued = ml.cov_ed(_data(), U, subset=strong, algorithm="teem")
    assert list(Ued) == r["U_ed_names"]
    for k, Ur in r["U_ed"].items():
        Ur = np.array(Ur)
        assert np.linalg.norm(Ued[k] - Ur) <= 1e-4 * np.linalg.norm(Ur), k
        np.testing.assert_allclose(Ued[k], Ued[k].T, rtol=0, atol=1e-12)
    fit = ml.cov_ed(_data(), U, subset=strong, algorithm="teem", details=True)
    assert fit.niter == r["teem_niter"] == len(fit.loglik_trace)
    assert abs(fit.loglik_trace[-1] - r["teem_loglik"]) <= 1e-6 * abs(r["teem_loglik"])
    np.testing.assert_allclose(fit.loglik_trace, r["teem_objective_trace"], rtol=1e-6)
    np.testing.assert_allclose(list(fit.pi.values()), r["teem_pi"], rtol=0, atol=1e-4)
    assert list(fit.pi) == list(U)


def test_teem_objective_is_the_z_score_mixture_likelihood():
    """wave2/README.md: sum_j log sum_k w_k N(z_j; 0, U_k + I), z = Bhat/Shat (V ignored, no eps I)."""
    strong, U = _inputs()
    d = _data()
    fit = ml.cov_ed(d, U, subset=strong, algorithm="teem", details=True)
    z = (d.Bhat / d.Shat)[strong]
    ll = np.column_stack([multivariate_normal(np.zeros(5), Uk + np.eye(5)).logpdf(z)
                          for Uk in fit.Ulist.values()])
    obj = logsumexp(ll + np.log(list(fit.pi.values())), axis=1).sum()
    assert abs(obj - fit.loglik_trace[-1]) <= 1e-9 * abs(obj)
    for Uk in fit.Ulist.values():                   # eigenvalues of T_k - I >= eigen_tol
        assert np.linalg.eigvalsh(Uk).min() >= 1e-7 - 1e-9


def test_mash_with_teem_covariances_matches_R():
    r = _ref()
    strong, U = _inputs()
    d = _data()
    Ued = ml.cov_ed(d, U, subset=strong, algorithm="teem")
    m = ml.mash(d, {**ml.cov_canonical(d), **Ued}, outputlevel=1)
    ref = r["mash_canonical_plus_teem"]
    assert abs(m.loglik - ref["loglik"]) <= 1e-6 * abs(ref["loglik"])
    np.testing.assert_allclose(m.fitted_g.pi, list(ref["pi"].values()), rtol=0, atol=1e-4)


def test_teem_options_and_bad_input():
    strong, U = _inputs()
    d = _data()
    one = ml.cov_ed(d, U, subset=strong, algorithm="teem", maxiter=1, details=True)
    assert one.niter == 1
    w = ml.cov_ed(d, U, subset=strong, algorithm="teem", w_init=[0.1, 0.2, 0.3, 0.4], details=True)
    assert w.niter > 1 and abs(sum(w.pi.values()) - 1) < 1e-12
    with pytest.raises(ml.MashInputError, match="w_init"):
        ml.cov_ed(d, U, subset=strong, algorithm="teem", w_init=[1, 2])
    with pytest.raises(ml.MashInputError, match="algorithm"):
        ml.cov_ed(d, U, algorithm="TEEM")
