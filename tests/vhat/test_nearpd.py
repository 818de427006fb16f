"""Parity of mashlib.vhat.nearpd with Matrix::nearPD 1.5-3 (R reference values)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashConvergenceWarning, MashInputError
from mashlib.vhat.nearpd import near_pd, vhat_simple_specific

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"


def _json(*parts):
    with open(REF.joinpath(*parts)) as fh:
        return json.load(fh)


def _fixture_null_z():
    """Null z of the 8-condition fixture, preprocessed as chain.R (NA -> 0 / 1000)."""
    f = _json("golden", "fixture_mashr_input.json")
    b = np.array(f["null.b"]["values"], dtype=float)
    s = np.array(f["null.s"]["values"], dtype=float)
    b[np.isnan(b)] = 0.0
    s[np.isnan(s) | (s <= 0)] = 1000.0
    return pd.DataFrame(b / s, columns=f["null.b"]["colnames"])


def test_unit_nearpd_matches_r():
    ref = _json("golden", "unit_values.json")["nearPD"]
    r = near_pd(ref["input"], corr=True, do_sym=True, conv_tol=1e-6)
    np.testing.assert_allclose(r.mat, np.array(ref["mat"]), atol=1e-10)
    assert r.iterations == ref["iterations"] == 13
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ref["eigenvalues"], rtol=1e-8, atol=1e-14)
    assert r.normF == pytest.approx(ref["normF"], abs=1e-10)
    # the published off-diagonals
    assert r.mat[0, 1] == pytest.approx(0.553577028043535, abs=1e-12)
    assert r.mat[1, 2] == pytest.approx(-0.553577028043534, abs=1e-12)


def test_sim_protocol_simple_specific_matches_r():
    import pyreadr

    ref = _json("corshrink", "simple_specific.json")
    z = pyreadr.read_r(str(REF / "corshrink" / "null_z.rds"))[None]
    v = vhat_simple_specific(z)
    assert list(v.columns) == ref["colnames"] == list(v.index)
    np.testing.assert_allclose(v.to_numpy(), np.array(ref["V"]), atol=1e-4)
    # actually much closer than the promised 1e-4
    assert np.abs(v.to_numpy() - np.array(ref["V"])).max() < 1e-10
    assert v.attrs["n_null_rows"] == 10000
    csv = pd.read_csv(REF / "corshrink" / "vhat_simple_specific.csv")
    np.testing.assert_allclose(v.to_numpy(), csv.to_numpy(), atol=1e-10)
    # the covariance fed to nearPD is R's stats::cov
    r = near_pd(np.array(ref["cov_nullZ"]), corr=True, do_sym=True, conv_tol=1e-6)
    np.testing.assert_allclose(r.mat, np.array(ref["V"]), atol=1e-10)


def test_chain_fixture_simple_specific_matches_r():
    ref = _json("golden", "chain_values.json")["V_simple_specific"]
    v = vhat_simple_specific(_fixture_null_z())
    assert list(v.columns) == ["ALL", "Ast", "End", "Exc", "Inh", "Mic", "OPC", "Oli"]
    np.testing.assert_allclose(v.to_numpy(), np.array(ref), atol=1e-10)


def test_nearpd_properties_on_indefinite_matrix():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6))
    x = (A + A.T) / 4
    np.fill_diagonal(x, 1.0)
    r = near_pd(x, corr=True)
    X = np.asarray(r.mat)
    np.testing.assert_allclose(np.diag(X), 1.0)
    np.testing.assert_allclose(X, X.T, atol=1e-12)
    assert np.linalg.eigvalsh(X).min() > 0
    np.linalg.cholesky(X)
    # a PD correlation matrix is (nearly) unchanged
    C = np.array([[1.0, 0.3], [0.3, 1.0]])
    r2 = near_pd(C, corr=True)
    np.testing.assert_allclose(r2.mat, C, atol=1e-12)
    assert r2.iterations == 1
    # keep_diag keeps the input diagonal of a covariance
    S = np.array([[4.0, 3.0, 2.9], [3.0, 2.0, -1.0], [2.9, -1.0, 1.0]])
    r3 = near_pd(S, keep_diag=True)
    np.testing.assert_allclose(np.diag(r3.mat), np.diag(S), rtol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(r3.mat)).min() > 0
    ev = near_pd(S, only_values=True)
    assert ev.shape == (3,) and ev[0] >= ev[-1] > 0


def test_nearpd_dataframe_labels_and_nonconvergence_warning():
    x = pd.DataFrame([[1, .9, .7], [.9, 1, -.9], [.7, -.9, 1]], index=list("abc"), columns=list("abc"))
    with pytest.warns(MashConvergenceWarning, match="did not converge"):
        r = near_pd(x, corr=True, maxit=2)
    assert list(r.mat.columns) == ["a", "b", "c"] and r.iterations == 2 and not r.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        near_pd(x, corr=True, do_sym=True, conv_tol=1e-6)


def test_nearpd_bad_input():
    with pytest.raises(MashInputError, match="square"):
        near_pd(np.ones((2, 3)))
    with pytest.raises(MashInputError, match="missing or infinite.*row 1, column 2"):
        near_pd([[1, np.nan], [np.nan, 1]])
    with pytest.raises(MashInputError, match="negative semi-definite"):
        near_pd(-np.eye(3))
    with pytest.raises(MashInputError, match="vhat_identity"):
        vhat_simple_specific(np.ones((1, 3)))
    with pytest.raises(MashInputError, match="NA"):
        vhat_simple_specific(np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 1.0]]))


def test_ensure_symmetry_follows_isSymmetric():
    from mashlib.vhat.nearpd import _is_symmetric

    x = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert _is_symmetric(x)
    y = x.copy()
    y[0, 1] += 1e-15          # within all.equal's 100 eps relative tolerance
    assert _is_symmetric(y)
    y[0, 1] = 0.6
    assert not _is_symmetric(y)
    # an asymmetric input is symmetrised first: (x + x') / 2
    r = near_pd(y, corr=True)
    r2 = near_pd((y + y.T) / 2, corr=True)
    np.testing.assert_allclose(r.mat, r2.mat, atol=1e-15)
