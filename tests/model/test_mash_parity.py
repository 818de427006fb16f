"""mash parity with R mashr 0.2.81 (issue #2 definition of done; tolerances from MANIFEST.md).

* sim_small cases a (EE), b (EZ), b2 (heterogeneous Shat, alpha 0 and 1), d (canonical + R's
  U_ed): loglik 1e-6 relative, pi 1e-4, posteriors 1e-4 after our own fit; with R's fitted
  g plugged in (mash_compute_posterior_matrices) posteriors within 1e-8.
* golden/unit_values.json: mash_small (+ autogrid, EZ), autoselect_grid_small, compute_lfsr.
* golden/chain2_values.json: the protocol test chain (needs mashlib.prior.ed for the ED prior).
"""
import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.model import cov_canonical, cov_pca
from mashlib.model import mash_set_data
from mashlib.model import (FittedG, autoselect_grid, mash, mash_compute_loglik,
                          mash_compute_posterior_matrices, mash_compute_vloglik)
from mashlib.model import compute_lfsr
from mashlib.model import get_estimated_pi

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"
SIM = REF / "sim_small"
POST = ["PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr"]


@lru_cache(maxsize=None)
def _json(path):
    return json.load(open(path))


def _sim_data(case, alpha):
    het = case.startswith("b2")
    B = pd.read_csv(SIM / ("Bhat2_hetero.csv" if het else "Bhat.csv"))
    S = pd.read_csv(SIM / ("Shat2_hetero.csv" if het else "Shat.csv"))
    return mash_set_data(B, S, alpha=alpha)


def _ref_g(r):
    return FittedG(pi=np.array(r["pi"]["values"]),
                   Ulist={k: np.array(v) for k, v in r["Ulist"]["matrices"].items()},
                   grid=np.array(r["grid"]), usepointmass=r["usepointmass"])


def _check_fit(m, r, d):
    assert abs(m.loglik - r["loglik"]) <= 1e-6 * abs(r["loglik"])
    np.testing.assert_allclose(m.fitted_g.grid, r["grid"], rtol=1e-12)
    assert m.fitted_g.component_names() == r["pi"]["names"]
    np.testing.assert_allclose(m.fitted_g.pi, r["pi"]["values"], atol=1e-4)
    vl = np.asarray(r["vloglik"], float).ravel()
    np.testing.assert_allclose(m.vloglik, vl, rtol=1e-6, atol=1e-6 * np.abs(vl).max())
    np.testing.assert_allclose(m.null_loglik, np.asarray(r["null_loglik"], float).ravel(),
                               rtol=1e-10)
    for k in POST:
        np.testing.assert_allclose(m.result[k].to_numpy(), np.array(r[k], float), atol=1e-4,
                                   err_msg=k)
    assert list(m.result["PosteriorMean"].columns) == r["colnames"] == d.conditions
    np.testing.assert_allclose(get_estimated_pi(m, "cov").to_numpy(), r["pi_by_cov"]["values"],
                               atol=1e-4)
    np.testing.assert_allclose(get_estimated_pi(m, "grid").to_numpy(), r["pi_by_grid"]["values"],
                               atol=1e-4)
    # posteriors with R's pi plugged in: 1e-8
    g = _ref_g(r)
    post = mash_compute_posterior_matrices(g, d)
    for k in POST:
        np.testing.assert_allclose(post[k].to_numpy(), np.array(r[k], float), atol=1e-8,
                                   err_msg=f"plug-in {k}")
    np.testing.assert_allclose(mash_compute_vloglik(g, d), vl, rtol=1e-10)


@pytest.mark.parametrize("case,alpha", [("a_mash_EE_canonical", 0), ("b_mash_EZ_canonical", 1),
                                        ("b2_mash_hetero_alpha0_canonical", 0),
                                        ("b2_mash_hetero_alpha1_canonical", 1)])
def test_sim_small_canonical(case, alpha):
    r = _json(SIM / f"{case}.json")
    d = _sim_data(case, alpha)
    U = cov_canonical(d)
    assert list(U) == r["Ulist"]["names"]
    m = mash(d, U, output_lfdr=True)
    assert m.alpha == r["alpha"]
    _check_fit(m, r, d)


def test_sim_small_d_canonical_plus_ed():
    ref = _json(SIM / "d_pca_ed_mash.json")
    r = ref["mash"]
    d = _sim_data("a", 0)
    U = cov_canonical(d)
    U.update({k: np.array(v) for k, v in ref["U_ed"]["matrices"].items()})
    assert list(U) == r["Ulist"]["names"]
    m = mash(d, U, output_lfdr=True)
    _check_fit(m, r, d)


