"""mix-SQP and ashr's mixture optimisers against R (golden/unit_values.json) and mixsqp's tests."""
import importlib
import json
import pathlib

import numpy as np
import pytest

from mashlib._errors import MashConvergenceWarning, MashInputError
from mashlib.eb.mixopt import mix_em, mix_sqp, penloglik
from mashlib.eb import STATUS_CONVERGED, STATUS_DIDNOTCONVERGE, mixobjective, mixsqp

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = pathlib.Path(__file__).parents[1] / "data" / "reference" / "golden" / "unit_values.json"
E = 1e-8
L3 = np.array([[1, 1, E], [1, 2, 1], [0.5, 0.1, 1], [0.2, 0.9, 0.4]])


@pytest.fixture(scope="module")
def gold():
    return json.loads(REF.read_text())


def _simulate(n=400, m=20, seed=1):
    rng = np.random.default_rng(seed)
    sd = np.concatenate([[0.0], np.exp(np.linspace(np.log(0.1), np.log(8), m - 1))])
    b = np.where(rng.random(n) < 0.7, 0.0, rng.normal(0, 3, n)) + rng.normal(size=n)
    v = 1 + sd**2
    return -0.5 * np.log(2 * np.pi * v)[None, :] - 0.5 * b[:, None] ** 2 / v[None, :]


def test_mixsqp_2x2(gold):
    r = mixsqp(np.array([[1, E], [E, 1]]))
    np.testing.assert_allclose(r.x, gold["mixsqp_2x2"], atol=1e-8)
    assert r.converged and r.status == STATUS_CONVERGED


def test_mixsqp_4x3(gold):
    g = gold["mixsqp_4x3"]
    r = mixsqp(np.array(g["L"]))
    np.testing.assert_allclose(r.x, g["x"], atol=1e-8)
    assert r.x.sum() == pytest.approx(1.0)


def test_ashr_mixsqp_nullbiased(gold):
    p, conv = mix_sqp(L3, np.array([10.0, 1, 1]), pi_init=np.full(3, 1 / 3))
    np.testing.assert_allclose(p, gold["ashr_mixSQP_nullbiased"], atol=1e-8)
    assert conv


def test_ashr_mixem_nullbiased(gold):
    res = mix_em(L3, np.array([10.0, 1, 1]), pi_init=np.full(3, 1 / 3))
    p, conv = res
    # R's pi: 0.999999998, 2.7e-10, 1.7e-9: the same SQUAREM path and stopping point
    np.testing.assert_allclose(p, gold["ashr_mixEM_nullbiased"], rtol=1e-6, atol=1e-14)
    assert conv and res.B == pytest.approx(-penloglik(p, L3, np.array([10.0, 1, 1])))


def test_zero_stays_exactly_zero():
    # mixsqp test: x0 with x[3] = 0 (or not) and eps = 0 -> converged, x[3] == 0 exactly
    L = np.array([[1, 1, E], [1, 1, 1]])
    for x0 in ([1, 1, 0], [0, 1, 1]):
        r = mixsqp(L, x0=x0, control={"eps": 0})
        assert r.converged and r.x[2] == 0.0


def test_zero_column_and_bad_x0():
    L = np.array([[1, 1, 0], [1, 1, 1]])
    assert mixsqp(L).converged
    with pytest.raises(MashInputError, match="x0"):
        mixsqp(L, x0=[0, 0, 1])
    with pytest.warns(UserWarning, match="all zeros"):
        r = mixsqp(np.array([[1.0, 0, 2], [1, 0, 1]]))
    assert r.x[1] == 0.0 and r.x.sum() == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="only one column"):
        r = mixsqp(np.array([[0.0, 2], [0, 1]]))
    np.testing.assert_array_equal(r.x, [0, 1])


def test_bad_inputs():
    with pytest.raises(MashInputError, match="'L'"):
        mixsqp(np.array([[1.0, -1.0]]))
    with pytest.raises(MashInputError, match="'L'"):
        mixsqp(np.array([[1.0, np.nan]]))
    with pytest.raises(MashInputError, match="'w'"):
        mixsqp(L3, w=[1, 1])
    with pytest.raises(MashInputError, match="unknown key"):
        mixsqp(L3, control={"foo": 1})
    with pytest.raises(MashInputError, match="zero_threshold_solution"):
        mixsqp(L3, control={"zero.threshold.solution": 0.5})


def test_poor_initial_estimate_same_objective():
    L = np.exp(_simulate())
    r1 = mixsqp(L)
    x0 = np.full(L.shape[1], 1e-6)
    x0[-1] = 1.0
    r2 = mixsqp(L, x0=x0)
    assert r1.value == pytest.approx(r2.value, abs=1e-8)


def test_log_equivalent_and_dotted_control():
    ll = _simulate()
    r1 = mixsqp(np.exp(ll))
    r2 = mixsqp(ll, log=True, control={"convtol.sqp": 1e-8, "numiter.em": 10})
    np.testing.assert_allclose(r1.x, r2.x, atol=1e-8)
    # optimality: dual residual at the optimum (KKT: g_k + 1 >= 0, = 0 on the support)
    g = r1.grad
    assert np.all(g + 1 >= -1e-6)
    assert np.all(np.abs(g[r1.x > 1e-6] + 1) < 1e-6)


