"""Parity and robustness tests for mashlib.eb.ebnm (R ebnm 1.1-42 ground truth).

Tolerances (tests/data/reference/MANIFEST.md): ebnm log-likelihood and posterior
means within 1e-4 absolute.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.eb.ebnm import (
    FLASH_OUTPUT,
    OUTPUT_ALL,
    PRIOR_FAMILIES,
    NormalMix,
    PointExponential,
    PointLaplace,
    PointNormal,
    ebnm,
    ebnm_normal,
    ebnm_point_exponential,
    ebnm_point_laplace,
    ebnm_point_normal,
)

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"
TOL = 1e-4


@pytest.fixture(scope="module")
def units():
    return json.loads((REF / "golden" / "unit_values.json").read_text())


@pytest.fixture(scope="module")
def vec():
    inp = pd.read_csv(REF / "ebnm_vec" / "input.csv")
    fits = json.loads((REF / "ebnm_vec" / "ebnm_fits.json").read_text())
    return inp, fits


# ------------------------------------------------------------------ golden unit values
def test_unit_point_normal(units):
    u = units["ebnm_point_normal"]
    r = ebnm_point_normal(u["x"], u["s"], output=OUTPUT_ALL)
    assert abs(r.log_likelihood - u["loglik"]) < TOL
    np.testing.assert_allclose(r.fitted_g.pi, u["pi"], atol=1e-4)
    np.testing.assert_allclose(r.fitted_g.sd, u["sd"][1], rtol=1e-4)
    P = r.posterior
    np.testing.assert_allclose(P["mean"], u["post_mean"], atol=TOL)
    np.testing.assert_allclose(P["sd"], u["post_sd"], atol=TOL)
    np.testing.assert_allclose(P["second_moment"], u["post_mean2"], atol=TOL)
    np.testing.assert_allclose(P["lfsr"], u["lfsr"], atol=TOL)


def test_unit_point_exponential(units):
    u = units["ebnm_point_exponential"]
    r = ebnm_point_exponential(u["x"], u["s"], output=OUTPUT_ALL)
    # R's nlm stops at pi0 = 6.9e-7 on the way to the pi0 = 0 boundary; ours is closer to it
    assert r.log_likelihood >= u["loglik"] - 1e-8
    assert abs(r.log_likelihood - u["loglik"]) < TOL
    assert r.fitted_g.pi0 < 1e-5
    np.testing.assert_allclose(r.fitted_g.scale, u["scale"][1], rtol=1e-5)
    P = r.posterior
    np.testing.assert_allclose(P["mean"], u["post_mean"], atol=TOL)
    np.testing.assert_allclose(P["sd"], u["post_sd"], atol=TOL)
    np.testing.assert_allclose(P["lfsr"], u["lfsr"], atol=TOL)


def test_unit_point_laplace(units):
    u, x = units["ebnm_point_laplace"], units["ebnm_point_normal"]
    r = ebnm_point_laplace(x["x"], x["s"])
    assert abs(r.log_likelihood - u["loglik"]) < TOL
    np.testing.assert_allclose(r.fitted_g.pi, u["pi"], atol=1e-4)
    np.testing.assert_allclose(r.fitted_g.scale, u["scale"][1], rtol=1e-4)
    np.testing.assert_allclose(r.posterior["mean"], u["post_mean"], atol=TOL)


def test_unit_normal(units):
    u, x = units["ebnm_normal"], units["ebnm_point_normal"]
    r = ebnm_normal(x["x"], x["s"])
    assert isinstance(r.fitted_g, NormalMix)
    assert abs(r.log_likelihood - u["loglik"]) < TOL
    np.testing.assert_allclose(r.fitted_g.sd[0], u["sd"], rtol=1e-5)
    np.testing.assert_allclose(r.posterior["mean"], u["post_mean"], atol=TOL)


# ------------------------------------------------------------------ ebnm_vec (n = 2000)
PARAMETRIC = {
    "point_normal": ebnm_point_normal,
    "point_laplace": ebnm_point_laplace,
    "point_exponential": ebnm_point_exponential,
    "normal": ebnm_normal,
}


@pytest.mark.parametrize("family", list(PARAMETRIC))
def test_vec_parametric(vec, family):
    inp, fits = vec
    ref = fits[family]
    x, s = inp[ref["data"]].to_numpy(), inp["s"].to_numpy()
    r = PARAMETRIC[family](x, s)
    assert abs(r.log_likelihood - ref["log_likelihood"]) < TOL
    np.testing.assert_allclose(r.posterior["mean"], ref["posterior_mean"], atol=TOL)
    np.testing.assert_allclose(r.posterior["sd"], ref["posterior_sd"], atol=TOL)
    g = ref["fitted_g"]
    np.testing.assert_allclose(np.atleast_1d(r.fitted_g.pi), g["pi"], atol=1e-4)
    scale = g["sd"] if "sd" in g else g["scale"]
    ours = np.atleast_1d(r.fitted_g.sd if hasattr(r.fitted_g, "sd") else r.fitted_g.scale)
    np.testing.assert_allclose(ours[-1], scale[-1], rtol=1e-4)


def test_dispatch_matches_family_function(vec):
    inp, fits = vec
    x, s = inp["x"].to_numpy(), inp["s"].to_numpy()
    a = ebnm(x, s, prior_family="point_laplace")
    b = ebnm_point_laplace(x, s)
    assert a.log_likelihood == b.log_likelihood
    assert abs(a.log_likelihood - fits["point_laplace"]["log_likelihood"]) < TOL


def test_unit_normal_scale_mixture(units):
    from mashlib.eb.ebnm import ebnm_normal_scale_mixture

    u, x = units["ebnm_normal_scale_mixture"], units["ebnm_point_normal"]
    r = ebnm_normal_scale_mixture(x["x"], x["s"])
    np.testing.assert_allclose(r.fitted_g.sd, u["sd"], rtol=1e-12)  # n = 10: multiplier clamped at 4
    np.testing.assert_allclose(r.fitted_g.pi, u["pi"], atol=1e-6)
    assert abs(r.log_likelihood - u["loglik"]) < TOL
    np.testing.assert_allclose(r.posterior["mean"], u["post_mean"], atol=TOL)


def test_vec_normal_scale_mixture(vec):
    from mashlib.eb.ebnm import ebnm_normal_scale_mixture

    inp, fits = vec
    ref = fits["normal_scale_mixture"]
    r = ebnm_normal_scale_mixture(inp["x"].to_numpy(), inp["s"].to_numpy())
    # the KL-based grid: same K and the same sds up to R's table precision
    np.testing.assert_allclose(r.fitted_g.sd, ref["fitted_g"]["sd"], rtol=1e-6)
    np.testing.assert_allclose(r.fitted_g.pi, ref["fitted_g"]["pi"], atol=1e-3)
    assert abs(r.log_likelihood - ref["log_likelihood"]) < TOL
    np.testing.assert_allclose(r.posterior["mean"], ref["posterior_mean"], atol=TOL)
    np.testing.assert_allclose(r.posterior["sd"], ref["posterior_sd"], atol=TOL)


def test_smn_grid_table_matches_definition():
    from mashlib.eb.ebnm._grids import _SMN_KL, _SMN_M, smn_kl, smn_mult

    for j in (0, 20, 99):
        assert smn_kl(_SMN_M[j]) == pytest.approx(_SMN_KL[j], rel=1e-8)
    assert smn_mult(1 / 2000) == pytest.approx(1.6166185673736573, rel=2e-7)  # R, ebnm_vec
    assert smn_mult(0.1) == 4.0 and smn_mult(1e-12) == 1.01


@pytest.mark.parametrize("family", ["unimodal_symmetric", "unimodal_nonnegative", "ash"])
def test_vec_unimodal(vec, family):
    E = importlib.import_module("mashlib.eb.ebnm")  # the module, not the same-named function

    inp, fits = vec
    ref = fits[family]
    g = ref["fitted_g"]
    r = getattr(E, f"ebnm_{family}")(inp[ref["data"]].to_numpy(), inp["s"].to_numpy(), output=OUTPUT_ALL)
    # ebnm's uniform KL grid (recomputed greedy sequences, interpolated between KL levels as ebnm)
    assert r.fitted_g.b.size == len(g["b"])
    np.testing.assert_allclose(r.fitted_g.b, g["b"], rtol=1e-5)
    np.testing.assert_allclose(r.fitted_g.a, g["a"], rtol=1e-5)
    np.testing.assert_allclose(r.fitted_g.pi, g["pi"], atol=1e-4)
    assert abs(r.log_likelihood - ref["log_likelihood"]) < TOL
    np.testing.assert_allclose(r.posterior["mean"], ref["posterior_mean"], atol=TOL)
    np.testing.assert_allclose(r.posterior["sd"], ref["posterior_sd"], atol=TOL)
    assert np.all((r.posterior["lfsr"] >= 0) & (r.posterior["lfsr"] <= 1))


def test_unimix_engine_with_r_grid_is_exact(vec):
    # with R's own grid the ash part (nullbiased prior, mixSQP, posteriors) matches to 1e-9
    from mashlib.eb.ebnm import UniMix, ebnm_unimodal_symmetric

    inp, fits = vec
    ref = fits["unimodal_symmetric"]
    g = ref["fitted_g"]
    r = ebnm_unimodal_symmetric(inp["x"].to_numpy(), inp["s"].to_numpy(), scale=np.array(g["b"]))
    assert abs(r.log_likelihood - ref["log_likelihood"]) < 1e-8
    np.testing.assert_allclose(r.fitted_g.pi, g["pi"], atol=1e-8)
    np.testing.assert_allclose(r.posterior["mean"], ref["posterior_mean"], atol=1e-9)
    np.testing.assert_allclose(r.posterior["sd"], ref["posterior_sd"], atol=1e-9)
    r2 = ebnm_unimodal_symmetric(inp["x"].to_numpy(), inp["s"].to_numpy(), g_init=r.fitted_g, fix_g=True)
    assert r2.log_likelihood == pytest.approx(r.log_likelihood, abs=1e-10)
    assert isinstance(r2.fitted_g, UniMix)


def test_unimodal_and_nonpositive_shapes(vec):
    from mashlib.eb.ebnm import ebnm_unimodal, ebnm_unimodal_nonnegative, ebnm_unimodal_nonpositive

    inp, _ = vec
    x, s = inp["x_abs"].to_numpy()[:500], inp["s"].to_numpy()[:500]
    rp = ebnm_unimodal_nonnegative(x, s, output=OUTPUT_ALL)
    rn = ebnm_unimodal_nonpositive(-x, s, output=OUTPUT_ALL)
    # mirror images
    assert rn.log_likelihood == pytest.approx(rp.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(rn.posterior["mean"], -rp.posterior["mean"], atol=1e-8)
    assert np.all(rp.posterior["mean"] >= 0)
    ru = ebnm_unimodal(x, s)
    # the unimodal family contains the non-negative one
    assert ru.log_likelihood >= rp.log_likelihood - 1e-6
    assert ru.fitted_g.a.size == 2 * rp.fitted_g.a.size - 1


# ------------------------------------------------------------------ g_init / fix_g / output
@pytest.mark.parametrize("fn", list(PARAMETRIC.values()))
def test_fix_g_reproduces_fit(vec, fn):
    inp, _ = vec
    x, s = inp["x_abs"].to_numpy(), inp["s"].to_numpy()
    r = fn(x, s, output=OUTPUT_ALL)
    r2 = fn(x, s, g_init=r.fitted_g, fix_g=True, output=OUTPUT_ALL)
    assert r2.fitted_g == r.fitted_g if not isinstance(r.fitted_g, NormalMix) else True
    assert r2.log_likelihood == pytest.approx(r.log_likelihood, abs=1e-10)
    np.testing.assert_allclose(r2.posterior["mean"], r.posterior["mean"], atol=1e-12)
    # warm start from the optimum stays there
    r3 = fn(x, s, g_init=r.fitted_g)
    assert r3.log_likelihood == pytest.approx(r.log_likelihood, abs=1e-6)


def test_fixed_scale_and_mode():
    rng = np.random.default_rng(1)
    n = 1000
    s = rng.normal(1, 0.1, n)
    theta = np.concatenate([rng.normal(0, 10, n // 2), np.zeros(n // 2)])
    x = theta + rng.normal(0, 1, n) * s
    r = ebnm_point_normal(x, s, scale=10)
    assert r.fitted_g.sd == 10.0
    assert abs(r.fitted_g.pi0 - 0.5) < 0.1
    r = ebnm_point_normal(x + 3.0, s, mode="estimate")
    assert abs(r.fitted_g.mean - 3.0) < 0.2
    assert "lfsr" not in (r.posterior.columns if r.posterior is not None else [])
    # a fixed mode shifts everything: loglik is invariant under x -> x + c, mode -> mode + c
    r0 = ebnm_point_normal(x, s)
    r1 = ebnm_point_normal(x + 3.0, s, mode=3.0)
    assert r1.log_likelihood == pytest.approx(r0.log_likelihood, abs=1e-7)
    np.testing.assert_allclose(r1.posterior["mean"] - 3.0, r0.posterior["mean"], atol=1e-6)


def test_flash_output_fast_path(vec):
    inp, fits = vec
    x, s = inp["x"].to_numpy(), inp["s"].to_numpy()
    r = ebnm_point_normal(x, s, output=FLASH_OUTPUT)
    assert list(r.posterior.columns) == ["mean", "second_moment"]
    assert r.data is None
    np.testing.assert_allclose(r.posterior_mean, fits["point_normal"]["posterior_mean"], atol=TOL)
    sd = np.sqrt(r.posterior_second_moment - r.posterior_mean ** 2)
    np.testing.assert_allclose(sd, fits["point_normal"]["posterior_sd"], atol=TOL)


# ------------------------------------------------------------------ s = inf, s = 0, boundaries
@pytest.mark.parametrize("fn", list(PARAMETRIC.values()))
def test_infinite_s_is_missing(vec, fn):
    inp, _ = vec
    x, s = inp["x_abs"].to_numpy()[:300].copy(), inp["s"].to_numpy()[:300].copy()
    ref = fn(x[:250], s[:250], output=OUTPUT_ALL)
    x[250:] = 0.0
    s[250:] = np.inf
    r = fn(x, s, output=OUTPUT_ALL)
    assert r.log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-8)
    P = r.posterior
    np.testing.assert_allclose(P["mean"][:250], ref.posterior["mean"], atol=1e-8)
    # the missing ones get the prior mean and second moment
    samp = r.posterior_sampler(20000, seed=3)
    assert samp.shape == (20000, 300)
    assert np.all(np.isfinite(P.to_numpy()))
    assert np.allclose(P["mean"][250:], P["mean"][299])
    assert abs(samp[:, 250:].mean() - P["mean"][299]) < 0.05
    assert abs((samp[:, 250:] ** 2).mean() - P["second_moment"][299]) < 0.1 * P["second_moment"][299] + 0.01


def test_infinite_s_prior_values():
    g = PointNormal(pi0=0.25, mean=0.0, sd=2.0)
    r = ebnm_point_normal([1.0, 5.0], [np.inf, np.inf], g_init=g, fix_g=True, output=OUTPUT_ALL)
    np.testing.assert_allclose(r.posterior["mean"], 0.0)
    np.testing.assert_allclose(r.posterior["second_moment"], 0.75 * 4.0)
    np.testing.assert_allclose(r.posterior["lfsr"], 0.25 + 0.75 * 0.5)
    assert r.log_likelihood == 0.0
    g = PointExponential(pi0=0.25, mode=0.0, scale=2.0)
    r = ebnm_point_exponential([1.0], [np.inf], g_init=g, fix_g=True, output=OUTPUT_ALL)
    np.testing.assert_allclose(r.posterior["mean"], 0.75 * 2.0)
    np.testing.assert_allclose(r.posterior["second_moment"], 0.75 * 2 * 4.0)
    g = PointLaplace(pi0=0.25, mean=0.0, scale=2.0)
    r = ebnm_point_laplace([1.0], [np.inf], g_init=g, fix_g=True, output=OUTPUT_ALL)
    np.testing.assert_allclose(r.posterior["second_moment"], 0.75 * 2 * 4.0)


@pytest.mark.parametrize("fn", list(PARAMETRIC.values()))
def test_zero_s_is_replaced(fn):
    x = np.array([0.0, 1.5, -0.3, 2.0, 0.0, 4.0, 0.7, 0.1])
    s = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    with pytest.warns(RuntimeWarning, match="standard errors equal to 0"):
        r = fn(np.abs(x), s, output=OUTPUT_ALL)
    assert np.isfinite(r.log_likelihood)
    P = r.posterior
    assert np.all(np.isfinite(P.to_numpy()))
    # an observation with (almost) zero standard error is its own posterior mean
    assert P["mean"][6] == pytest.approx(0.7, abs=1e-6)
    assert P["sd"][6] < 1e-6


@pytest.mark.parametrize("fn", [ebnm_point_normal, ebnm_point_laplace, ebnm_point_exponential])
def test_all_zero_x_gives_pi0_one(fn):
    x = np.zeros(50)
    r = fn(x, 1.0, output=OUTPUT_ALL)
    null = -50 * 0.5 * np.log(2 * np.pi)
    assert r.log_likelihood == pytest.approx(null, abs=1e-6)
    assert r.fitted_g.pi0 > 0.99
    np.testing.assert_allclose(r.posterior["mean"], 0.0, atol=1e-3)


def test_pi0_zero_boundary():
    # every observation far from zero: pi0 -> 0, scale finite, no optimiser failure
    rng = np.random.default_rng(5)
    x = rng.normal(0, 5, 400)
    x = x[np.abs(x) > 1]
    r = ebnm_point_normal(x, 1.0)
    rn = ebnm_normal(x, 1.0)
    assert r.fitted_g.pi0 < 1e-4
    assert r.log_likelihood >= rn.log_likelihood - 1e-8
    assert r.log_likelihood == pytest.approx(rn.log_likelihood, abs=1e-4)


def test_extreme_values_are_finite():
    x = np.array([1e3, -50.0, 0.0, 30.0, 1e-8, 2.0])
    s = np.array([1.0, 1e-3, 1.0, 0.5, 1e3, 1.0])
    for fn in (ebnm_point_normal, ebnm_point_laplace, ebnm_normal):
        r = fn(x, s, output=OUTPUT_ALL)
        assert np.isfinite(r.log_likelihood)
        assert np.all(np.isfinite(r.posterior.to_numpy()))
    r = ebnm_point_exponential(np.abs(x), s, output=OUTPUT_ALL)
    assert np.all(np.isfinite(r.posterior.to_numpy()))
    assert np.all(r.posterior["mean"] >= 0)


# ------------------------------------------------------------------ sampler
@pytest.mark.parametrize("fn", list(PARAMETRIC.values()))
def test_sampler_moments(vec, fn):
    inp, _ = vec
    x, s = inp["x_abs"].to_numpy()[:40], inp["s"].to_numpy()[:40]
    r = fn(x, s, output=OUTPUT_ALL)
    samp = r.posterior_sampler(20000, seed=1)
    assert samp.shape == (20000, 40)
    np.testing.assert_allclose(samp.mean(0), r.posterior["mean"], atol=0.05)
    np.testing.assert_allclose((samp ** 2).mean(0), r.posterior["second_moment"], atol=0.1, rtol=0.05)


# ------------------------------------------------------------------ bad input
def test_bad_input():
    with pytest.raises(MashInputError, match=r"s\[1\].*non-negative"):
        ebnm_point_normal([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(MashInputError, match=r"x\[0\].*not finite"):
        ebnm_point_normal([np.nan, 2.0], 1.0)
    with pytest.raises(MashInputError, match=r"s\[0\]"):
        ebnm_point_normal([1.0, 2.0], [np.nan, 1.0])
    with pytest.raises(MashInputError, match="length 3"):
        ebnm_point_normal([1.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(MashInputError, match="point_normal.*ash"):
        ebnm([1.0, 2.0], 1.0, prior_family="point_gamma")
    with pytest.raises(MashInputError, match="g_init"):
        ebnm_point_normal([1.0, 2.0], 1.0, fix_g=True)
    with pytest.raises(MashInputError, match="output"):
        ebnm_point_normal([1.0, 2.0], 1.0, output=("posterior_mean", "nonsense"))
    with pytest.raises(MashInputError, match="g_init"):
        ebnm_point_exponential([1.0, 2.0], 1.0, g_init=PointNormal(0.5, 0.0, 1.0))
    for fam in PRIOR_FAMILIES:
        assert fam in str(pytest.raises(MashInputError, ebnm, [1.0], 1.0, prior_family="nope").value)


def test_package_exports_and_callable_module():
    import mashlib

    x = np.array([1.0, -2.0, 0.3, 4.0])
    assert mashlib.ebnm_ash is not None and mashlib.ebnm_unimodal is not None
    # mashlib.ebnm is the function even after the family namespace was imported
    r = mashlib.ebnm(x, 1.0, prior_family="normal")
    assert r.log_likelihood == pytest.approx(ebnm_normal(x, 1.0).log_likelihood, abs=1e-12)


# ------------------------------------------------------------------ nonparametric robustness
def _np_fns():
    E = importlib.import_module("mashlib.eb.ebnm")  # the module, not the same-named function

    return [E.ebnm_normal_scale_mixture, E.ebnm_unimodal, E.ebnm_unimodal_symmetric,
            E.ebnm_unimodal_nonnegative, E.ebnm_ash]


@pytest.mark.parametrize("k", range(5))
def test_nonparametric_infinite_s_and_sampler(vec, k):
    fn = _np_fns()[k]
    inp, _ = vec
    x, s = inp["x_abs"].to_numpy()[:200].copy(), inp["s"].to_numpy()[:200].copy()
    ref = fn(x[:180], s[:180], output=OUTPUT_ALL)
    x[180:], s[180:] = 0.0, np.inf
    # the same grid: pass the fitted prior's components back (the default grid depends on n)
    r = fn(x, s, g_init=ref.fitted_g, fix_g=True, output=OUTPUT_ALL)
    assert r.log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-9)
    P = r.posterior
    np.testing.assert_allclose(P["mean"][:180], ref.posterior["mean"], atol=1e-10)
    assert np.all(np.isfinite(P.to_numpy()))
    assert np.allclose(P["mean"][180:], P["mean"][199])
    samp = r.posterior_sampler(4000, seed=2)
    assert samp.shape == (4000, 200)
    np.testing.assert_allclose(samp.mean(0), P["mean"], atol=0.12)
    np.testing.assert_allclose((samp ** 2).mean(0), P["second_moment"], rtol=0.1, atol=0.1)
    # the fit itself also accepts s = inf
    r2 = fn(x, s)
    assert np.isfinite(r2.log_likelihood)


@pytest.mark.parametrize("k", range(5))
def test_nonparametric_zero_x_and_zero_s(k):
    fn = _np_fns()[k]
    r = fn(np.zeros(30), 1.0, output=OUTPUT_ALL)
    assert r.log_likelihood == pytest.approx(-30 * 0.5 * np.log(2 * np.pi), abs=1e-6)
    np.testing.assert_allclose(r.posterior["mean"], 0.0, atol=1e-6)
    x = np.array([0.0, 1.5, 0.3, 2.0, 0.0, 4.0, 0.7, 0.1])
    s = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    with pytest.warns(RuntimeWarning, match="standard errors equal to 0"):
        r = fn(x, s, output=OUTPUT_ALL)
    assert np.all(np.isfinite(r.posterior.to_numpy()))
    assert r.posterior["mean"][6] == pytest.approx(0.7, abs=1e-4)


def test_nonparametric_bad_input():
    E = importlib.import_module("mashlib.eb.ebnm")  # the module, not the same-named function

    with pytest.raises(MashInputError, match="g_init"):
        E.ebnm_unimodal([1.0, 2.0], 1.0, g_init=PointLaplace(0.5, 0.0, 1.0))
    with pytest.raises(MashInputError, match="g_init"):
        E.ebnm_normal_scale_mixture([1.0, 2.0], 1.0, g_init=PointLaplace(0.5, 0.0, 1.0))
    with pytest.raises(MashInputError, match="mixcompdist"):
        E.ebnm_ash([1.0, 2.0], 1.0, mixcompdist="gamma")
    with pytest.raises(MashInputError, match="unknown arguments"):
        E.ebnm_unimodal([1.0, 2.0], 1.0, gridmul=2)
    with pytest.raises(MashInputError, match=r"s\[0\]"):
        E.ebnm_unimodal_symmetric([1.0, 2.0], [-1.0, 1.0])


def test_priors_shared_with_ash():
    from mashlib.eb import ash
    from mashlib.eb.ebnm import ebnm_ash

    x = np.array([1.0, 2.0, -3.0, 0.5, 4.0, 0.1, -0.7, 2.5])
    a = ash(x, np.ones(8))
    r = ebnm_ash(x, 1.0, g_init=a.fitted_g, fix_g=True)
    assert r.fitted_g is a.fitted_g
    assert r.log_likelihood == pytest.approx(a.loglik, abs=1e-10)


def test_point_normal_equals_ash_with_its_prior():
    # ebnm's own test: ebnm_ash(g_init = point-normal fit, fix_g) reproduces the point-normal posterior
    from mashlib.eb.ebnm import ebnm_ash

    rng = np.random.default_rng(1)
    n = 1000
    s = rng.normal(1, 0.1, n)
    x = np.concatenate([rng.normal(0, np.sqrt(10 + s[: n // 2])), rng.normal(0, np.sqrt(s[n // 2:]))])
    pn = ebnm_point_normal(x, s, output=OUTPUT_ALL)
    a = ebnm_ash(x, s, g_init=pn.fitted_g.to_normalmix(), fix_g=True, method="shrink", output=OUTPUT_ALL)
    assert a.log_likelihood == pytest.approx(pn.log_likelihood, abs=1e-6)
    for col in ("mean", "sd", "lfsr"):
        np.testing.assert_allclose(a.posterior[col], pn.posterior[col], atol=1e-6)


@pytest.mark.parametrize("fam", ["PointNormalFamily", "NormalFamily", "PointLaplaceFamily",
                                 "PointExponentialFamily"])
def test_analytic_gradients(fam):
    from mashlib.eb.ebnm import _pfamilies as F

    f = getattr(F, fam)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 2, 40), [0.0, 1e-3, 25.0, -8.0]])
    s = np.concatenate([rng.uniform(0.3, 2, 40), [1e-2, 1.0, 0.5, 3.0]])
    if "Exponential" in fam:
        x = np.abs(x)
    for theta in ([0.3, -0.2, 0.1], [-3.0, 1.0, -0.4], [2.0, -2.5, 0.0]):
        th = np.array(theta)
        if fam == "NormalFamily":
            th[0] = -np.inf
        _, d, _ = f.loglik(th, x, s)
        g = d.sum(axis=1)
        for k in range(3):
            if not np.isfinite(th[k]):
                continue
            h = 1e-6
            tp, tm = th.copy(), th.copy()
            tp[k] += h
            tm[k] -= h
            num = (f.loglik(tp, x, s, grad=False)[0].sum() - f.loglik(tm, x, s, grad=False)[0].sum()) / (2 * h)
            assert g[k] == pytest.approx(num, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("fam", ["PointNormalFamily", "NormalFamily", "PointExponentialFamily",
                                 "PointLaplaceFamily"])
def test_analytic_hessians(fam):
    # the Newton solver's analytic Hessians against central differences of the gradient
    from mashlib.eb.ebnm import _pfamilies as F

    f = getattr(F, fam)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 2, 40), [0.0, 1e-3, 25.0, -8.0]])
    s = np.concatenate([rng.uniform(0.3, 2, 40), [1e-2, 1.0, 0.5, 3.0]])
    if "Exponential" in fam:
        x = np.abs(x)
    for theta in ([0.3, -0.2, 0.1], [-3.0, 1.0, -0.4], [2.0, -2.5, 0.0], [-np.inf, 0.4, 0.2]):
        th = np.array(theta)
        if fam == "NormalFamily":
            th[0] = -np.inf
        _, _, r = f.loglik(th, x, s)
        H = f.hessian(th, x, s, r)
        np.testing.assert_array_equal(H, H.T)
        for k in range(3):
            if not np.isfinite(th[k]):
                continue
            h = 1e-6
            tp, tm = th.copy(), th.copy()
            tp[k] += h
            tm[k] -= h
            num = (f.loglik(tp, x, s)[1].sum(axis=1) - f.loglik(tm, x, s)[1].sum(axis=1)) / (2 * h)
            free = np.isfinite(th)
            np.testing.assert_allclose(H[free, k], num[free], rtol=1e-5, atol=1e-5)
        # the loglik calls above moved any cached intermediate to other points
        np.testing.assert_allclose(f.hessian(th, x, s, r), H, rtol=1e-12, atol=1e-12)


def test_mix_fast_form_matches_logaddexp():
    from scipy import special as sc

    from mashlib.eb.ebnm._pfamilies import _mix

    rng = np.random.default_rng(2)
    lN0, lg = rng.normal(-3, 10, 2000), rng.normal(-3, 10, 2000)
    for alpha in (-np.inf, -40.0, -3.0, 0.0, 5.0, 40.0, np.inf):
        A, B = sc.log_expit(alpha) + lN0, sc.log_expit(-alpha) + lg
        ell_ref = np.logaddexp(A, B)
        with np.errstate(invalid="ignore"):
            r_ref = np.nan_to_num(np.exp(A - ell_ref), nan=1.0 if alpha > 0 else 0.0)
        ell, r, pi0 = _mix(alpha, lN0, lg)
        np.testing.assert_allclose(ell, ell_ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-14)
        assert pi0 == sc.expit(alpha)
    # overflow guard: exp(lN0 - lg) would overflow, the logaddexp form is used
    ell, r, _ = _mix(0.0, np.array([0.0, -1.0]), np.array([-800.0, -1.0]))
    np.testing.assert_allclose(ell, [np.log(0.5), -1.0], rtol=1e-14)
    np.testing.assert_allclose(r, [1.0, 0.5], rtol=1e-14)


def test_pi0_zero_boundary_stops_early(monkeypatch):
    # issue #3: when the optimum is pi0 = 0 the interior Newton used to creep towards
    # logit(pi0) = -inf (hundreds of evaluations, then L-BFGS-B); it now stops once the
    # slab-only fit meets the boundary's KKT condition. Same answer as ebnm_normal.
    from mashlib.eb.ebnm import _parametric as P
    from mashlib.eb.ebnm._pfamilies import PointNormalFamily

    rng = np.random.default_rng(11)
    x = rng.normal(0, 0.15, 1500) + rng.normal(0, 0.025, 1500)
    calls = []
    real = PointNormalFamily.loglik
    monkeypatch.setattr(PointNormalFamily, "loglik",
                        staticmethod(lambda *a, **k: calls.append(1) or real(*a, **k)))
    called_minimize = []
    monkeypatch.setattr(P.optimize, "minimize", lambda *a, **k: called_minimize.append(1) or None)
    r = ebnm_point_normal(x, 0.025, output=FLASH_OUTPUT)
    monkeypatch.undo()
    rn = ebnm_normal(x, 0.025)
    assert r.fitted_g.pi0 == 0.0
    assert r.log_likelihood == pytest.approx(rn.log_likelihood, abs=1e-8)
    assert r.fitted_g.sd == pytest.approx(rn.fitted_g.sd[0], rel=1e-7)
    assert len(calls) < 60 and not called_minimize


@pytest.mark.parametrize("fn", [ebnm_point_laplace, ebnm_point_exponential])
def test_mode_estimate(fn):
    rng = np.random.default_rng(3)
    n = 2000
    slab = rng.exponential(2.0, n) if fn is ebnm_point_exponential else rng.laplace(0.0, 2.0, n)
    theta = np.where(rng.random(n) < 0.5, 0.0, slab)
    x = 5.0 + theta + rng.normal(0, 1, n)
    r = fn(x, 1.0, mode="estimate")
    est = r.fitted_g.mode if hasattr(r.fitted_g, "mode") else r.fitted_g.mean
    assert abs(est - 5.0) < 0.3
    # at least as good as the fit with the true mode fixed
    assert r.log_likelihood >= fn(x, 1.0, mode=5.0).log_likelihood - 1e-6


def test_unimix_grid_matches_r_flash_grids():
    # flashier gtex case iii (ebnm_unimodal_symmetric): R's grids for n = 1000 (loadings) and
    # n = 44 (factors, KL target 1/44 > 1e-2 is clamped to the 1e-2 sequence); compare b_k / b_1
    from mashlib.eb.ebnm._grids import scale_unimix

    ref = json.loads((REF / "gtex_flash" / "flash_iii.json").read_text())
    for key, n in (("L_ghat", 1000), ("F_ghat", 44)):
        for g in ref[key]:
            b = np.array(g["b"])
            x = np.zeros(n)
            x[0] = 0.5
            smin = b[1] / scale_unimix(x, np.ones(n))[1]  # R's smallest s in that call
            x[0] = b[-1] * 0.9999  # so that the grid ends at R's last point
            ours = scale_unimix(x, np.full(n, smin))
            assert ours.size == b.size
            np.testing.assert_allclose(ours, b, rtol=2e-5)


def test_smn_grid_n1000_flash():
    # R's multiplier for n = 1000 (flashier gtex case ii); our table interpolation differs by 1.4e-4
    # relative (see ebnm_grids: R's table nodes are not known), which moves the fit only slightly
    from mashlib.eb.ebnm._grids import smn_mult

    ref = json.loads((REF / "gtex_flash" / "flash_ii.json").read_text())
    sd = np.array(ref["L_ghat"][0]["sd"])
    m_r = sd[2] ** 2 / sd[1] ** 2 - 1
    assert smn_mult(1e-3) == pytest.approx(m_r, rel=2e-4)
    sdF = np.array(ref["F_ghat"][0]["sd"])
    assert smn_mult(1 / 44) == pytest.approx(sdF[2] ** 2 / sdF[1] ** 2 - 1, rel=1e-12)  # clamp at 4
