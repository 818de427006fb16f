"""ash with a Student-t likelihood (``df``) and ``mixcompdist="halfnormal"`` against ashr 2.2-65 (wave2/ash_t)."""
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import mashlib as ml
from mashlib.eb.mixdist_t import t_unimix_comp_posterior, t_unimix_loglik_matrix

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)
REF = pathlib.Path(__file__).parents[1] / "data" / "reference" / "wave2" / "ash_t"
TOL = 1e-4  # wave2 README: loglik, posterior means, pi, PosteriorSD, lfsr 1e-4 absolute


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "ash_t.json").read_text())


@pytest.fixture(scope="module")
def xs():
    d = pd.read_csv(REF / "input.csv")
    return d["x"].to_numpy(), d["s"].to_numpy()


def _num(v):
    return np.array([float(z) for z in v])


def _check(a, r, cols):
    assert a.loglik == pytest.approx(r["loglik"], abs=TOL)
    assert a.logLR == pytest.approx(r["logLR"], abs=TOL)
    np.testing.assert_allclose(a.fitted_g.pi, _num(r["fitted_g"]["pi"]), atol=TOL)
    for c in cols:
        np.testing.assert_allclose(a.result[c], r[c], atol=TOL, err_msg=c)


ALL = ["PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb", "svalue", "qvalue"]


def test_t_likelihood_uniform_default(ref, xs):
    r = ref["t_df5_default"]
    a = ml.ash(*xs, df=5)
    np.testing.assert_allclose(a.fitted_g.a, _num(r["fitted_g"]["a"]), rtol=1e-12)
    np.testing.assert_allclose(a.fitted_g.b, _num(r["fitted_g"]["b"]), rtol=1e-12)
    _check(a, r, ALL)
    # "uniform" is ash's default: the same call
    assert ref["identical_default_vs_uniform"]
    b = ml.ash(*xs, df=5, mixcompdist="uniform")
    np.testing.assert_array_equal(a.result["PosteriorMean"], b.result["PosteriorMean"])


def test_t_likelihood_halfuniform(ref, xs):
    r = ref["t_df5_halfuniform"]
    a = ml.ash(*xs, df=5, mixcompdist="halfuniform")
    np.testing.assert_allclose(a.fitted_g.a, _num(r["fitted_g"]["a"]), rtol=1e-12)
    np.testing.assert_allclose(a.fitted_g.b, _num(r["fitted_g"]["b"]), rtol=1e-12)
    _check(a, r, ALL)


def test_halfnormal(ref, xs):
    r = ref["normal_halfnormal"]
    a = ml.ash(*xs, mixcompdist="halfnormal")
    g = r["fitted_g"]
    assert isinstance(a.fitted_g, ml.TNormalMix)
    np.testing.assert_allclose(a.fitted_g.sd, _num(g["sd"]), rtol=1e-12)
    np.testing.assert_array_equal(a.fitted_g.a, _num(g["a"]))
    np.testing.assert_array_equal(a.fitted_g.b, _num(g["b"]))
    # PosteriorSD left out: ashr 2.2-65's second moments of tnormalmix posteriors are wrong
    # (see test_halfnormal_posterior_sd_by_quadrature)
    _check(a, r, [c for c in ALL if c != "PosteriorSD"])


def _quadrature_posterior(x, s, g):
    """Posterior mean and sd of theta given x by brute-force quadrature under R's fitted tnormalmix."""
    pi, sd = _num(g["pi"]), _num(g["sd"])
    lo, hi = _num(g["a"]), _num(g["b"])
    w0 = pi[0] * stats.norm.pdf(x, 0, s)  # the point mass at 0
    z, m1, m2 = w0, 0.0, 0.0
    for side in (-1, 1):  # each one-sided component on its own half line (no kink inside a grid)
        th = side * np.linspace(0, 40, 400001)
        dens = np.zeros_like(th)
        for k in np.flatnonzero((pi > 0) & (sd > 0) & ((hi > 0) if side > 0 else (lo < 0))):
            dens += pi[k] * 2.0 * np.exp(-0.5 * (th / sd[k]) ** 2) / (sd[k] * np.sqrt(2 * np.pi))  # half-normal
        f = dens * stats.norm.pdf(x, th, s) * side
        z += integrate.trapezoid(f, th)
        m1 += integrate.trapezoid(th * f, th)
        m2 += integrate.trapezoid(th * th * f, th)
    m1, m2 = m1 / z, m2 / z
    return m1, np.sqrt(m2 - m1 * m1)


