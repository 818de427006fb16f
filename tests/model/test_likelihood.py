"""Likelihood matrices (map §2.2 Likelihoods; mashr test_likelihood*.R) and golden rel_lik."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from mashlib.model import cov_canonical, cov_pca, expand_cov, normalize_Ulist
from mashlib.model import mash_set_data
from mashlib.model import calc_lik_matrix, calc_relative_lik_matrix

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"


def _direct(d, xU):
    V = d.V_stack()
    out = np.empty((d.n_effects, len(xU)))
    for j in range(d.n_effects):      # reference implementation (test only)
        Vj = V if d.commonV else V[j]
        Sig = d.Shat[j][:, None] * Vj * d.Shat[j][None]
        for p, U in enumerate(xU.values()):
            out[j, p] = multivariate_normal(np.zeros(d.n_conditions), Sig + U).logpdf(d.Bhat[j])
    return out


def test_rel_lik_golden():
    u = json.load(open(REF / "golden" / "unit_values.json"))["rel_lik"]
    d = mash_set_data(np.array([[1.0, 2, 3], [2, 4, 6]]), np.array([[1.0, 1, 1], [2, 2, 2]]))
    xU = expand_cov(normalize_Ulist(cov_canonical(d)), [0.5, 1, 2], True)
    lm = calc_relative_lik_matrix(d, xU)
    np.testing.assert_allclose(lm["loglik_matrix"], np.array(u["loglik_matrix"]), atol=1e-10)
    np.testing.assert_allclose(lm["lfactors"], u["lfactors"], rtol=1e-12)
    # row 1 alone equals row 1 of the 2-row matrix (mashr test_likelihood.R)
    d1 = d.subset([0])
    np.testing.assert_allclose(calc_lik_matrix(d1, xU, log=True)[0],
                               calc_lik_matrix(d, xU, log=True)[0], rtol=1e-13)


@pytest.mark.parametrize("common", [True, False])
@pytest.mark.parametrize("corr", [False, True])
def test_against_direct_density(common, corr):
    rng = np.random.default_rng(3)
    J, R = 40, 4
    B = rng.standard_normal((J, R)) * 2
    S = np.full((J, R), 0.7) if common else rng.uniform(0.3, 2, (J, R))
    V = 0.4 * np.ones((R, R)) + 0.6 * np.eye(R) if corr else None
    d = mash_set_data(B, S, V=V)
    U = cov_canonical(d)
    U.update(cov_pca(d, 2))
    A = rng.standard_normal((R, 2))
    U["rank2"] = A @ A.T
    xU = expand_cov(U, [0.3, 1.0, 4.0])
    np.testing.assert_allclose(calc_lik_matrix(d, xU, log=True), _direct(d, xU), rtol=1e-11,
                               atol=1e-11)
    # small memory budget forces many row chunks; same numbers
    np.testing.assert_allclose(calc_lik_matrix(d, xU, log=True, memory_bytes=10_000),
                               calc_lik_matrix(d, xU, log=True), rtol=1e-14, atol=1e-14)


def test_effect_specific_V():
    rng = np.random.default_rng(4)
    J, R = 15, 3
    Vs = []
    for _ in range(J):
        a = rng.uniform(-0.5, 0.5)
        Vs.append(np.array([[1, a, 0], [a, 1, 0.2], [0, 0.2, 1.0]]))
    d = mash_set_data(rng.standard_normal((J, R)), rng.uniform(0.5, 1.5, (J, R)),
                      V=np.stack(Vs, axis=2))
    xU = expand_cov(cov_canonical(d), [0.5, 2.0])
    np.testing.assert_allclose(calc_lik_matrix(d, xU, log=True), _direct(d, xU), rtol=1e-11)


def test_indefinite_component_and_failure_warning():
    d = mash_set_data(np.array([[1.0, 2.0], [0.0, 0.0]]), 1e-3)
    bad = np.array([[1.0, 0.0], [0.0, -0.5]])         # not PSD: chol(Sigma + U) fails
    ok = np.diag([1.0, -1e-9])                         # tiny negative eigenvalue: fine
    with pytest.warns(UserWarning, match=r"non-finite likelihoods.*bad"):
        L = calc_lik_matrix(d, {"ok": ok, "bad": bad}, log=True)
    assert L[0, 1] == -np.inf and L[1, 1] == np.inf     # +Inf when ||b||_1 < 1e-6 (P5)
    Sig = 1e-6 * np.eye(2)
    assert L[0, 0] == pytest.approx(multivariate_normal(np.zeros(2), Sig + ok).logpdf([1, 2]),
                                    rel=1e-10)


def test_posterior_against_direct_formulas():
    """posterior_chunk vs the textbook per-row formulas (incl. an indefinite U and A)."""
    from scipy.special import ndtr
    from mashlib.model import posterior_chunk
    rng = np.random.default_rng(7)
    c, R = 6, 3
    B = rng.standard_normal((c, R)) * 2
    S = rng.uniform(0.5, 1.5, (c, R))
    Sa = rng.uniform(0.5, 2.0, (c, R))
    V = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.0]])
    f = rng.standard_normal(R)
    Us = np.stack([np.zeros((R, R)), np.diag([1.0, 0, 0]), 2.0 * np.outer(f, f),
                   np.diag([1.0, 1.0, -1e-9]), 0.5 * np.eye(R) + 0.5])
    pi = np.array([0.3, 0.2, 0.2, 0.1, 0.2])
    A = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    out = posterior_chunk(B, S, Sa, V, Us, pi, A=A, output_posterior_cov=True)
    for j in range(c):   # reference, row by row (test only)
        Sig = S[j][:, None] * V * S[j][None]
        ll = np.array([multivariate_normal(np.zeros(R), Sig + U).logpdf(B[j]) for U in Us])
        w = pi * np.exp(ll - ll.max())
        w /= w.sum()
        mus, vars_, PC = [], [], np.zeros((2, 2))
        for U, wp in zip(Us, w):
            U1 = U @ np.linalg.inv(np.linalg.solve(Sig, U) + np.eye(R))
            mu = A @ (Sa[j] * (U1 @ np.linalg.solve(Sig, B[j])))
            C = A @ (Sa[j][:, None] * U1 * Sa[j][None]) @ A.T
            mus.append(mu)
            vars_.append(np.maximum(np.diag(C), 0))
            PC += wp * (C + np.outer(mu, mu))
        mus, vars_ = np.array(mus), np.array(vars_)
        pm = w @ mus
        np.testing.assert_allclose(out["PosteriorMean"][j], pm, atol=1e-10)
        np.testing.assert_allclose(out["PosteriorSD"][j], np.sqrt(w @ (mus ** 2 + vars_) - pm ** 2),
                                   atol=1e-8)
        zero = vars_ < 1e-300
        np.testing.assert_allclose(out["lfdr"][j], w @ zero, atol=1e-12)
        neg = np.where(zero, 0, ndtr(-mus / np.sqrt(np.where(zero, 1, vars_))))
        np.testing.assert_allclose(out["NegativeProb"][j], w @ neg, atol=1e-10)
        np.testing.assert_allclose(out["PosteriorCov"][j], PC - np.outer(pm, pm), atol=1e-10)
    # the singleton component gives an exact zero for the second A row (A[1] = e_3): lfdr > 0
    assert (out["lfdr"][:, 1] > 0).all()


def test_nonfinite_column_names_component_and_grid():
    d = mash_set_data(np.array([[1.0, 2.0]]), 1e-3)
    xU = expand_cov({"bad": np.array([[1.0, 0.0], [0.0, -0.5]])}, [0.25, 2.0])
    with pytest.warns(UserWarning, match=r"bad\.2 \(covariance 'bad', grid value 2\)"):
        calc_relative_lik_matrix(d, xU, grid=[0.25, 2.0])
