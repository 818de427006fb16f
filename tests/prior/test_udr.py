"""udr 0.3-158 port: ud_init / ud_fit against R's udr_sim runs (injected inits).

Tolerances (MANIFEST): udr final loglik 1e-6 relative, U 1e-3.  The non-iid path is checked
against the (R-validated) iid path on data where every V_i is the same matrix.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mashlib._errors import MashInputError
from mashlib.prior.udr import ud_fit, ud_init

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"
US = REF / "udr_sim"


@pytest.fixture(scope="module")
def sim():
    X = np.loadtxt(US / "X.csv", delimiter=",", skiprows=1)
    init = json.loads((US / "init.json").read_text())
    names = init["U"]["names"]
    M = {n: np.asarray(init["U"]["matrices"][n]) for n in names}
    fit0 = ud_init(X, V=np.asarray(init["V"]), U_scaled={n: M[n] for n in names[:2]},
                   U_unconstrained={n: M[n] for n in names[2:]})
    return SimpleNamespace(X=X, init=init, names=names, fit0=fit0)


def test_ud_init_loglik_matches_r(sim):
    assert abs(sim.fit0.loglik - sim.init["loglik"]) <= 1e-10 * abs(sim.init["loglik"])
    assert list(sim.fit0.U) == sim.names
    np.testing.assert_allclose(sim.fit0.w, 0.1)
    assert sim.fit0.iid


@pytest.mark.parametrize("update", ["ed", "ted"])
def test_udr_sim_20_iterations(sim, update):
    ref = json.loads((US / f"ud_fit_{update}_maxiter20.json").read_text())
    fit = ud_fit(sim.fit0, control={"unconstrained.update": update, "maxiter": 20,
                                    "scaled_iid": "udr"})
    tr = np.asarray(ref["progress"]["loglik"])
    assert fit.niter == ref["niter"] == 20
    np.testing.assert_allclose(fit.progress["loglik"].to_numpy(), tr, rtol=1e-6, atol=0)
    assert abs(fit.loglik - ref["loglik"]) <= 1e-6 * abs(ref["loglik"])
    assert fit.loglik_penalized == fit.loglik
    np.testing.assert_allclose(fit.w, ref["w"]["values"], atol=1e-6)
    for n in ref["U"]["names"]:
        np.testing.assert_allclose(fit.U[n].mat, ref["U"]["matrices"][n], atol=1e-3)
    np.testing.assert_allclose(fit.progress["delta_u"].to_numpy(), ref["progress"]["delta_u"],
                               rtol=1e-6)
    np.testing.assert_allclose(fit.progress["delta_w"].to_numpy(), ref["progress"]["delta_w"],
                               rtol=1e-6)


def test_p17_scaled_iid_modes(sim):
    """R ('udr') keeps mat = U0 while s moves; the default rescales mat = s U0."""
    ctl = {"unconstrained_update": "ed", "maxiter": 5}
    r_mode = ud_fit(sim.fit0, control={**ctl, "scaled_iid": "udr"})
    fixed = ud_fit(sim.fit0, control=ctl)
    for n in ("indep", "equal"):
        c = r_mode.U[n]
        assert c.s != 1.0
        np.testing.assert_array_equal(c.mat, c.U0)
        f = fixed.U[n]
        np.testing.assert_allclose(f.mat, f.s * f.U0)
    # the rescaled fit is a genuine EM: the log-likelihood never decreases
    assert np.all(np.diff(fixed.progress["loglik"].to_numpy()) > -1e-8)
    assert fixed.loglik > r_mode.loglik


def test_continue_fit_and_tol_lik(sim):
    a = ud_fit(sim.fit0, control={"unconstrained_update": "ed", "maxiter": 3,
                                  "scaled_iid": "udr"})
    b = ud_fit(a, control={"unconstrained_update": "ed", "maxiter": 2, "scaled_iid": "udr"})
    ref = json.loads((US / "ud_fit_ed_maxiter20.json").read_text())
    assert len(b.progress) == 5
    assert abs(b.loglik - ref["progress"]["loglik"][4]) < 1e-6 * abs(b.loglik)
    c = ud_fit(sim.fit0, control={"unconstrained_update": "ed", "maxiter": 50, "tol_lik": 50.0,
                                  "scaled_iid": "udr"})
    inc = np.diff(np.r_[-np.inf, c.progress["loglik_pen"].to_numpy()])
    assert inc[-1] < 50.0 and np.all(inc[:-1] >= 50.0)


# ----------------------------------------------------------------------------- non-iid path
def _small(seed=0, n=300, m=4):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, m))
    theta = rng.standard_normal((n, m)) @ A.T * (rng.random(n) < 0.5)[:, None]
    V = np.eye(m) + 0.3 * (np.ones((m, m)) - np.eye(m))
    X = theta + rng.standard_normal((n, m)) @ np.linalg.cholesky(V).T
    return X, V


@pytest.mark.parametrize("lam", [0.0, 4.0])
def test_noniid_equals_iid_when_all_V_equal(lam):
    X, V = _small()
    n, m = X.shape
    rng = np.random.default_rng(1)
    Uu = {f"u{i}": (lambda G: G.T @ G)(rng.standard_normal((m, m))) for i in range(3)}
    Ur = {"r1": np.outer(np.arange(1.0, m + 1), np.arange(1.0, m + 1))}
    ctl = dict(unconstrained_update="ed", scaled_update="fa", rank1_update="fa", maxiter=15,
               lambda_=lam)
    Vuse = np.eye(m) if lam else V          # the iid penalty lives in the whitened space
    f_iid = ud_fit(ud_init(X, V=Vuse, U_unconstrained=Uu, U_rank1=Ur), control=ctl)
    f_non = ud_fit(ud_init(X, V=np.stack([Vuse] * n), U_unconstrained=Uu, U_rank1=Ur),
                   control=ctl)
    assert f_iid.iid and not f_non.iid
    np.testing.assert_allclose(f_non.progress["loglik_pen"], f_iid.progress["loglik_pen"],
                               rtol=1e-9)
    for k in f_iid.U:
        np.testing.assert_allclose(f_non.U[k].mat, f_iid.U[k].mat, atol=1e-7)
    if lam:
        assert f_non.logplt < 0 and f_non.loglik_penalized == f_non.loglik + f_non.logplt


def test_noniid_errors_and_mash_data():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((40, 3))
    S = rng.uniform(0.5, 2, (40, 3))
    data = SimpleNamespace(Bhat=B, Shat=S, V=np.eye(3), commonV=True, alpha=0.0)
    f0 = ud_init(data, n_unconstrained=2, seed=1)
    assert not f0.iid and f0.V.shape == (40, 3, 3)
    np.testing.assert_allclose(f0.V[5], np.diag(S[5] ** 2))
    with pytest.raises(MashInputError, match="ted"):
        ud_fit(f0, control={"unconstrained_update": "ted"})
    with pytest.raises(MashInputError, match="not implemented"):
        ud_fit(f0, control={"unconstrained_update": "fa"})
    with pytest.raises(MashInputError, match="residual"):
        ud_fit(f0, control={"unconstrained_update": "ed", "resid_update": "em"})
    f = ud_fit(f0, control={"unconstrained_update": "ed", "maxiter": 10})
    assert np.all(np.diff(f.progress["loglik"]) > -1e-8)
    # EE with identical Shat rows is iid with V = S V S; EZ uses z-scores and data.V
    same = SimpleNamespace(Bhat=B, Shat=np.tile(S[0], (40, 1)), V=np.eye(3), commonV=True,
                           alpha=0.0)
    fi = ud_init(same, n_unconstrained=1, seed=0)
    assert fi.iid
    np.testing.assert_allclose(fi.V, np.diag(S[0] ** 2))
    ez = SimpleNamespace(Bhat=B / S, Shat=np.ones_like(S), V=np.eye(3), commonV=True, alpha=1.0)
    fz = ud_init(ez, n_unconstrained=1, seed=0)
    assert fz.iid and np.allclose(fz.X, B / S)


def test_penalties_iid():
    X, V = _small(seed=5)
    f0 = ud_init(X, V=V, n_unconstrained=3, seed=2)
    for upd, pen in (("ed", "iw"), ("ted", "iw"), ("ted", "nu")):
        f = ud_fit(f0, control=dict(unconstrained_update=upd, lambda_=4.0, penalty_type=pen,
                                    maxiter=8))
        assert np.isfinite(f.logplt) and f.logplt < 0
        assert f.loglik_penalized == pytest.approx(f.loglik + f.logplt)
        assert np.all(np.diff(f.progress["loglik_pen"]) > -1e-6)
        assert all(c.s > 0 for c in f.U.values())
    with pytest.raises(MashInputError, match="nu"):
        ud_fit(f0, control=dict(unconstrained_update="ed", lambda_=4.0, penalty_type="nu"))
    with pytest.raises(MashInputError, match="lambda"):
        ud_fit(f0, control=dict(unconstrained_update="ed", lambda_=-1.0))
    with pytest.raises(MashInputError, match="penalty"):
        ud_fit(f0, control=dict(unconstrained_update="fa", lambda_=1.0))


def test_other_updates_monotone():
    X, V = _small(seed=7)
    f0 = ud_init(X, V=V, n_unconstrained=2, n_rank1=2, seed=4)
    for ctl in (dict(unconstrained_update="fa", rank1_update="fa"),
                dict(unconstrained_update="ted", rank1_update="ted", scaled_update="em"),
                dict(unconstrained_update="ed", resid_update="em")):
        f = ud_fit(f0, control=dict(ctl, maxiter=10))
        assert np.all(np.diff(f.progress["loglik"]) > -1e-6), ctl
    f = ud_fit(f0, control=dict(unconstrained_update="ed", resid_update="em", maxiter=5))
    assert f.progress["delta_v"].iloc[0] > 0


def test_update_threshold_skips_empty_component():
    X, V = _small(seed=9)
    U0 = {"tiny": 1e-6 * np.eye(4), "big": 50 * np.eye(4)}
    f0 = ud_init(X * 10, V=V, U_unconstrained=U0, U_scaled={})
    f = ud_fit(f0, control=dict(unconstrained_update="ed", weights_update="none",
                                update_threshold=1e12, maxiter=3))
    # not updated: only the whitening round trip R^T (R^-T U R^-1) R touches them
    np.testing.assert_allclose(f.U["tiny"].mat, U0["tiny"], rtol=0, atol=1e-18)
    np.testing.assert_allclose(f.U["big"].mat, U0["big"], rtol=1e-13, atol=1e-12)


def test_ud_init_errors_and_defaults():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(MashInputError, match="at least 2"):
        ud_init(X[:1])
    with pytest.raises(MashInputError, match="at most one"):
        ud_init(X, n_unconstrained=2, U_unconstrained=[np.eye(3)])
    with pytest.raises(MashInputError, match="infinite"):
        ud_init(np.where(X > 1, np.inf, X))
    with pytest.raises(MashInputError, match="unknown control"):
        ud_fit(ud_init(X, seed=0), control={"bogus": 1})
    f = ud_init(X, seed=0)
    assert list(f.U)[:2] == ["indep", "equal"] and len(f.U) == 52  # indep, equal + 50 unconstrained
    assert list(f.U)[2] == "unconstrained1"
    g = ud_init(X, seed=0)
    np.testing.assert_array_equal(f.U["unconstrained3"].mat, g.U["unconstrained3"].mat)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ud_init(X, U_unconstrained={"bad": np.diag([1.0, -1.0, 1.0])})
    assert any("positive semi-definite" in str(x.message) for x in w)
    with pytest.warns(UserWarning, match="tol"):
        ud_fit(f, control={"tol": 1e-2, "maxiter": 1})


def test_noniid_updates_match_row_loops():
    """Vectorised non-iid updates against row-by-row transcriptions of udr's R loops."""
    from mashlib.prior.udr import updates as up
    rng = np.random.default_rng(11)
    n, m = 25, 3
    X = rng.standard_normal((n, m)) * 2
    A = rng.standard_normal((n, m, m))
    V = A @ np.swapaxes(A, 1, 2) + np.eye(m)
    p = rng.random(n)
    B = rng.standard_normal((m, m))
    U = B @ B.T
    # ed
    num = np.zeros((m, m))
    for i in range(n):
        Ti = np.linalg.inv(U + V[i])
        c = U @ Ti @ X[i]
        num += p[i] * np.outer(c, c) + p[i] * (U - U @ Ti @ U)
    np.testing.assert_allclose(up.ed_notiid(X, U, V, p)[0], num / p.sum(), rtol=1e-10)
    # fa scaled
    U0 = np.outer([1.0, 2.0, 0.5], [1.0, 2.0, 0.5]) + np.diag([1.0, 0.0, 0.0])
    Q = up.get_mat_Q(U0)
    s, r = 1.7, Q.shape[1]
    trB = []
    for i in range(n):
        Vi = np.linalg.inv(V[i])
        Sig = np.linalg.inv(Q.T @ Vi @ Q + np.eye(r) / s)
        b = X[i] @ Vi @ Q @ Sig
        trB.append(b @ b + np.trace(Sig))
    expect = np.sum(np.asarray(trB) * p) / (p.sum() * r)
    assert up.fa_scaled_notiid(X, U0, V, Q, p, s) == pytest.approx(expect, rel=1e-12)
    # fa rank-1
    u = np.array([0.5, -1.0, 2.0])
    uw, Vw = np.zeros(m), np.zeros((m, m))
    for i in range(n):
        Ai = np.linalg.inv(V[i])
        s2 = 1 / (u @ Ai @ u + 1)
        mu = s2 * u @ Ai @ X[i]
        uw += p[i] * mu * Ai @ X[i]
        Vw += p[i] * (mu ** 2 + s2) * Ai
    np.testing.assert_allclose(up.fa_rank1_notiid(X, u, V, p), np.linalg.solve(Vw, uw),
                               rtol=1e-10)