def test_maxiter_warning():
    ll = _simulate()
    with pytest.warns(MashConvergenceWarning):
        r = mixsqp(ll, log=True, control={"numiter_em": 0, "maxiter_sqp": 2})
    assert r.status == STATUS_DIDNOTCONVERGE and not r.converged and r.niter == 2


def test_weights_equal_replicated_rows():
    L = np.exp(_simulate(n=50))
    w = np.arange(1, 51) % 3 + 1.0
    r1 = mixsqp(L, w=w)
    r2 = mixsqp(np.repeat(L, w.astype(int), axis=0))
    np.testing.assert_allclose(r1.x, r2.x, atol=1e-6)


def test_mix_sqp_matches_mix_em():
    L = np.exp(_simulate())
    prior = np.ones(L.shape[1])
    prior[0] = 10.0
    p1, c1 = mix_sqp(L, prior)
    p2, c2 = mix_em(L, prior)
    assert c1 and c2
    # same penalised optimum
    assert penloglik(p1, L, prior) == pytest.approx(penloglik(p2, L, prior), abs=1e-4)
    np.testing.assert_allclose(p1, p2, atol=1e-3)


def test_mixobjective():
    x = np.array([0.2, 0.5, 0.3])
    w = np.full(4, 0.25)
    assert mixobjective(L3, x, w) == pytest.approx(-np.mean(np.log(L3 @ x)))


def test_modified_cholesky_search_equals_sequential():
    """The bisection / warm-started search picks exactly R's multiple a."""
    ms = importlib.import_module("mashlib.eb._qp")

    def sequential(H):
        a0, a = 1e-15, (0.0 if H.diagonal().min() > 1e-15 else 1e-15 - H.diagonal().min())
        while a * 10 <= 1e15:
            if ms._potrf(H + a * np.eye(H.shape[0]), lower=False, clean=False)[1] == 0:
                return a
            a = a0 if a <= 0 else a * 10
        return a

    rng = np.random.default_rng(5)
    for _ in range(60):
        n = int(rng.integers(1, 30))
        A = rng.normal(size=(int(rng.integers(1, n + 1)), n)) * 10 ** rng.uniform(-8, 3)
        H = A.T @ A - (10 ** rng.uniform(-12, 1) * rng.random() if rng.random() < 0.5 else 0) * np.eye(n)
        ref = sequential(H)
        for hint in (None, 1e-15, ref, ref * 10, ref / 10, 1e20):
            p, a = ms._activeset_searchdir(H, rng.normal(size=n), 10.0, hint)
            assert a == ref


def test_lazy_hessian_equals_dense(monkeypatch):
    """Forming H only on the free set gives the same iterates as the dense L'diag(d)L."""
    ms = importlib.import_module("mashlib.eb._mixsqp")  # the module, not the same-named function

    L = np.exp(_simulate(n=300, m=25, seed=7))
    r_lazy = mixsqp(L)

    class Dense:
        def __init__(self, P, d):
            A = P.A[P.where]                 # L^T with its rows in column order of L
            self.H = (A * d) @ A.T

        def block(self, idx):
            return self.H[np.ix_(idx, idx)]

        def matvec(self, y):
            return self.H @ y

        matvec_sparse = matvec

    monkeypatch.setattr(ms, "_LazyHessian", Dense)
    r_dense = mixsqp(L)
    np.testing.assert_allclose(r_lazy.x, r_dense.x, atol=1e-10)
    assert r_lazy.niter == r_dense.niter


def test_mix_sqp_bad_prior_and_shapes():
    with pytest.raises(MashInputError, match="'prior'"):
        mix_sqp(L3, [0.5, 1, 1])
    with pytest.raises(MashInputError, match="'prior'"):
        mix_sqp(L3, [1, 1])
    with pytest.raises(MashInputError, match="'weights'"):
        mix_sqp(L3, [1, 1, 1], weights=[1, 1])


def test_incremental_cholesky_remove_append_match_fresh_solves():
    """Updated factor of H_SS + aI (removals by Givens, appends by bordering) solves as a fresh one."""
    from mashlib.eb._qp_chol import IncrementalCholesky
    rng = np.random.default_rng(11)
    n, a = 40, 1e-3
    Z = rng.normal(size=(n, 25))
    H = Z @ Z.T                                     # rank 25 < n: singular, as mix-SQP's H
    S = np.arange(30)
    U = np.linalg.cholesky(H[np.ix_(S, S)] + a * np.eye(S.size)).T
    fac = IncrementalCholesky(U, S, a)
    for step in ["r3", "r17", "a33", "r0", "a35", "r29", "r33"]:
        k = int(step[1:])
        if step[0] == "r":
            fac.remove(k)
        else:
            free = fac.free
            assert fac.append(k, H[free, k], H[k, k])
        free = fac.free
        b = rng.normal(size=free.size)
        want = np.linalg.solve(H[np.ix_(free, free)] + a * np.eye(free.size), b)
        np.testing.assert_allclose(fac.solve(b), want, rtol=1e-8, atol=1e-8 * np.abs(want).max())
    assert sorted(fac.free) == sorted(set(range(30)) - {3, 17, 0, 29, 33} | {35})
    # a pivot that is not positive is refused and leaves the factor as it was
    assert not fac.append(36, H[fac.free, 36], -1.0)
    assert 36 not in fac.free


