"""Accessors (mashr test_getfunctions.R, map §2.2 Summaries)."""
import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.model import cov_canonical, cov_udi
from mashlib.model import mash_set_data
from mashlib.model import calc_lik_matrix
from mashlib.model import expand_cov
from mashlib.model import mash
from mashlib.model import (get_estimated_pi, get_lfdr, get_lfsr, get_log10bf, get_loglik,
                               get_n_significant_conditions, get_np, get_pairwise_sharing,
                               get_pm, get_psd, get_significant_results)

B = np.array([[1.0, 2, 3], [2, 4, 6]])
S = np.array([[1.0, 1, 1], [2, 2, 2]])


@pytest.fixture(scope="module")
def m():
    d = mash_set_data(B, S)
    return mash(d, cov_canonical(d), grid=[0.5, 1, 2], output_lfdr=True)


def test_accessor_shapes(m):
    for f in (get_lfsr, get_lfdr, get_pm, get_psd, get_np):
        assert f(m).shape == (2, 3)
    assert get_log10bf(m).shape == (2,)
    assert get_loglik(m) == m.loglik
    K = 8
    assert len(get_estimated_pi(m, "all")) == 3 * K + 1
    assert len(get_estimated_pi(m, "cov")) == K + 1
    assert list(get_estimated_pi(m, "grid").index) == ["null", "1", "2", "3"]
    assert get_estimated_pi(m, "cov").sum() == pytest.approx(1.0)
    pi = m.fitted_g.pi
    # cov: sum over grid of each covariance (K x L, R column-major layout)
    assert get_estimated_pi(m, "cov")["equal_effects"] == pytest.approx(pi[5] + pi[13] + pi[21])
    assert get_estimated_pi(m, "grid")["3"] == pytest.approx(pi[17:25].sum())
    with pytest.raises(MashInputError, match="dimension"):
        get_estimated_pi(m, "bogus")


def test_no_pointmass_and_missing_lfdr():
    d = mash_set_data(B, S)
    m2 = mash(d, cov_canonical(d), grid=[0.5, 1, 2], usepointmass=False)
    assert get_log10bf(m2) is None
    assert len(get_estimated_pi(m2, "cov")) == 8 and len(get_estimated_pi(m2, "grid")) == 3
    with pytest.raises(MashInputError, match="output_lfdr"):
        get_lfdr(m2)


def test_log10bf_udi():
    d = mash_set_data(B, S)
    U = cov_udi(d, ["I", "D", "U"])
    m = mash(d, U, grid=[1.0], normalizeU=False)
    L = calc_lik_matrix(d, expand_cov(U, [1.0]), log=True)
    np.testing.assert_allclose(get_log10bf(m), (L[:, 1] - L[:, 0]) / np.log(10), rtol=1e-10)


def _fake(lfsr, pm):
    cols = ["a", "b", "c"]
    return {"lfsr": pd.DataFrame(lfsr, columns=cols), "PosteriorMean": pd.DataFrame(pm, columns=cols)}


LFSR = np.array([[0.2, 0.01, 0.5], [0.001, 0.3, 0.04], [0.5, 0.6, 0.7], [0.03, 0.02, 0.9]])
PM = np.array([[1.0, 2.0, -1.0], [3.0, 2.0, 2.5], [0.1, 0.1, 0.1], [1.0, 0.6, -3.0]])


def test_significant_results_zero_based_and_ordered():
    m = _fake(LFSR, PM)
    np.testing.assert_array_equal(get_significant_results(m), [1, 0, 3])
    np.testing.assert_array_equal(get_significant_results(m, conditions=["c"]), [1])
    np.testing.assert_array_equal(get_significant_results(m, conditions=[0, 1]), [1, 0, 3])
    np.testing.assert_array_equal(get_significant_results(m, thresh=0.015), [1, 0])
    np.testing.assert_array_equal(get_n_significant_conditions(m).to_numpy(), [1, 2, 0, 2])
    with pytest.raises(MashInputError, match="conditions"):
        get_significant_results(m, conditions=["zz"])


def test_pairwise_sharing_by_hand():
    m = _fake(LFSR, PM)
    S = get_pairwise_sharing(m)
    # (a, b): significant in a or b -> rows 0, 1, 3; ratios 0.5, 1.5, 1.667 -> in (0.5, 2): 1.5, 1.667
    assert S.loc["a", "b"] == pytest.approx(2 / 3)
    # (a, c): rows 1, 3 -> ratios 1.2, -1/3 -> 1 of 2
    assert S.loc["a", "c"] == pytest.approx(0.5) and S.loc["c", "a"] == S.loc["a", "c"]
    assert S.loc["b", "b"] == 1.0
    # sign sharing (factor 0): (b, c) rows 0, 1, 3: -2, 0.8, -0.2 -> 1 of 3
    assert get_pairwise_sharing(m, factor=0).loc["b", "c"] == pytest.approx(1 / 3)
    none = get_pairwise_sharing(m, lfsr_thresh=1e-5)
    assert np.isnan(none.to_numpy()).all()


def test_repr_is_a_short_summary():
    """Data, fits and fitted g print a one-line summary (shape, conditions, loglik), not arrays."""
    import mashlib as ml

    rng = np.random.default_rng(3)
    B = rng.normal(size=(400, 6))
    d = ml.mash_set_data(B, np.ones_like(B))
    m = ml.mash(d, ml.cov_canonical(d))
    assert repr(d) == "MashData(400 effects x 6 conditions [1, 2, 3, 4, ... (+2)], alpha=0, common V)"
    r = repr(m)
    assert r.startswith("MashResult(400 effects x 6 conditions, loglik=") and f"{m.loglik:.4f}" in r
    g = repr(m.fitted_g)
    assert g.startswith(f"FittedG(11 covariance matrices (6 x 6) x {len(m.fitted_g.grid)} grid values + null")
    assert all(len(x) < 300 for x in (repr(d), r, g))