UNIT_B = np.array([[1.0, 2, 3], [2, 4, 6]])
UNIT_S = np.array([[1.0, 1, 1], [2, 2, 2]])


def test_unit_mash_small():
    u = _json(REF / "golden" / "unit_values.json")["mash_small"]
    d = mash_set_data(UNIT_B, UNIT_S)
    U = cov_canonical(d)
    assert list(U) == u["U_names"]
    m = mash(d, U, grid=[0.5, 1, 2], outputlevel=3, output_lfdr=True)
    assert m.fitted_g.component_names() == u["pi_names"]
    np.testing.assert_allclose(m.fitted_g.pi, u["pi"], atol=1e-4)
    assert m.loglik == pytest.approx(u["loglik"], rel=1e-6)
    for k in ("vloglik", "null_loglik", "alt_loglik"):
        np.testing.assert_allclose(getattr(m, k), u[k], rtol=1e-6)
    for k in POST:
        np.testing.assert_allclose(m.result[k].to_numpy(), u[k], atol=1e-4)
    np.testing.assert_allclose(m.result["PosteriorCov"][0], u["PosteriorCov_1"], atol=1e-4)
    np.testing.assert_allclose(get_estimated_pi(m).to_numpy(), u["pi_cov"], atol=1e-4)
    # PosteriorSD == sqrt(diag(PosteriorCov)) (mashr test_posterior.R)
    np.testing.assert_allclose(m.result["PosteriorSD"].to_numpy(),
                               np.sqrt(np.diagonal(m.result["PosteriorCov"], axis1=1, axis2=2)),
                               rtol=1e-10)
    # loglik recomputed for the same data, from the model or from its g
    assert mash_compute_loglik(m, d) == pytest.approx(m.loglik, rel=1e-12)
    assert mash_compute_loglik(m.fitted_g, d) == pytest.approx(m.loglik, rel=1e-12)
    # refit with fixg reproduces the result (mashr test_posterior.R)
    m2 = mash(d, g=m.fitted_g, fixg=True, outputlevel=3, output_lfdr=True)
    for k in POST:
        np.testing.assert_allclose(m2.result[k].to_numpy(), m.result[k].to_numpy(), atol=1e-13)
    g2 = dataclasses.replace(m.fitted_g, pi=np.full(25, 1 / 25))
    assert mash_compute_loglik(g2, d) != pytest.approx(m.loglik)


def test_unit_autogrid_and_EZ():
    u = _json(REF / "golden" / "unit_values.json")
    d = mash_set_data(UNIT_B, UNIT_S)
    np.testing.assert_allclose(autoselect_grid(d, np.sqrt(2)), u["autoselect_grid_small"],
                               rtol=1e-12)
    ma = mash(d, cov_canonical(d))
    np.testing.assert_allclose(ma.fitted_g.grid, u["mash_small_autogrid"]["grid"], rtol=1e-12)
    np.testing.assert_allclose(ma.fitted_g.pi, u["mash_small_autogrid"]["pi"], atol=1e-4)
    assert ma.loglik == pytest.approx(u["mash_small_autogrid"]["loglik"], rel=1e-6)
    dz = mash_set_data(UNIT_B, UNIT_S, alpha=1)
    mz = mash(dz, cov_canonical(dz), grid=[0.5, 1, 2])
    np.testing.assert_allclose(mz.fitted_g.pi, u["mash_small_EZ"]["pi"], atol=1e-4)
    assert mz.loglik == pytest.approx(u["mash_small_EZ"]["loglik"], rel=1e-6)
    np.testing.assert_allclose(mz.result["PosteriorMean"].to_numpy(),
                               u["mash_small_EZ"]["PosteriorMean"], atol=1e-4)
    # alpha mismatch between model and data (P23)
    with pytest.raises(MashInputError, match="alpha"):
        mash_compute_posterior_matrices(mz, d)
    assert np.allclose(autoselect_grid(d, 0), [0, autoselect_grid(d)[-1] / 2])


def test_compute_lfsr_golden():
    u = _json(REF / "golden" / "unit_values.json")["compute_lfsr"]
    np.testing.assert_allclose(compute_lfsr(u["NegativeProb"], u["ZeroProb"]), u["lfsr"],
                               atol=1e-15)


