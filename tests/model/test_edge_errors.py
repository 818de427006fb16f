"""Issue 10, the library part of the unclear-error list: subset validation (one shared
validator), mixsqp's all-zero row, tiny Shat, and mash on 0 rows or overflowing values."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mashlib as ml
from mashlib._errors import MashInputError
from mashlib._validation import check_subset


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    B = rng.normal(size=(200, 3)) * np.where(rng.random((200, 1)) < 0.3, 3.0, 0.5)
    return ml.mash_set_data(B, np.full((200, 3), 0.5))


# ----------------------------------------------------------------------------- subset
def test_check_subset_names_index_and_row_count():
    np.testing.assert_array_equal(check_subset([0, -1, 5], 10), [0, 9, 5])
    np.testing.assert_array_equal(check_subset(np.arange(4) % 2 == 0, 4), [0, 2])
    np.testing.assert_array_equal(check_subset(None, 3), [0, 1, 2])
    with pytest.raises(MashInputError, match=r"subset: index 5000 \(position 2 of subset\) is out of "
                                             r"range for 200 rows"):
        check_subset([0, 1, 5000], 200)
    with pytest.raises(MashInputError, match="one entry per row \\(200\\), got 3"):
        check_subset([True, False, True], 200)
    with pytest.raises(MashInputError, match="integer row indices"):
        check_subset([0.5, 1], 200)
    with pytest.raises(MashInputError, match="selects 0 row"):
        check_subset([], 200, what="ED")


@pytest.mark.parametrize("call", [
    lambda d, s: ml.cov_ed(d, ml.cov_pca(d, 2), subset=s),          # main: IndexError
    lambda d, s: ml.cov_ed(d, ml.cov_pca(d, 2), subset=s, algorithm="teem"),
    lambda d, s: ml.cov_pca(d, 2, subset=s),                         # main: IndexError
    lambda d, s: ml.cov_empirical(d, subset=s),
    lambda d, s: ml.cov_flash(d, subset=s),                          # main: no index named
    lambda d, s: d.subset(s),
], ids=["cov_ed", "cov_ed_teem", "cov_pca", "cov_empirical", "cov_flash", "MashData.subset"])
def test_every_subset_taker_names_the_bad_index(data, call):
    with pytest.raises(MashInputError, match=r"index 5000 .*out of range for 200 rows"):
        call(data, [0, 1, 5000])


def test_valid_subsets_unchanged(data):
    strong = np.flatnonzero(np.abs(data.Bhat).max(axis=1) > 1.5)
    mask = np.zeros(200, bool)
    mask[strong] = True
    a = ml.cov_pca(data, 2, subset=strong)
    b = ml.cov_pca(data, 2, subset=mask)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(data.subset(mask).Bhat, data.Bhat[strong])


# ----------------------------------------------------------------------------- mixsqp
def test_mixsqp_all_zero_row_named():
    L = np.random.default_rng(0).random((6, 4))
    L[3] = 0.0
    with pytest.raises(MashInputError, match=r"row 3 of argument 'L' is all zero.*every row of L "
                                             r"needs a positive entry") as e:
        ml.mixsqp(L)
    assert "x0" not in str(e.value)                      # main blamed x0, which was not given
    with np.errstate(divide="ignore"):
        logL = np.log(L)
    with pytest.raises(MashInputError, match=r"row 3 of argument 'L' is -Inf in every column"):
        ml.mixsqp(logL, log=True)


# ----------------------------------------------------------------------------- mash_set_data / mash
def test_tiny_shat_says_below_tolerance():
    B = np.array([[-0.719, 0.3], [0.5, 1.2]])
    with pytest.raises(MashInputError, match=r"Shat: .* is at or below zero_check_tol") as e:
        ml.mash_set_data(B, np.ones_like(B) * 1e-300)
    assert "both Bhat and Shat are zero" not in str(e.value) and "-0.719" in str(e.value)


def test_mash_zero_rows(data):
    empty = ml.mash_set_data(np.zeros((0, 3)), np.ones((0, 3)))
    with pytest.raises(MashInputError, match="0 effects"):
        ml.mash(empty, ml.cov_canonical(data))


@pytest.mark.parametrize("sb, ss, match", [
    (1e300, 1.0, r"Bhat: .* above 1e\+152 in absolute value.*other units"),   # main: OverflowError
    (1e300, 1e300, r"Bhat: .* above 1e\+152"),                                # main: LinAlgError
    (1e60, 1.0, r"grid of prior scales would span"),                         # main: NaN in mixsqp
])
def test_mash_overflowing_values_clear_error(data, sb, ss, match):
    with pytest.raises(MashInputError, match=match):
        d = ml.mash_set_data(data.Bhat * sb, data.Shat * ss)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ml.mash(d, ml.cov_canonical(d))


def test_mash_large_but_representable_scale_is_exact(data):
    """Bhat and Shat x 1e100: the same lfsr, posterior means x 1e100 (no error where math allows)."""
    ref = ml.mash(data, ml.cov_canonical(data))
    big = ml.mash_set_data(data.Bhat * 1e100, data.Shat * 1e100)
    m = ml.mash(big, ml.cov_canonical(big))
    # pi is re-optimised (mix-SQP, convergence tolerance 1e-8 on the objective): agreement to
    # the optimiser's precision, not to rounding
    np.testing.assert_allclose(m.fitted_g.pi, ref.fitted_g.pi, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m.result["lfsr"]), np.asarray(ref.result["lfsr"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(m.result["PosteriorMean"]) / 1e100,
                               np.asarray(ref.result["PosteriorMean"]), rtol=1e-5, atol=1e-8)
