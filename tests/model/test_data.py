"""mash_set_data / MashData: mashr test_set_data.R behaviours (map §2.2 Data object, §4.1)."""
import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.model import mash_set_data, mash_update_data

B = np.array([[1.0, 2.0], [2.0, 6.0]])
S = np.array([[1.0, 1.0], [2.0, 2.0]])


def test_basic_fields_and_alpha_transform():
    d = mash_set_data(B, S)
    assert d.n_effects == 2 and d.n_conditions == 2 and d.commonV
    np.testing.assert_array_equal(d.Shat_alpha, np.ones((2, 2)))
    np.testing.assert_array_equal(d.V, np.eye(2))
    dz = mash_set_data(B, S, alpha=1)
    np.testing.assert_allclose(dz.Bhat, B / S)
    np.testing.assert_allclose(dz.Shat, np.ones((2, 2)))
    np.testing.assert_allclose(dz.Shat_alpha, S)
    dh = mash_set_data(B, S, alpha=0.5)
    np.testing.assert_allclose(dh.Bhat, B / np.sqrt(S))
    np.testing.assert_allclose(dh.Shat, np.sqrt(S))


def test_pval_and_df_paths_reproduce_shat():
    from scipy import stats
    p = 2 * stats.norm.sf(np.abs(B / S))
    d = mash_set_data(B, pval=p)
    np.testing.assert_allclose(d.Shat, S, rtol=1e-10)
    # df: Shat = Bhat / z where z matches the t p-value
    d2 = mash_set_data(B, S, df=2)
    z = B / d2.Shat
    np.testing.assert_allclose(2 * stats.norm.sf(np.abs(z)), 2 * stats.t.sf(np.abs(B / S), 2),
                               rtol=1e-10)
    with pytest.raises(MashInputError, match="zero p-value"):
        mash_set_data(B, pval=np.array([[0.0, 0.1], [0.1, 0.1]]))
    with pytest.raises(MashInputError, match="not both"):
        mash_set_data(B, S, pval=p)


def test_z_only_input_gives_unit_shat():
    d = mash_set_data(B)
    np.testing.assert_array_equal(d.Shat, np.ones((2, 2)))


def test_dataframe_names_and_row_ids_kept():
    df = pd.DataFrame(B, columns=["a", "b"], index=["r1", "r2"])
    d = mash_set_data(df, pd.DataFrame(S, columns=["a", "b"], index=["r1", "r2"]))
    assert d.conditions == ["a", "b"] and d.row_ids == ["r1", "r2"] and d.conditions_named
    d2 = mash_set_data(B, S)
    assert d2.row_ids is None and not d2.conditions_named and d2.conditions == ["1", "2"]
    sub = d.subset([1])
    assert sub.row_ids == ["r2"] and sub.Bhat.shape == (1, 2)
    np.testing.assert_array_equal(sub.Bhat, [[2.0, 6.0]])


@pytest.mark.parametrize("which", ["Bhat", "Shat"])
def test_inf_rejected(which):
    b, s = B.copy(), S.copy()
    (b if which == "Bhat" else s)[1, 0] = np.inf
    with pytest.raises(MashInputError, match=rf"{which}.*row 1, condition 0"):
        mash_set_data(b, s)


def test_nan_patterns():
    b = B.copy()
    b[0, 1] = np.nan
    with pytest.raises(MashInputError, match="missing-data pattern"):
        mash_set_data(b, S)
    s = S.copy()
    s[1, 1] = np.nan
    with pytest.raises(MashInputError, match=r"Shat: NaN.*row 1, condition 1"):
        mash_set_data(B, s)
    s = S.copy()
    s[0, 1] = np.nan
    for alpha in (0, 1):
        d = mash_set_data(b, s, alpha=alpha)
        assert d.Bhat[0, 1] == 0 and d.Shat[0, 1] == 1e6 and d.Shat_alpha[0, 1] == 1


def test_zero_shat_rules():
    s = S.copy()
    s[0, 0] = 0
    with pytest.raises(MashInputError, match=r"zero or negative standard error at row 0, condition 0"):
        mash_set_data(B, s)
    d = mash_set_data(B, s, zero_Shat_reset=5)
    assert d.Shat[0, 0] == 5
    s[1, 1] = -1.0
    with pytest.raises(MashInputError, match="Shat"):
        mash_set_data(B, s)
    # both zero -> zero_Bhat_Shat_reset; note mashr tests Bhat <= tol (negative Bhat counts)
    b = B.copy()
    b[0, 0] = -3
    s = S.copy()
    s[0, 0] = 0
    s[1, 0] = 0   # Bhat > tol here: left untouched (P12 quirk)
    with pytest.raises(MashInputError, match=r"Shat: 0 at row 0, condition 0 is at or below zero_check_tol .* Bhat there is -3"):
        mash_set_data(b, s)
    d = mash_set_data(b, s, zero_Bhat_Shat_reset=1000)
    assert d.Shat[0, 0] == 1000 and d.Shat[1, 0] == 0


def test_shape_and_V_errors():
    with pytest.raises(MashInputError, match="does not match Bhat"):
        mash_set_data(B, np.ones((3, 2)))
    with pytest.raises(MashInputError, match="positive definite"):
        mash_set_data(B, S, V=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(MashInputError, match="not symmetric"):
        mash_set_data(B, S, V=np.array([[1.0, 0.5], [0.4, 1.0]]))
    with pytest.raises(MashInputError, match="does not match the 2 conditions"):
        mash_set_data(B, S, V=np.eye(3))
    with pytest.raises(MashInputError, match="number of effects"):
        mash_set_data(B, S, V=np.stack([np.eye(2)] * 3, axis=2))
    d = mash_set_data(B, S, V=np.stack([np.eye(2)] * 2, axis=2))
    assert not d.commonV and d.V_stack().shape == (2, 2, 2)


def test_update_data():
    d = mash_set_data(B, S)
    V = np.array([[1.0, 0.3], [0.3, 1.0]])
    d2 = mash_update_data(d, V=V)
    np.testing.assert_array_equal(d2.V, V)
    np.testing.assert_array_equal(d.V, np.eye(2))
    with pytest.raises(MashInputError, match="positive definite"):
        mash_update_data(d, V=np.array([[1.0, 1.5], [1.5, 1.0]]))
    with pytest.raises(MashInputError, match="ref: 'x' is not a condition"):
        mash_update_data(d, ref="x")
    assert mash_update_data(d, ref=1).conditions == ["2-1"]


def test_common_cov_detection():
    assert mash_set_data(B, 1.0).is_common_cov()
    assert not mash_set_data(B, S).is_common_cov()
    assert mash_set_data(B, np.array([[1.0, 2.0], [1.0, 2.0]])).is_common_cov()


def test_condition_name_mismatch():
    b = pd.DataFrame(B, columns=["a", "b"])
    with pytest.raises(MashInputError, match=r"Shat: condition names differ.*column 0"):
        mash_set_data(b, pd.DataFrame(S, columns=["b", "a"]))
    with pytest.raises(MashInputError, match=r"Shat: row ids differ.*row 1"):
        mash_set_data(pd.DataFrame(B, index=["x", "y"]), pd.DataFrame(S, index=["x", "z"]))
    V = pd.DataFrame(np.eye(2), index=["b", "a"], columns=["b", "a"])
    with pytest.raises(MashInputError, match="V: columns"):
        mash_set_data(b, S, V=V)
    d = mash_set_data(b, S, V=pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "b"]))
    with pytest.raises(MashInputError, match="V: columns"):
        mash_update_data(d, V=V)
