"""Covariance constructors (mashr test_cov.R, map §2.2 Covariances) and cov_pca parity."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.model import (check_covmat, check_Ulist, cov_canonical, cov_empirical,
                                 cov_from_factors, cov_pca, cov_udi, expand_cov, normalize_Ulist,
                                 scale_cov)
from mashlib.model import mash_set_data

REF = Path(__file__).parents[1] / "data" / "reference"


@pytest.fixture
def d2():
    return mash_set_data(np.array([[1.0, 2.0], [2.0, 4.0]]), 1.0)


def test_canonical_small(d2):
    U = cov_canonical(d2)
    assert list(U) == ["identity", "singletons_1", "singletons_2", "equal_effects",
                       "simple_het_1", "simple_het_2", "simple_het_3"]
    np.testing.assert_array_equal(U["singletons_1"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(U["singletons_2"], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(U["equal_effects"], np.ones((2, 2)))
    np.testing.assert_array_equal(U["simple_het_2"], [[1, 0.5], [0.5, 1]])
    assert list(cov_canonical(d2, ["id"])) == ["identity"]
    U2 = cov_canonical(d2, ["nul", "equal"])
    assert list(U2) == ["null", "equal_effects"] and not U2["null"].any()
    with pytest.raises(MashInputError, match="cov_methods"):
        cov_canonical(d2, ["xyz"])


def test_singletons_named_by_condition():
    d = mash_set_data(pd.DataFrame(np.ones((3, 3)), columns=["ALL", "Ast", "End"]))
    assert list(cov_canonical(d))[:4] == ["identity", "ALL", "Ast", "End"]


def test_scale_expand_normalize(d2):
    s = scale_cov({"identity": np.eye(2)}, [1, 2])
    assert list(s) == ["identity.1", "identity.2"]
    np.testing.assert_array_equal(s["identity.2"], 4 * np.eye(2))
    s2 = scale_cov(cov_canonical(d2, ["sing", "null"]), [np.sqrt(3), 2])
    assert list(s2) == ["singletons_1.1", "singletons_2.1", "null.1",
                        "singletons_1.2", "singletons_2.2", "null.2"]
    np.testing.assert_allclose(s2["singletons_2.1"], np.diag([0, 3.0]))
    x = expand_cov({"a": np.eye(2), "b": np.ones((2, 2))}, [0.5, 1.0])
    assert list(x) == ["null", "a.1", "b.1", "a.2", "b.2"]
    n = normalize_Ulist({"a": np.array([[1.0, 3], [3, 4]]), "b": np.array([[5.0, 7], [7, 8]]),
                         "z": np.zeros((2, 2))})
    np.testing.assert_allclose(n["a"], np.array([[1.0, 3], [3, 4]]) / 4)
    np.testing.assert_allclose(n["b"], np.array([[5.0, 7], [7, 8]]) / 8)
    assert not n["z"].any()


def test_cov_pca_matches_R():
    ref = json.load(open(REF / "sim_small" / "d_pca_ed_mash.json"))
    B = pd.read_csv(REF / "sim_small" / "Bhat.csv")
    d = mash_set_data(B, pd.read_csv(REF / "sim_small" / "Shat.csv"))
    strong = np.array(ref["strong_idx_1based"]) - 1
    U = cov_pca(d, 5, subset=strong)
    assert list(U) == ref["U_pca"]["names"]
    for k, M in ref["U_pca"]["matrices"].items():
        np.testing.assert_allclose(U[k], np.array(M), atol=1e-10)
    with pytest.raises(MashInputError, match="npc"):
        cov_pca(d, 1)


def test_from_factors_and_empirical(d2):
    f = np.array([[1.0, 2.0], [0.0, 1.0]])
    U = cov_from_factors(f, "F")
    assert list(U) == ["F_1", "F_2"]
    np.testing.assert_array_equal(U["F_1"], [[1, 2], [2, 4]])
    E = cov_empirical(d2)["empirical"]
    np.testing.assert_allclose(E, d2.Bhat.T @ d2.Bhat / 2)


def test_cov_udi():
    V = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.4], [0.2, 0.4, 1.0]])
    d = mash_set_data(np.ones((2, 3)), 1.0, V=V)
    U = cov_udi(d, ["I", "D", "U"])
    M = U["cov_udi_IDU"]
    # D = {1}, U = {2}: U0 = V_DD - V_DU V_UU^-1 V_UD
    U0 = 1 - 0.4 ** 2
    assert M[1, 1] == pytest.approx(U0)
    Ic = [2, 1]
    BD = np.linalg.inv(V[np.ix_(Ic, Ic)])[:, 1:]
    np.testing.assert_allclose(M[0, 1], (V[[0]][:, Ic] @ BD * U0).item())
    np.testing.assert_allclose(M, M.T)
    assert len(cov_udi(d)) == 3 ** 3 - 2 ** 3
    assert "cov_udi_UUD" in cov_udi(d)
    with pytest.raises(MashInputError, match="at least one direct"):
        cov_udi(d, ["U", "I", "I"])


def test_check_covmat_errors():
    with pytest.raises(MashInputError, match=r"Ulist\['bad'\].*positive semi-definite"):
        check_covmat(np.array([[1.0, 2.0], [2.0, 1.0]]), "bad")
    with pytest.raises(MashInputError, match="symmetric"):
        check_covmat(np.array([[1.0, 0.2], [0.3, 1.0]]), "ns")
    with pytest.raises(MashInputError, match="R = 3"):
        check_covmat(np.eye(2), "small", R=3)
    with pytest.raises(MashInputError, match="NA/NaN/Inf"):
        check_covmat(np.array([[np.nan, 0], [0, 1]]), "nan")
    with pytest.raises(MashInputError, match="empty"):
        check_Ulist({})
    # tiny negative eigenvalue (> -1e-8) is accepted as in mashr's issemidef
    check_covmat(np.diag([1.0, -1e-10]), "ok")


def test_U_condition_labels_checked_in_mash():
    from mashlib.model import mash
    d = mash_set_data(pd.DataFrame([[1.0, 2.0], [0.5, -1.0]], columns=["a", "b"]), 1.0)
    U = {"u": pd.DataFrame(np.eye(2), index=["b", "a"], columns=["b", "a"])}
    with pytest.raises(MashInputError, match=r"Ulist\['u'\]: columns"):
        mash(d, U, grid=[1.0])