def test_halfnormal_posterior_sd_by_quadrature(ref, xs):
    # R IS WRONG HERE: ashr 2.2-65 returns PosteriorSD values for mixcompdist = "halfnormal" that
    # are not the posterior sd of its own fitted g: row 944 (x = 5.983, s = 0.987) gets 0.2195,
    # but every component posterior there has sd >= 0.3 (likelihood sd 0.987, prior sd >= 1.26)
    # and direct quadrature of g(theta) N(x; theta, s^2) gives 0.93964. 1474 of 1500 rows
    # differ by more than 1e-4; the posterior MEANS agree with R to 3e-9, so the fit is the same.
    r = ref["normal_halfnormal"]
    x, s = xs
    a = ml.ash(x, s, mixcompdist="halfnormal")
    for i in (0, 1, 13, 943):
        m1, sd1 = _quadrature_posterior(x[i], s[i], r["fitted_g"])
        assert a.result["PosteriorMean"][i] == pytest.approx(m1, abs=1e-6)
        assert a.result["PosteriorSD"][i] == pytest.approx(sd1, abs=1e-6)
    assert abs(r["PosteriorSD"][943] - a.result["PosteriorSD"][943]) > 0.7


@pytest.mark.parametrize("df", [1.0, 1.5, 2.0, 5.0, 30.0])
def test_t_component_moments_by_quadrature(df):
    x = np.array([-3.0, 0.4, 2.5])
    s = np.array([0.5, 1.3, 0.8])
    a = np.array([-2.0, 0.0, 0.0])
    b = np.array([0.0, 1.5, 0.0])
    pm, p2, cdf = t_unimix_comp_posterior(x, s, a, b, df)
    ll = t_unimix_loglik_matrix(x, s, a, b, df)
    for i in range(3):
        for k in range(2):  # the third component is the point mass at 0
            f = lambda t: stats.t.pdf((x[i] - t) / s[i], df) / s[i]  # noqa: E731
            z = integrate.quad(f, a[k], b[k], epsabs=1e-13)[0]
            assert ll[i, k] == pytest.approx(np.log(z / (b[k] - a[k])), abs=1e-9)
            m1 = integrate.quad(lambda t: t * f(t), a[k], b[k], epsabs=1e-13)[0] / z
            m2 = integrate.quad(lambda t: t * t * f(t), a[k], b[k], epsabs=1e-13)[0] / z
            c0 = integrate.quad(f, a[k], min(0.0, b[k]), epsabs=1e-13)[0] / z if a[k] < 0 else 0.0
            assert pm[i, k] == pytest.approx(m1, abs=1e-8)
            assert p2[i, k] == pytest.approx(m2, abs=1e-8)
            assert cdf[i, k] == pytest.approx(c0, abs=1e-8)
        assert pm[i, 2] == 0 and p2[i, 2] == 0
        assert ll[i, 2] == pytest.approx(stats.t.logpdf(x[i] / s[i], df) - np.log(s[i]), abs=1e-12)


def test_errors(ref, xs):
    x, s = xs
    with pytest.raises(ml.MashInputError, match="truncated normal mixture for non-normal likelihood"):
        ml.ash(x, s, df=5, mixcompdist="halfnormal")
    assert "truncated normal mixture for non-normal likelihood" in ref["t_df5_halfnormal"]["error"]
    with pytest.raises(ml.MashInputError, match="Normal mixture for student-t likelihood"):
        ml.ash(x, s, df=5, mixcompdist="normal")
    assert "Normal mixture for student-t likelihood" in ref["t_df5_normal"]["error"]
    for bad in (0, -1, np.nan):
        with pytest.raises(ml.MashInputError, match="df="):
            ml.ash(x, s, df=bad)
    with pytest.raises(ml.MashInputError, match="sebetahat"):
        ml.ash(x, -s, df=5)
    with pytest.raises(ml.MashInputError, match="mixcompdist"):
        ml.ash(x, s, mixcompdist="laplace")