def test_large_free_sets_same_optimum_as_refactoring(monkeypatch):
    """Free sets over 200 columns use factor updates (and keep a): same optimum as R's
    refactor-every-time path."""
    qp = importlib.import_module("mashlib.eb._qp")
    rng = np.random.default_rng(3)
    n, m = 300, 400
    sd = np.concatenate([[0.0], np.exp(np.linspace(np.log(0.05), np.log(10), m - 1))])
    mu = np.repeat(np.linspace(-4, 4, 4), m // 4)
    b = np.concatenate([rng.normal(0, 1, 100), rng.normal(3, 2, 100), rng.normal(-2, 0.5, 100)])
    v = 1 + sd ** 2
    ll = -0.5 * np.log(2 * np.pi * v)[None, :] - 0.5 * (b[:, None] - mu[None, :]) ** 2 / v[None, :]
    fast = mixsqp(ll, log=True)
    assert fast.progress["nnz"].max() > 300            # > 200: updates taken
    monkeypatch.setattr(qp, "_LARGE", 10 ** 9)         # refactor every time, R's a
    ref = mixsqp(ll, log=True)
    assert fast.converged and ref.converged
    assert fast.value == pytest.approx(ref.value, rel=1e-10)
    np.testing.assert_allclose(fast.x, ref.x, atol=1e-6)


def test_problem_rows_in_front_and_em_step_on_the_support():
    """The private copy keeps the support's rows in front (views, not gathers): products equal
    those with L itself, and the EM step that skips the full pass (entries off the support
    provably under the zero threshold) equals the full step after thresholding."""
    ms = importlib.import_module("mashlib.eb._mixsqp")
    rng = np.random.default_rng(5)
    L = np.exp(_simulate(n=400, m=30, seed=9))
    A, w, x0, z, unit = ms._prepare(L, None, None, False, True)
    Ln = A.T.copy()                                   # row-normalised L, original column order
    P = ms._Problem(A, w, z, 1e-8, unit)
    for size in (30, 20, 12, 17, 5):
        x = np.zeros(30)
        x[rng.choice(30, size, replace=False)] = rng.uniform(0.01, 1, size)
        np.testing.assert_allclose(P.Lx(x), Ln @ x, rtol=1e-12)
        v = rng.uniform(size=400)
        np.testing.assert_allclose(P.LTv(v), Ln.T @ v, rtol=1e-12)
        S = np.flatnonzero(x)
        order, AS = P.front(S)
        assert sorted(order) == list(S)
        np.testing.assert_array_equal(AS, Ln[:, order].T)
        thr = 1e-8
        full, cut = P.em_update(x), P.em_update(x, thr)
        full[full <= thr] = 0.0
        if not P.dense(S):
            assert np.all(cut[np.setdiff1d(np.arange(30), S)] == 0.0)
        np.testing.assert_allclose(cut, full, rtol=1e-12, atol=1e-300)


def test_returned_gradient_and_hessian_in_column_order():
    """grad and hessian come back indexed like the columns of L although the private copy's
    rows were permuted during the fit."""
    L = np.exp(_simulate(n=500, m=40, seed=12))
    r = mixsqp(L)
    assert r.progress["nnz"].iloc[0] > r.progress["nnz"].iloc[-1]   # supports moved in front
    Ln = L / L.max(axis=1, keepdims=True)
    w = np.full(L.shape[0], 1 / L.shape[0])
    u = Ln @ r.x + 1e-8                                            # mixsqp's default eps
    H = (Ln * (w / u ** 2)[:, None]).T @ Ln
    np.testing.assert_allclose(r.hessian, H, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    np.testing.assert_allclose(r.grad, -(Ln.T @ (w / u)), rtol=1e-10, atol=1e-14)


def test_log_input_read_directly_same_fit_and_bad_entries():
    """log=True exponentiates straight into mixsqp's copy: the same fit as exp(L); +Inf and
    NaN log-likelihoods get one-line errors naming the problem."""
    ll = _simulate(n=300, m=20, seed=4)
    a, b = mixsqp(ll, log=True), mixsqp(np.exp(ll - ll.max(axis=1, keepdims=True)))
    np.testing.assert_allclose(a.x, b.x, atol=1e-12)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    bad = ll.copy()
    bad[7, 3] = np.inf
    with pytest.raises(MashInputError, match=r"\+Inf in row 7"):
        mixsqp(bad, log=True)
    bad[7, 3] = np.nan
    with pytest.raises(MashInputError, match="NaN"):
        mixsqp(bad, log=True)
