"""Extreme deconvolution and cov_ed against mashr 0.2.81 (tests/data/reference).

Tolerances (MANIFEST): ED matrices 1e-4 relative Frobenius, ED av_loglik 1e-6 relative,
mixture weights 1e-4 absolute.  A brute-force transcription of the C EM step (direct
T_ij = S_i + V_j inverses, loops over rows) checks the code paths R's references do not
cover (full per-row covariances, w > 0, free means, fixed amplitudes, component death).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mashlib._errors import MashInputError
from mashlib.prior.ed import bovy_wrapper, cov_ed, extreme_deconvolution

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"
DBL_MIN = np.finfo(float).tiny


def _rel_frob(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


def _data(Bhat, Shat, V=None):
    R = Bhat.shape[1]
    return SimpleNamespace(Bhat=Bhat, Shat=Shat, V=np.eye(R) if V is None else V, commonV=True)


def _naive_ed(Y, S, amp, mean, V, fixamp, fixmean, tol=1e-6, maxiter=10 ** 9, w=0.0):
    """Row-by-row transcription of proj_EM / proj_EM_step (no projection, no weights)."""
    N, R = Y.shape
    K = len(amp)
    amp, mean, V = amp.copy(), mean.copy(), [v.copy() for v in V]
    fa, fm, fc = fixamp.copy(), fixmean.copy(), np.zeros(K, bool)
    diff, old, niter, avg = 2 * tol, 0.0, 0, 0.0
    while diff > tol and niter < maxiter:
        allfixed = fa & fm & fc
        sumfixed = amp[fa].sum()
        logq = np.full((N, K), -np.inf)
        b = np.zeros((N, K, R))
        bb = np.zeros((N, K, R, R))
        for i in range(N):
            for j in range(K):
                T = S[i] + V[j]
                Ti = np.linalg.inv(T)
                r = Y[i] - mean[j]
                with np.errstate(divide="ignore"):
                    logq[i, j] = (np.log(amp[j]) - R / 2 * np.log(2 * np.pi)
                                  - 0.5 * np.linalg.slogdet(T)[1] - 0.5 * r @ Ti @ r)
                b[i, j] = mean[j] + V[j] @ Ti @ r
                bb[i, j] = np.outer(b[i, j], b[i, j]) + V[j] - V[j] @ Ti @ V[j]
        mx = logq.max(axis=1)
        lse = np.log(np.exp(logq - mx[:, None]).sum(axis=1)) + mx
        avg = lse.mean()
        q = np.exp(logq - lse[:, None])
        for j in range(K):
            if allfixed[j]:
                continue
            qj = q[:, j].sum()
            if qj < DBL_MIN:
                qj = 0.0
            if not fa[j]:
                amp[j] = qj
                if qj == 0:
                    fa[j] = fm[j] = fc[j] = True
                    continue
            n = (q[:, j, None] * b[:, j]).sum(axis=0) / qj
            m_old = mean[j].copy()
            if not fm[j]:
                mean[j] = n
            acc = np.einsum("i,iab->ab", q[:, j], bb[:, j])
            acc += qj * np.outer(mean[j], mean[j]) - qj * (np.outer(mean[j], n) + np.outer(n, mean[j]))
            V[j] = (acc + w * np.eye(R)) / (qj + 1) if w > 0 else acc / qj
            del m_old
        if sumfixed == 0:
            amp = amp / N
        else:
            amp[~fa] = amp[~fa] / amp[~fa].sum() * (1 - sumfixed)
        if niter > 0:
            diff = avg - old
        old = avg
        niter += 1
    return amp, mean, np.array(V), avg, niter


# ----------------------------------------------------------------------------- R parity
def test_bovy_small_unit_values():
    ref = json.loads((REF / "golden" / "unit_values.json").read_text())["bovy_small"]
    B = np.array([[1, 2, 3], [2, 4, 6], [-1, 0.5, 2], [0.3, -0.2, 0.1]], float)
    fit = bovy_wrapper(_data(B, np.ones((4, 3))), {"a": np.eye(3), "b": np.ones((3, 3))}, accelerate=False)
    np.testing.assert_allclose(list(fit.pi.values()), ref["pi"], atol=1e-4)
    assert abs(fit.av_loglik - ref["av_loglik"]) <= 1e-6 * abs(ref["av_loglik"])
    assert _rel_frob(fit.Ulist["a"], ref["U_a"]) < 1e-4
    assert _rel_frob(fit.Ulist["b"], ref["U_b"]) < 1e-4
    assert np.array_equal(fit.Ulist["a"], fit.Ulist["a"].T)


def test_sim_small_case_d_cov_ed():
    d = json.loads((REF / "sim_small" / "d_pca_ed_mash.json").read_text())
    Bhat = np.loadtxt(REF / "sim_small" / "Bhat.csv", delimiter=",", skiprows=1)
    Shat = np.loadtxt(REF / "sim_small" / "Shat.csv", delimiter=",", skiprows=1)
    strong = np.asarray(d["strong_idx_1based"]) - 1
    U0 = {n: np.asarray(d["U_pca"]["matrices"][n]) for n in d["U_pca"]["names"]}
    fit = cov_ed(_data(Bhat, Shat), U0, subset=strong, details=True, accelerate=False)
    assert list(fit.Ulist) == d["U_ed"]["names"]
    for n in d["U_ed"]["names"]:
        assert _rel_frob(fit.Ulist[n], d["U_ed"]["matrices"][n]) < 1e-4, n
    assert abs(fit.av_loglik - d["ed_av_loglik"]) <= 1e-6 * abs(d["ed_av_loglik"])
    np.testing.assert_allclose(list(fit.pi.values()), d["ed_pi"]["values"], atol=1e-4)
    assert list(fit.pi) == d["ed_pi"]["names"]
    plain = cov_ed(_data(Bhat, Shat), U0, subset=strong, accelerate=False)
    assert list(plain) == d["U_ed"]["names"]


def test_chain2_ed_full_error_covariances():
    """The protocol test chain: S_j V S_j full errors (V != I), 17 rows, 17 components."""
    from mashlib.model import covariances as cov, data as data_mod
    g = REF / "golden"
    fx = json.loads((g / "fixture_mashr_input.json").read_text())
    b = np.asarray(fx["strong.b"]["values"], float)
    s = np.asarray(fx["strong.s"]["values"], float)
    V = np.asarray(json.loads((g / "chain_values.json").read_text())["V_simple"])
    ref = json.loads((g / "chain2_values.json").read_text())
    md = data_mod.mash_set_data(b, s, V=V, alpha=0)
    comps = {**cov.cov_canonical(md), **cov.cov_pca(md, npc=3)}
    assert len(comps) == len(ref["ed_pi"])
    fit = bovy_wrapper(md, comps, accelerate=False)
    assert abs(fit.av_loglik - ref["ed_av_loglik"]) <= 1e-6 * abs(ref["ed_av_loglik"])
    pi = np.asarray(list(fit.pi.values()))
    np.testing.assert_allclose(pi, ref["ed_pi"], atol=1e-4)
    assert np.array_equal(pi == 0, np.asarray(ref["ed_pi"]) == 0)     # same dead components


# ----------------------------------------------------------------------------- exact EM rule
def _toy(seed=1, N=30, R=4):
    rng = np.random.default_rng(seed)
    C = np.corrcoef(rng.standard_normal((R, 12)))
    sh = rng.uniform(0.5, 2.0, (N, R))
    S = sh[:, :, None] * C[None] * sh[:, None, :]
    v = rng.standard_normal(R)
    A = rng.standard_normal((R, R))
    V = [np.outer(v, v), A @ A.T, np.eye(R), np.diag([1.0, 1.0, 0.0, 0.0])]
    Y = rng.standard_normal((N, R)) * sh * 2
    return Y, S, sh, V


@pytest.mark.parametrize("w", [0.0, 0.5])
def test_matches_bruteforce_full_errors(w):
    Y, S, _, V = _toy()
    K = len(V)
    amp = np.full(K, 1 / K)
    a, m, Vn, avg, n = _naive_ed(Y, S, amp, np.zeros((K, 4)), V, np.zeros(K, bool),
                                 np.ones(K, bool), maxiter=60, w=w)
    r = extreme_deconvolution(Y, S, amp, None, V, fixmean=True, maxiter=60, w=w, accelerate=False)
    assert r.niter == n
    assert abs(r.avgloglik - avg) < 1e-10 * abs(avg)
    np.testing.assert_allclose(r.xamp, a, atol=1e-10)
    np.testing.assert_allclose(r.xcovar, Vn, atol=1e-8 * np.abs(Vn).max())


def test_matches_bruteforce_free_means_and_fixed_amp():
    Y, S, sh, V = _toy(seed=3)
    K = len(V)
    amp = np.array([0.1, 0.2, 0.3, 0.4])
    mean0 = np.random.default_rng(0).standard_normal((K, 4)) * 0.3
    fixamp = np.array([True, False, False, False])
    a, m, Vn, avg, n = _naive_ed(Y, S, amp, mean0, V, fixamp, np.zeros(K, bool), maxiter=40)
    r = extreme_deconvolution(Y, S, amp, mean0, V, fixamp=fixamp, fixmean=False, maxiter=40, accelerate=False)
    assert r.niter == n
    assert abs(r.avgloglik - avg) < 1e-10 * abs(avg)
    np.testing.assert_allclose(r.xamp, a, atol=1e-10)
    assert r.xamp[0] == 0.1 and abs(r.xamp.sum() - 1) < 1e-12
    np.testing.assert_allclose(r.xmean, m, atol=1e-9)
    np.testing.assert_allclose(r.xcovar, Vn, atol=1e-8 * np.abs(Vn).max())
    # diagonal errors (per-row variances) give the same fit as the equivalent full errors
    r1 = extreme_deconvolution(Y, sh ** 2, amp, mean0, V, fixamp=fixamp, maxiter=40, accelerate=False)
    r2 = extreme_deconvolution(Y, np.stack([np.diag(x ** 2) for x in sh]), amp, mean0, V,
                               fixamp=fixamp, maxiter=40, accelerate=False)
    assert abs(r1.avgloglik - r2.avgloglik) < 1e-12 * abs(r1.avgloglik)
    np.testing.assert_allclose(r1.xcovar, r2.xcovar, atol=1e-9)


def test_component_death_freezes_component():
    rng = np.random.default_rng(5)
    Y = rng.standard_normal((20, 3)) * 1e3
    V0 = [1e6 * np.eye(3), 1e-8 * np.eye(3)]
    r = extreme_deconvolution(Y, np.ones((20, 3)), [0.5, 0.5], None, V0, fixmean=True, accelerate=False)
    assert r.xamp[1] == 0.0 and r.frozen[1] and not r.frozen[0]
    np.testing.assert_array_equal(r.xcovar[1], V0[1])     # frozen at its last value (P10)
    assert r.xamp[0] == 1.0
    a, m, Vn, avg, n = _naive_ed(Y, np.stack([np.eye(3)] * 20), np.array([0.5, 0.5]),
                                 np.zeros((2, 3)), V0, np.zeros(2, bool), np.ones(2, bool))
    assert r.niter == n and abs(r.avgloglik - avg) < 1e-10 * abs(avg)


def test_stopping_rule_at_least_two_steps_and_maxiter():
    Y, S, _, V = _toy()
    amp = np.full(4, 0.25)
    assert extreme_deconvolution(Y, S, amp, None, V, fixmean=True, tol=1e10, accelerate=False).niter == 2
    r = extreme_deconvolution(Y, S, amp, None, V, fixmean=True, maxiter=7, accelerate=False)
    assert r.niter == 7 and r.loglik_trace.size == 7
    assert r.avgloglik == r.loglik_trace[-1]
    assert np.all(np.diff(r.loglik_trace) > -1e-12)               # EM is monotone


def test_common_errors_fast_path():
    """Shat = 1 (gtex-like): all rows share one error covariance."""
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((50, 4)) * 2
    V = [np.eye(4), np.ones((4, 4))]
    r1 = extreme_deconvolution(Y, np.ones((50, 4)), [0.5, 0.5], None, V, fixmean=True, accelerate=False)
    r2 = extreme_deconvolution(Y, np.eye(4), [0.5, 0.5], None, V, fixmean=True, accelerate=False)
    a, m, Vn, avg, n = _naive_ed(Y, np.stack([np.eye(4)] * 50), np.array([0.5, 0.5]),
                                 np.zeros((2, 4)), V, np.zeros(2, bool), np.ones(2, bool))
    for r in (r1, r2):
        assert r.niter == n and abs(r.avgloglik - avg) < 1e-10 * abs(avg)
        np.testing.assert_allclose(r.xcovar, Vn, atol=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs():
    B = np.random.default_rng(0).standard_normal((10, 3))
    d = _data(B, np.ones((10, 3)))
    with pytest.raises(MashInputError, match="empty"):
        cov_ed(d, {})
    with pytest.raises(MashInputError, match="3 x 3"):
        cov_ed(d, {"a": np.eye(2)})
    with pytest.raises(MashInputError, match="positive semi-definite"):
        cov_ed(d, {"a": np.diag([1.0, -1.0, 1.0])})
    with pytest.raises(MashInputError, match="symmetric"):
        cov_ed(d, {"a": np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]])})
    with pytest.raises(MashInputError, match="algorithm"):
        cov_ed(d, {"a": np.eye(3)}, algorithm="tem")
    with pytest.raises(MashInputError, match="ycovar"):
        extreme_deconvolution(B, np.zeros((10, 3)), [1.0], None, [np.eye(3)])
    with pytest.raises(MashInputError, match="xamp"):
        extreme_deconvolution(B, np.ones((10, 3)), [1.0, 0.5], None, [np.eye(3)])


def test_names_and_subset():
    B = np.random.default_rng(4).standard_normal((40, 3)) * 3
    d = _data(B, np.ones((40, 3)))
    out = cov_ed(d, [np.eye(3), np.ones((3, 3))], subset=np.arange(40) < 30, accelerate=False)
    assert list(out) == ["ED_1", "ED_2"]
    full = cov_ed(d, [np.eye(3), np.ones((3, 3))], subset=np.arange(30), accelerate=False)
    for k in out:
        np.testing.assert_allclose(out[k], full[k])
    # the +1/sqrt(n) I adjustment: the smallest eigenvalue is at least 1/sqrt(30)
    assert np.linalg.eigvalsh(out["ED_2"])[0] >= 1 / np.sqrt(30) - 1e-12


def test_threaded_row_blocks_agree():
    rng = np.random.default_rng(8)
    N, R = 300, 3
    sh = rng.uniform(0.5, 2.0, (N, R))
    C = np.array([[1, 0.3, 0.1], [0.3, 1, 0.2], [0.1, 0.2, 1.0]])
    S = sh[:, :, None] * C * sh[:, None, :]
    Y = rng.standard_normal((N, R)) * sh * 3
    V = [np.eye(R), np.ones((R, R)), np.diag([2.0, 0, 0])]
    r1 = extreme_deconvolution(Y, S, np.full(3, 1 / 3), None, V, fixmean=True, maxiter=50, accelerate=False)
    r2 = extreme_deconvolution(Y, S, np.full(3, 1 / 3), None, V, fixmean=True, maxiter=50,
                               threads=2, accelerate=False)
    assert r1.niter == r2.niter
    np.testing.assert_allclose(r2.loglik_trace, r1.loglik_trace, rtol=1e-12)
    np.testing.assert_allclose(r2.xcovar, r1.xcovar, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- S_i = kappa_i S_0
def _prop_toy(seed=11, N=40, R=4):
    """Errors S_i = kappa_i S_0 (standard errors factoring as row x condition, V != I)."""
    rng = np.random.default_rng(seed)
    C = np.corrcoef(rng.standard_normal((R, 12)))
    s0 = rng.uniform(0.5, 2.0, R)
    c = rng.uniform(0.3, 3.0, N)
    sh = c[:, None] * s0[None, :]
    S = sh[:, :, None] * C[None] * sh[:, None, :]
    v = rng.standard_normal(R)
    A = rng.standard_normal((R, R))
    V = [np.outer(v, v), A @ A.T, np.eye(R), np.diag([1.0, 1.0, 0.0, 0.0]), np.zeros((R, R))]
    Y = rng.standard_normal((N, R)) * sh * 2
    return Y, S, sh, V


def test_proportional_detection():
    from mashlib.prior.ed import _proportional
    Y, S, sh, _ = _prop_toy()
    S0, kappa = _proportional("full", S)
    np.testing.assert_allclose(kappa[:, None, None] * S0, S, rtol=1e-13, atol=0)
    _, k2 = _proportional("diag", sh ** 2)
    np.testing.assert_allclose(k2, kappa, rtol=1e-13)
    assert _proportional("full", S[:1])[1].tolist() == [1.0]          # common S
    bad = S.copy()
    bad[3, 0, 1] = bad[3, 1, 0] = bad[3, 0, 1] * (1 + 1e-8)
    assert _proportional("full", bad) is None
    bad2 = sh ** 2
    bad2[5, 2] *= 1 + 1e-9
    assert _proportional("diag", bad2) is None


@pytest.mark.parametrize("w", [0.0, 0.5])
def test_proportional_errors_match_bruteforce(w):
    """The joint-diagonalisation path (ranks 0, 1, 2, 4) against the row-by-row C transcription."""
    Y, S, sh, V = _prop_toy()
    K = len(V)
    amp = np.full(K, 1 / K)
    a, m, Vn, avg, n = _naive_ed(Y, S, amp, np.zeros((K, 4)), V, np.zeros(K, bool),
                                 np.ones(K, bool), maxiter=60, w=w)
    r = extreme_deconvolution(Y, S, amp, None, V, fixmean=True, maxiter=60, w=w, accelerate=False)
    assert r.niter == n
    assert abs(r.avgloglik - avg) < 1e-10 * abs(avg)
    np.testing.assert_allclose(r.xamp, a, atol=1e-10)
    np.testing.assert_allclose(r.xcovar, Vn, atol=1e-8 * np.abs(Vn).max())
    assert np.array_equal(r.xcovar, np.swapaxes(r.xcovar, 1, 2))
    g = extreme_deconvolution(Y, S, amp, None, V, fixmean=True, maxiter=60, w=w,
                              proportional=False, accelerate=False)
    np.testing.assert_allclose(r.loglik_trace, g.loglik_trace, rtol=1e-12)
    np.testing.assert_allclose(r.xcovar, g.xcovar, atol=1e-9 * np.abs(Vn).max())


def test_proportional_free_means_fixed_amp_diag_errors():
    Y, S, sh, V = _prop_toy(seed=12)
    K = len(V)
    amp = np.array([0.1, 0.2, 0.3, 0.2, 0.2])
    mean0 = np.random.default_rng(0).standard_normal((K, 4)) * 0.3
    fixamp = np.array([True, False, False, False, False])
    Sd = np.stack([np.diag(x ** 2) for x in sh])
    a, m, Vn, avg, n = _naive_ed(Y, Sd, amp, mean0, V, fixamp, np.zeros(K, bool), maxiter=40)
    r = extreme_deconvolution(Y, sh ** 2, amp, mean0, V, fixamp=fixamp, maxiter=40, accelerate=False)
    assert r.niter == n
    assert abs(r.avgloglik - avg) < 1e-10 * abs(avg)
    np.testing.assert_allclose(r.xamp, a, atol=1e-10)
    np.testing.assert_allclose(r.xmean, m, atol=1e-9)
    np.testing.assert_allclose(r.xcovar, Vn, atol=1e-8 * np.abs(Vn).max())


def test_proportional_path_row_blocks(monkeypatch):
    """Row blocks of the joint-diagonalisation path sum to the one-block result."""
    import mashlib.prior.ed as edm
    rng = np.random.default_rng(9)
    N, R = 400, 3
    c = rng.uniform(0.5, 2.0, N)
    Y = rng.standard_normal((N, R)) * c[:, None] * 3
    V = [np.eye(R), np.ones((R, R)), np.diag([2.0, 0, 0]), np.diag([1.0, 2.0, 0])]
    S = np.outer(c ** 2, np.ones(R))
    r1 = extreme_deconvolution(Y, S, np.full(4, 0.25), None, V, fixmean=True, maxiter=50, accelerate=False)
    monkeypatch.setattr(edm, "_BLOCK_BYTES", 8.0 * 40 * 30)
    r2 = extreme_deconvolution(Y, S, np.full(4, 0.25), None, V, fixmean=True, maxiter=50, accelerate=False)
    assert r1.niter == r2.niter
    np.testing.assert_allclose(r2.loglik_trace, r1.loglik_trace, rtol=1e-12)
    np.testing.assert_allclose(r2.xcovar, r1.xcovar, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("R", [1, 2, 3, 6, 17])
def test_spd_inv_kernel_matches_lapack(R):
    """Batched recursive-Schur SPD inverse against inv / slogdet; non-PD input raises."""
    from mashlib.prior.ed import _spd_inv
    rng = np.random.default_rng(21)
    B = 37
    A = rng.standard_normal((B, R, R))
    T = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(R)
    ld, Ti = _spd_inv(T)
    Tn = np.linalg.inv(T)
    np.testing.assert_allclose(Ti, Tn, rtol=1e-9, atol=1e-9 * np.abs(Tn).max())
    np.testing.assert_allclose(ld, np.linalg.slogdet(T)[1], rtol=1e-12, atol=1e-11)
    bad = T.copy()
    bad[5] = -np.eye(R)
    with pytest.raises(np.linalg.LinAlgError):
        _spd_inv(bad)


def test_direct_path_diag_errors_free_means():
    """Full-rank components (T = S + V direct) with per-row diagonal errors, free means."""
    rng = np.random.default_rng(13)
    N, R = 60, 5
    sh = rng.uniform(0.5, 2.0, (N, R))
    A = rng.standard_normal((R, R))
    V = [A @ A.T, np.eye(R), np.outer(A[0], A[0])]
    Y = rng.standard_normal((N, R)) * sh * 2
    mean0 = rng.standard_normal((3, R)) * 0.2
    a, m, Vn, avg, n = _naive_ed(Y, np.stack([np.diag(x ** 2) for x in sh]), np.full(3, 1 / 3),
                                 mean0, V, np.zeros(3, bool), np.zeros(3, bool), maxiter=30)
    r = extreme_deconvolution(Y, sh ** 2, np.full(3, 1 / 3), mean0, V, maxiter=30, accelerate=False)
    assert r.niter == n and abs(r.avgloglik - avg) < 1e-10 * abs(avg)
    np.testing.assert_allclose(r.xmean, m, atol=1e-9)
    np.testing.assert_allclose(r.xcovar, Vn, atol=1e-8 * np.abs(Vn).max())


# ----------------------------------------------------------------------------- S_i = D_i V D_i
def _scaled_case(prop, seed=21, N=300, R=5):
    rng = np.random.default_rng(seed)
    C = np.corrcoef(rng.standard_normal((R, 12)))
    if prop:                                     # standard errors factor as row x condition
        sh = rng.uniform(0.3, 3.0, N)[:, None] * rng.uniform(0.5, 2.0, R)[None, :]
    else:
        sh = rng.uniform(0.5, 2.0, (N, R))
    v = rng.standard_normal(R)
    A = rng.standard_normal((R, R))
    B = rng.standard_normal((R, 2))
    V = [np.outer(v, v), B @ B.T, A @ A.T, np.eye(R)]
    Y = rng.standard_normal((N, R)) * sh * 2
    return Y, sh, C, V


@pytest.mark.parametrize("prop", [False, True])
@pytest.mark.parametrize("fixmean", [True, False])
def test_scaled_errors_equal_explicit(prop, fixmean, monkeypatch):
    """The structured S_i = D_i V D_i (never materialised) gives the explicit (N, R, R) fit:
    general (Woodbury + direct) and joint-diagonalisation paths, several row blocks."""
    import mashlib.prior.ed as edm
    from mashlib.prior._ed_kernels import _ScaledV
    Y, sh, C, V = _scaled_case(prop)
    S = sh[:, :, None] * C[None] * sh[:, None, :]
    K = len(V)
    kw = dict(xamp=np.full(K, 1 / K), xmean=None, xcovar=V, fixmean=fixmean, maxiter=40)
    monkeypatch.setattr(edm, "_BLOCK_BYTES", 8.0 * 60 * 400)
    r1 = extreme_deconvolution(Y, S, **kw, accelerate=False)
    r2 = extreme_deconvolution(Y, _ScaledV(sh, C), **kw, accelerate=False)
    assert r1.niter == r2.niter
    np.testing.assert_allclose(r2.loglik_trace, r1.loglik_trace, rtol=1e-12)
    np.testing.assert_allclose(r2.xamp, r1.xamp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r2.xmean, r1.xmean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(r2.xcovar, r1.xcovar, rtol=1e-9, atol=1e-10)
    # bovy_wrapper passes the structured form for a common V != I
    fit = bovy_wrapper(_data(Y, sh, C), dict(zip("abcd", V)), maxiter=40, accelerate=False)
    r3 = extreme_deconvolution(Y, S, np.full(K, 1 / K), np.zeros((K, 5)), V, fixmean=True,
                               maxiter=40, accelerate=False)
    assert fit.niter == r3.niter
    assert abs(fit.av_loglik - r3.avgloglik) <= 1e-12 * abs(r3.avgloglik)
    for j, n in enumerate("abcd"):
        np.testing.assert_allclose(fit.Ulist[n] - np.eye(5) / np.sqrt(300), r3.xcovar[j],
                                   rtol=1e-9, atol=1e-10)


def test_scaled_errors_bad_inputs():
    from mashlib.prior._ed_kernels import _ScaledV
    Y, sh, C, V = _scaled_case(False, N=20)
    with pytest.raises(MashInputError, match="not positive definite"):
        extreme_deconvolution(Y, _ScaledV(sh, np.ones((5, 5))), np.ones(1), None, V[:1])
    sh0 = sh.copy()
    sh0[3, 2] = 0.0
    with pytest.raises(MashInputError, match="row 3"):
        extreme_deconvolution(Y, _ScaledV(sh0, C), np.ones(1), None, V[:1])
    # one scale vector for every row: the common-covariance path, same result
    same = np.broadcast_to(sh[:1], sh.shape)
    r1 = extreme_deconvolution(Y, _ScaledV(same, C), np.ones(1), None, V[:1], maxiter=5, accelerate=False)
    r2 = extreme_deconvolution(Y, same[0, :, None] * C * same[0], np.ones(1), None, V[:1],
                               maxiter=5, accelerate=False)
    np.testing.assert_allclose(r1.xcovar, r2.xcovar, rtol=1e-12)


def test_cov_ed_peak_memory_scaled_errors():
    """mashr #125: with a common V != I, cov_ed's peak memory is O(J R + block), far below
    one (J, R, R) array (J R^2 8 bytes = 160 MB here; 809 MB before the structured form)."""
    import tracemalloc
    J, R = 50_000, 20
    rng = np.random.default_rng(0)
    Shat = rng.uniform(0.5, 2.0, (J, R))
    A = rng.standard_normal((R, R))
    V = A @ A.T / R + np.eye(R)
    V = V / np.sqrt(np.outer(np.diag(V), np.diag(V)))           # a correlation matrix
    Bhat = rng.standard_normal((J, R)) * Shat * 2
    w1, W3, F = rng.standard_normal(R), rng.standard_normal((R, 3)), rng.standard_normal((R, R))
    U0 = {"r1": np.outer(w1, w1), "r3": W3 @ W3.T, "full": F @ F.T / R}
    data = _data(Bhat, Shat, V)
    tracemalloc.start()
    try:
        fit = cov_ed(data, U0, maxiter=3, details=True, accelerate=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fit.niter == 3 and np.isfinite(fit.av_loglik)
    assert peak < 0.5 * J * R * R * 8, f"peak {peak / 1e6:.1f} MB"
