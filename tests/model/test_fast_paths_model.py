"""Fast paths of issue 13 in the model wing, against the evaluation they replace.

* one-pass vloglik / null / alt log-likelihoods against scipy's log-sum-exp;
* a fixed-g mash that evaluates only the columns with pi > 0 against the full evaluation;
* closed forms for diagonal-plus-rank-one bases (V = I) against the spectral path.
"""
import dataclasses

import numpy as np
import pytest
from scipy.special import logsumexp

import mashlib as ml
from mashlib.model._vloglik import needed_components, vlogliks

def _sim(J=300, R=4, seed=3):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(J, R)) * np.where(rng.random((J, 1)) < 0.3, 3.0, 0.0) \
        + rng.normal(size=(J, R))
    S = rng.uniform(0.8, 1.5, size=(J, R))
    return ml.mash_set_data(B, S)


def test_one_pass_vloglik_matches_logsumexp():
    rng = np.random.default_rng(1)
    J, P = 50, 12
    ll = rng.normal(size=(J, P)) * 5
    ll[3] = [-2000.0] * (P - 1) + [0.0]            # only a zero-weight column is near the max
    ll[7, 4] = -np.inf
    lf = ll.max(axis=1)
    L = ll - lf[:, None]
    pi = rng.dirichlet(np.ones(P))
    pi[-1] = 0.0
    pi /= pi.sum()
    Sa = rng.uniform(0.5, 2, size=(J, 3))
    vl, nl, al = vlogliks(pi, {"loglik_matrix": L, "lfactors": lf}, Sa, True)
    jac = np.log(Sa).sum(axis=1)
    with np.errstate(divide="ignore"):
        want = logsumexp(L + np.log(pi), axis=1) + lf - jac
        w = pi[1:] / (1 - pi[0])
        want_alt = logsumexp(L[:, 1:] + np.log(w), axis=1) + lf - jac
    np.testing.assert_allclose(vl, want, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(al, want_alt, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(nl, L[:, 0] + lf - jac, rtol=1e-13, atol=1e-12)
    assert np.isfinite(vl[3]) and vl[3] < lf[3] - 1900     # underflowed row redone exactly
    assert vlogliks(pi, {"loglik_matrix": L, "lfactors": lf}, Sa, False)[1] is None


def test_needed_components():
    assert list(needed_components(np.array([0.0, 0.5, 0, 0.5]), True)) == [0, 1, 3]
    assert list(needed_components(np.array([0.2, 0.5, 0, 0.3]), False)) == [0, 1, 3]
    assert needed_components(np.array([1.0, 0, 0]), True) is None


@pytest.mark.parametrize("outputlevel", [2, 3])
def test_fixed_g_on_needed_columns_equals_full(outputlevel):
    d = _sim()
    m = ml.mash(d, ml.cov_canonical(d), outputlevel=1)
    assert (m.fitted_g.pi == 0).sum() > 5                  # some columns are skipped
    fast = ml.mash(d, g=m.fitted_g, fixg=True, outputlevel=outputlevel, output_lfdr=True)
    full = ml.mash(d, g=m.fitted_g, fixg=True, outputlevel=4, output_lfdr=True)
    assert fast.lm is None and full.lm is not None
    for k in ("vloglik", "null_loglik", "alt_loglik"):
        np.testing.assert_allclose(getattr(fast, k), getattr(full, k), rtol=1e-12)
    assert fast.loglik == pytest.approx(m.loglik, rel=1e-12)
    for k in ("PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb"):
        np.testing.assert_allclose(fast.result[k].to_numpy(), full.result[k].to_numpy(),
                                   rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(fast.posterior_weights.to_numpy(),
                               full.posterior_weights.to_numpy(), rtol=1e-11, atol=1e-14)
    # mash_compute_vloglik (pi > 0 columns only) agrees with the fit's vloglik
    np.testing.assert_allclose(ml.mash_compute_vloglik(m.fitted_g, d), full.vloglik, rtol=1e-12)
    # the null at weight 1: every column is needed (the alternative weights are uniform)
    g1 = dataclasses.replace(m.fitted_g, pi=np.r_[1.0, np.zeros(m.fitted_g.pi.size - 1)])
    m1 = ml.mash(d, g=g1, fixg=True, outputlevel=2)
    m1f = ml.mash(d, g=g1, fixg=True, outputlevel=4)
    np.testing.assert_allclose(m1.alt_loglik, m1f.alt_loglik, rtol=1e-12)


def test_dr1_structure_of_canonical_bases():
    from mashlib.model._dr1 import dr1_structure
    R = 5
    d = ml.mash_set_data(np.ones((3, R)), np.ones((3, R)))
    U = ml.cov_canonical(d)
    for name in ("identity", "simple_het_1", "simple_het_2", "simple_het_3"):
        delta, zeta = dr1_structure(U[name])
        np.testing.assert_allclose(np.diag(delta) + np.outer(zeta, zeta), U[name], atol=1e-14)
        assert np.all(delta >= 0)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(R, R))
    assert dr1_structure(X @ X.T) is None                       # generic full rank
    assert dr1_structure(np.outer(np.ones(R), np.ones(R)) - 0.5 * np.eye(R)) is None  # delta < 0
    D = np.diag(rng.uniform(1, 2, R))
    z = rng.normal(size=R)
    delta, zeta = dr1_structure(D + np.outer(z, z))
    np.testing.assert_allclose(np.outer(zeta, zeta), np.outer(z, z), atol=1e-12)


@pytest.mark.parametrize("common_s", [False, True])
def test_dr1_closed_forms_equal_spectral_path(monkeypatch, common_s):
    """Diagonal errors: closed-form likelihood and posterior (mean, sd, lfsr, cov, through A)
    equal the eigendecomposition path."""
    import importlib
    lik = importlib.import_module("mashlib.model.likelihood")
    rng = np.random.default_rng(8)
    J, R = 60, 4
    S = np.ones((J, R)) if common_s else rng.uniform(0.5, 2.0, (J, R))
    S[3, 1] = 40.0 if not common_s else 1.0
    B = rng.normal(size=(J, R)) * 2 + S * rng.normal(size=(J, R))
    d = ml.mash_set_data(B, S)
    U = ml.cov_canonical(d)
    U["sparse_het"] = np.diag([1.0, 0.0, 2.0, 0.5]) + np.outer([1, 0, 0.5, 0.2], [1, 0, 0.5, 0.2])
    xU = ml.expand_cov(ml.normalize_Ulist(U), [0.3, 1.0, 3.0])
    assert any(g.mode == "dr1" for g in lik.ComponentBasis.from_stack(
        np.stack(list(xU.values()))).groups)
    Uk = np.stack(list(xU.values()))
    pi = rng.dirichlet(np.ones(Uk.shape[0]))
    A = rng.normal(size=(2, R))
    fast_ll = ml.calc_lik_matrix(d, xU, log=True)
    fast = [ml.compute_posterior_matrices(d, Uk, pi, A=a, output_posterior_cov=True)
            for a in (None, A)]
    monkeypatch.setattr(lik, "_USE_DR1", False)
    slow_ll = ml.calc_lik_matrix(d, xU, log=True)
    slow = [ml.compute_posterior_matrices(d, Uk, pi, A=a, output_posterior_cov=True)
            for a in (None, A)]
    np.testing.assert_allclose(fast_ll, slow_ll, rtol=1e-11)
    for f, s in zip(fast, slow):
        for k in ("PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr",
                  "PosteriorCov"):
            np.testing.assert_allclose(f[k], s[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("common_s", [True, False])
def test_dr1_correlated_errors_equal_spectral_path(monkeypatch, common_s):
    """Common V != I: bases delta I + zeta zeta^T (identity, simple_het, ED_-like rank one + eps I)
    take one eigendecomposition per row; the log-likelihood equals the per-(row, base) spectra."""
    import importlib
    lik = importlib.import_module("mashlib.model.likelihood")
    rng = np.random.default_rng(9)
    J, R = 50, 5
    S = np.ones((J, R)) if common_s else rng.uniform(0.5, 2.0, (J, R))
    if not common_s:
        S[3, 1] = 40.0
    C = rng.normal(size=(R, R))
    V = C @ C.T + 2 * np.eye(R)
    V = V / np.sqrt(np.outer(np.diag(V), np.diag(V)))
    B = rng.normal(size=(J, R)) * 2 + S * rng.normal(size=(J, R))
    d = ml.mash_set_data(B, S, V=V)
    U = ml.cov_canonical(d)
    w = rng.normal(size=R)
    U["ED_like"] = np.outer(w, w) + np.eye(R) / np.sqrt(J)
    U["ED_single"] = np.diag([0.2, 0.2, 2.2, 0.2, 0.2])        # m e_3 e_3^T + eps I
    U["diag_var"] = np.diag([1.0, 0.5, 2.0, 0.5, 1.0]) + np.outer(w, w)   # not constant: spectra
    xU = ml.expand_cov(ml.normalize_Ulist(U), [0.3, 1.0, 3.0])
    groups = lik.ComponentBasis.from_stack(np.stack(list(xU.values()))).groups
    assert sum(g.bases.size for g in groups if g.mode == "dr1" and g.const_delta) == 6
    assert any(g.mode == "dr1" and not g.const_delta for g in groups)
    fast = ml.calc_lik_matrix(d, xU, log=True)
    monkeypatch.setattr(lik, "_USE_DR1", False)
    slow = ml.calc_lik_matrix(d, xU, log=True)
    np.testing.assert_allclose(fast, slow, rtol=1e-11)
    assert np.abs(fast - slow).max() > 0          # the two paths did run (different rounding)