def test_mash_argument_errors():
    d = mash_set_data(UNIT_B, UNIT_S)
    U = cov_canonical(d)
    with pytest.raises(MashInputError, match="empty"):
        mash(d, {})
    with pytest.raises(MashInputError, match="positive semi-definite"):
        mash(d, {"bad": np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]])})
    with pytest.raises(MashInputError, match="R = 3"):
        mash(d, {"small": np.eye(2)})
    with pytest.raises(MashInputError, match="Ulist"):
        mash(d)
    m = mash(d, U, grid=[0.5, 1.0])
    with pytest.raises(MashInputError, match="cannot supply both g and grid"):
        mash(d, g=m.fitted_g, grid=[1.0])
    with pytest.raises(MashInputError, match="fixg"):
        mash(d, U, fixg=True)
    with pytest.raises(MashInputError, match="A: is not a proper"):
        mash(d, U, A=np.ones((1, 2)))


def test_outputlevels_and_A():
    d = mash_set_data(UNIT_B, UNIT_S)
    U = cov_canonical(d)
    m1 = mash(d, U, grid=[0.5, 1, 2], outputlevel=1)
    assert m1.result == {} and m1.lm is None
    m4 = mash(d, U, grid=[0.5, 1, 2], outputlevel=4)
    assert m4.lm["loglik_matrix"].shape == (2, 25) and m4.result["PosteriorCov"].shape == (2, 3, 3)
    A = np.array([[1.0, -1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    mA = mash(d, g=m4.fitted_g, fixg=True, A=A, outputlevel=3)
    pm = m4.result["PosteriorMean"].to_numpy()
    np.testing.assert_allclose(mA.result["PosteriorMean"].to_numpy(), pm @ A.T, atol=1e-12)
    C = m4.result["PosteriorCov"]
    np.testing.assert_allclose(mA.result["PosteriorCov"], A @ C @ A.T, atol=1e-12)
    np.testing.assert_allclose(mA.result["PosteriorSD"].to_numpy()[:, 1],
                               np.sqrt((A[1] @ C @ A[1])), rtol=1e-8)


def _fixture(name):
    fx = _json(REF / "golden" / "fixture_mashr_input.json")
    v = np.array(fx[name]["values"], dtype=float)
    return pd.DataFrame(v, columns=fx[name]["colnames"],
                        index=[f"mash::mash::var{i + 1}" for i in range(len(v))])


def _prep(set_):
    b, s = _fixture(f"{set_}.b").fillna(0.0), _fixture(f"{set_}.s")
    return b, s.where(~(s.isna() | (s <= 0)), 1000.0)


def test_chain2_protocol_fit():
    """golden/scripts/chain2.R: V simple, canonical + pca(3) + cov_ed prior, fit on random.

    """
    from mashlib.prior import ed
    from mashlib.model import get_log10bf, get_pairwise_sharing, get_significant_results
    from mashlib.vhat import estimate_null_correlation_simple
    c2 = _json(REF / "golden" / "chain2_values.json")
    V = estimate_null_correlation_simple(mash_set_data(*_prep("null"), zero_Bhat_Shat_reset=1000))
    md = mash_set_data(*_prep("strong"), V=V, zero_Bhat_Shat_reset=1000)
    comps = cov_canonical(md)
    comps.update(cov_pca(md, 3))
    U = dict(comps)
    U.update(ed.cov_ed(md, comps, accelerate=False))  # R parity: plain EM
    m1 = mash(md, U, outputlevel=1)
    w = get_estimated_pi(m1)
    assert list(w.index) == c2["w_names"]
    np.testing.assert_allclose(w.to_numpy(), c2["w"], atol=1e-4)
    mr = mash_set_data(*_prep("random"), V=V, zero_Bhat_Shat_reset=1000)
    fit = mash(mr, U, outputlevel=4)
    assert fit.loglik == pytest.approx(c2["fit_loglik"], rel=1e-6)
    np.testing.assert_allclose(get_estimated_pi(fit).to_numpy(), c2["fit_pi_cov"], atol=1e-4)
    for k in ("null", "alt", "v"):
        np.testing.assert_allclose(getattr(fit, f"{k}loglik" if k == "v" else f"{k}_loglik")[:3],
                                   c2[f"fit_{k}{'' if k == 'v' else '_'}loglik_1to3"], rtol=1e-6)
    assert list(fit.lm["loglik_matrix"].shape) == c2["lm_dim"]
    np.testing.assert_allclose(fit.lm["lfactors"][:3], c2["lfactors_1to3"], rtol=1e-10)
    post = mash_compute_posterior_matrices(fit, md, output_posterior_cov=True)
    for k, kk in (("pm", "PosteriorMean"), ("psd", "PosteriorSD"), ("lfsr", "lfsr")):
        np.testing.assert_allclose(post[kk].to_numpy()[:3], c2[k], atol=1e-4)
    assert list(post["PosteriorMean"].index[:1]) == ["mash::mash::var1"]
    sig = get_significant_results(post)
    assert set(sig + 1) == set(c2["sig"])
    # order: identical once lfsr is above optimiser noise (R's top-4 lfsr are < 1e-17)
    top = post["lfsr"].to_numpy().min(axis=1)[sig]
    solid = top > 1e-12
    assert list((sig + 1)[solid]) == [i for i in c2["sig"] if i in set((sig + 1)[solid])]
    ms = mash(md, g=fit.fitted_g, fixg=True)
    np.testing.assert_allclose(get_pairwise_sharing(ms).to_numpy(), c2["sharing"], atol=1e-12)
    np.testing.assert_allclose(get_log10bf(ms)[:3], c2["log10bf_1to3"], rtol=1e-6, atol=1e-5)


def test_posterior_kernel_contract_and_chunking(mashlib_log):
    """posterior_chunk on a block equals the chunked driver; effect-specific V equals common V."""
    from mashlib.model import expand_cov
    from mashlib.model import compute_posterior_matrices, posterior_chunk
    r = _json(SIM / "b2_mash_hetero_alpha1_canonical.json")
    d = _sim_data("b2", 1).subset(np.arange(300))
    g = _ref_g(r)
    xU = expand_cov(g.Ulist, g.grid)
    keep = np.flatnonzero(g.pi > 1e-10)
    Uk = np.stack([list(xU.values())[p] for p in keep])
    full = compute_posterior_matrices(d, Uk, g.pi[keep], output_posterior_cov=True)
    small = compute_posterior_matrices(d, Uk, g.pi[keep], output_posterior_cov=True,
                                       memory_bytes=20_000)
    blk = posterior_chunk(d.Bhat[100:150], d.Shat[100:150], d.Shat_alpha[100:150], d.V, Uk,
                          g.pi[keep], output_posterior_cov=True)
    Vs = np.repeat(d.V[None], 50, axis=0)
    blkV = posterior_chunk(d.Bhat[100:150], d.Shat[100:150], d.Shat_alpha[100:150], Vs, Uk,
                           g.pi[keep])
    for k in ("PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr", "PosteriorCov"):
        np.testing.assert_allclose(small[k], full[k], atol=1e-13, err_msg=k)
        np.testing.assert_allclose(blk[k], full[k][100:150], atol=1e-13, err_msg=k)
        if k != "PosteriorCov":
            np.testing.assert_allclose(blkV[k], full[k][100:150], atol=1e-12, err_msg=k)
    np.testing.assert_allclose(full["PosteriorMean"], np.array(r["PosteriorMean"])[:300], atol=1e-8)
    mash(_sim_data("a", 0).subset(np.arange(50)), cov_canonical(_sim_data("a", 0)),
         grid=[0.5, 1.0], verbose=True)
    out = mashlib_log()
    assert "Computing 50 x 21 likelihood matrix." in out
    assert "Fitting model with 21 mixture components." in out
    assert "Computing posterior matrices." in out


def test_underflowing_kept_components_give_finite_weights():
    """P6: mashr's pi * exp(lik) is 0/0 = NaN when every kept component underflows; the
    log-space weights stay finite (the row goes to its least-bad kept component)."""
    d = mash_set_data(np.array([[40.0, -40.0], [0.1, 0.2]]), 1.0)
    U = {"eq": np.ones((2, 2)), "id": np.eye(2)}
    g = FittedG(pi=np.array([0.5, 0.5, 0.0, 0.0, 0.0]), Ulist=U, grid=np.array([0.1, 100.0]))
    from mashlib.model import calc_relative_lik_matrix
    lm = calc_relative_lik_matrix(d, g.expanded())
    assert (np.exp(lm["loglik_matrix"][0, :2]) == 0).all()   # kept null, eq.1 underflow
    post = mash_compute_posterior_matrices(g, d)
    assert np.isfinite(post["PosteriorMean"].to_numpy()).all()
    assert np.isfinite(post["lfsr"].to_numpy()).all()
    assert mash_compute_loglik(g, d) < -700


def test_mash_callable_in_any_import_order():
    import mashlib as ml
    import mashlib.model.summaries  # noqa: F401  (imports the module that defines mash)
    d = mash_set_data(UNIT_B, UNIT_S)
    m = ml.mash(d, cov_canonical(d), grid=[0.5, 1, 2])
    assert m.loglik == pytest.approx(_json(REF / "golden" / "unit_values.json")["mash_small"]["loglik"],
                                     rel=1e-6)