def _ee_data(n, m, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, m))
    V = A @ A.T / m + np.eye(m)
    V = V / np.sqrt(np.outer(np.diag(V), np.diag(V)))       # a correlation matrix != I
    S = rng.uniform(0.5, 2.0, (n, m))
    B = rng.standard_normal((n, m)) * 2 + rng.standard_normal((n, 1)) * 1.5
    return SimpleNamespace(Bhat=B, Shat=S, V=V, commonV=True, alpha=0.0)


@pytest.mark.parametrize("ctl", [dict(unconstrained_update="ed", scaled_update="fa",
                                      rank1_update="fa"),
                                 dict(unconstrained_update="ed", scaled_update="em",
                                      rank1_update="none", lambda_=3.0)])
def test_noniid_structured_blocked_equals_explicit(ctl, monkeypatch):
    """EE data, common V != I: implicit S_i V S_i in row blocks == the explicit (n, m, m) path."""
    from mashlib.prior.udr import updates as up
    data = _ee_data(300, 4, seed=21)
    n, m = data.Bhat.shape
    Vexp = data.Shat[:, :, None] * data.V[None] * data.Shat[:, None, :]
    ctl = dict(ctl, maxiter=8, tol_lik=-np.inf)
    f_exp = ud_fit(ud_init(data.Bhat, V=Vexp, n_unconstrained=3, n_rank1=1, seed=5), control=ctl)
    monkeypatch.setattr(up, "_BLOCK_BYTES", 8 * m * m * 7 * 13)   # 13-row blocks (k = 7)
    assert len(up.row_blocks(n, m, 7)) > 20 and len(up.row_blocks(n, m)) > 3
    f0 = ud_init(data, n_unconstrained=3, n_rank1=1, seed=5)
    assert isinstance(f0.V, up.RowScaledV) and not f0.iid and f0.V.shape == (n, m, m)
    np.testing.assert_allclose(np.asarray(f0.V), Vexp, rtol=1e-14, atol=0)
    f_str = ud_fit(f0, control=ctl)
    assert len(f_str.progress) == 8
    np.testing.assert_allclose(f_str.progress["loglik_pen"], f_exp.progress["loglik_pen"],
                               rtol=1e-10)
    for k in f_exp.U:
        np.testing.assert_allclose(f_str.U[k].mat, f_exp.U[k].mat, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(f_str.w, f_exp.w, rtol=1e-8)


def test_noniid_structured_memory_bounded(monkeypatch):
    """tracemalloc: EE ud_init + 3 ud_fit iterations never hold O(n m^2) per component."""
    import tracemalloc
    from mashlib.prior.udr import updates as up
    monkeypatch.setattr(up, "_BLOCK_BYTES", 4e6)
    data = _ee_data(20_000, 10, seed=2)
    n, m = data.Bhat.shape
    tracemalloc.start()
    try:
        f0 = ud_init(data, n_unconstrained=4, n_rank1=1, seed=1)
        f = ud_fit(f0, control=dict(unconstrained_update="ed", scaled_update="fa",
                                    rank1_update="fa", maxiter=3, tol_lik=-np.inf))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    k = len(f.U)
    assert len(f.progress) == 3 and np.all(np.diff(f.progress["loglik"]) > 0)
    assert peak < 0.25 * n * m * m * 8 * k, peak          # explicit path: ~1.4 x n m^2 8 k
