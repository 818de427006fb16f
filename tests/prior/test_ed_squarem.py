"""SQUAREM-accelerated extreme deconvolution against the plain EM (issue 13): same stopping
rule, the same maximum when run to a tight tolerance, never below the plain iterate."""
import numpy as np
import pytest

import mashlib as ml

def _ed_problem(seed=0, J=400, R=3):
    rng = np.random.default_rng(seed)
    f = np.array([1.0, 0.8, -0.5])
    B = np.concatenate([rng.normal(size=(J // 2, 1)) * 2 * f, 1.5 * rng.normal(size=(J // 2, R))])
    S = rng.uniform(0.5, 1.0, size=(J, R))
    B = B + S * rng.normal(size=(J, R))
    return ml.mash_set_data(B, S), {"a": np.outer(f, f) + 0.1 * np.eye(R), "b": np.eye(R)}


def _rel_frob(A, B):
    return np.linalg.norm(A - B) / np.linalg.norm(B)


def test_accelerated_ed_reaches_the_plain_fixed_point():
    d, U0 = _ed_problem()
    plain = ml.cov_ed(d, U0, details=True, accelerate=False)
    fast = ml.cov_ed(d, U0, details=True)
    assert fast.niter < plain.niter / 2                       # 29 vs 107 EM steps
    assert abs(fast.av_loglik - plain.av_loglik) <= 1e-6 * abs(plain.av_loglik)
    # run to a tight tolerance, both reach the same maximum (plain: 693 steps, SQUAREM 154)
    fast = ml.cov_ed(d, U0, details=True, tol=1e-12, maxiter=5000)
    plain = ml.cov_ed(d, U0, details=True, accelerate=False, tol=1e-12, maxiter=5000)
    assert plain.niter < 5000 and fast.niter < plain.niter / 3
    assert fast.av_loglik == pytest.approx(plain.av_loglik, rel=1e-10)
    for k in plain.Ulist:
        assert _rel_frob(fast.Ulist[k], plain.Ulist[k]) < 1e-5
    np.testing.assert_allclose(list(fast.pi.values()), list(plain.pi.values()), atol=1e-5)


def test_accelerated_ed_stops_by_plain_steps_and_never_goes_down():
    from mashlib.prior.ed import extreme_deconvolution
    d, U0 = _ed_problem(seed=6)
    Y, S = d.Bhat, d.Shat ** 2
    K = len(U0)
    r = extreme_deconvolution(Y, S, np.full(K, 1 / K), None, list(U0.values()), fixmean=True)
    # the result is an EM fixed point to tol: one more plain step gains at most 1e-6
    r1 = extreme_deconvolution(Y, S, r.xamp, None, list(r.xcovar), fixmean=True, maxiter=2,
                               accelerate=False)
    assert r1.loglik_trace[1] - r1.loglik_trace[0] <= 1e-6
    # EM from the returned state goes up from the reported value (the E step of the last step)
    assert r.avgloglik - 1e-12 <= r1.loglik_trace[0] <= r.avgloglik + 1e-5
    assert r.avgloglik >= r.loglik_trace[0]
    # maxiter is respected and the weights stay a distribution
    r5 = extreme_deconvolution(Y, S, np.full(K, 1 / K), None, list(U0.values()), fixmean=True,
                               maxiter=5)
    assert r5.niter <= 5 and abs(r5.xamp.sum() - 1) < 1e-12 and np.all(r5.xamp >= 0)
    assert np.all(np.linalg.eigvalsh(r5.xcovar) > -1e-10)
