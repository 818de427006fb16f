"""mashlib.prior.flash against mashr 0.2.81 (golden/flash_values.json, sim_protocol components)."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.prior import cov_flash
from mashlib.model import mash_set_data
from mashlib.ebmf import flash_backfit, flash_greedy, flash_greedy_init_softImpute, flash_init
from mashlib.eb.ebnm import ebnm_point_normal

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"


@pytest.fixture(scope="module")
def golden():
    return json.loads((REF / "golden" / "flash_values.json").read_text())


@pytest.fixture(scope="module")
def strong_data():
    sim = json.loads((REF / "golden" / "simple_sims_500_5_1_seed1.json").read_text())
    idx = np.array(json.loads((REF / "sim_small" / "d_pca_ed_mash.json").read_text())["strong_idx_1based"]) - 1
    B, S = np.array(sim["Bhat"]), np.array(sim["Shat"])
    return B[idx], S[idx], idx


def test_golden_cov_flash(golden, strong_data):
    B, S, idx = strong_data
    assert len(idx) == golden["n_strong"] and list(idx[:10] + 1) == golden["strong_first10"]
    data = mash_set_data(B, S)
    U = cov_flash(data)
    assert list(U) == golden["names_default"]
    np.testing.assert_allclose(U["tFLASH_default"], golden["tFLASH_default"], atol=1e-4)
    np.testing.assert_allclose(U["FLASH_default_1"], golden["FLASH_default_1"], atol=1e-4)
    U2 = cov_flash(data, factors="nonneg")
    assert list(U2) == golden["names_nonneg"]
    np.testing.assert_allclose(U2["tFLASH_nonneg"], golden["tFLASH_nonneg"], atol=1e-4)
    assert np.all(U2["FLASH_nonneg_1"] >= 0)


def test_golden_flash_chain(golden, strong_data):
    """flash_init(var_type=2) -> greedy(Kmax=100, softImpute) -> backfit, as cov_flash calls flashier."""
    B = strong_data[0]
    f = flash_greedy(flash_init(B, var_type=2, verbose=0), Kmax=100, init_fn=flash_greedy_init_softImpute,
                     ebnm_fn=ebnm_point_normal, verbose=0)
    assert f.n_factors == golden["greedy_nfactors"]
    assert f.elbo >= golden["greedy_elbo"] - 0.05
    assert f.conv_tol == pytest.approx(golden["tol"], rel=1e-12)
    fb = flash_backfit(f, verbose=0)
    assert fb.elbo >= golden["backfit_elbo"] - 0.05
    assert fb.elbo == pytest.approx(golden["backfit_elbo"], abs=1e-3)
    np.testing.assert_allclose(fb.residuals_sd, golden["residuals_sd"], rtol=1e-5)
    np.testing.assert_allclose(fb.pve, [golden["pve"]], atol=1e-6)
    assert fb.F_ghat[0].sd == pytest.approx(golden["F_ghat_1"]["sd"][1], rel=1e-3)
    assert fb.L_ghat[0].sd == pytest.approx(golden["L_ghat_1"]["sd"][1], rel=1e-3)
    assert fb.F_ghat[0].pi0 == pytest.approx(golden["F_ghat_1"]["pi"][0], abs=1e-5)


def test_sim_protocol_components():
    """cov_flash / cov_flash(nonneg) on the sim_protocol strong set (1,500 x 20) as R."""
    ref = json.loads((REF / "sim_protocol" / "components_EE.json").read_text())["U"]
    B = pd.read_csv(REF / "sim_protocol" / "input_strong.b.csv")
    S = pd.read_csv(REF / "sim_protocol" / "input_strong.s.csv")
    data = mash_set_data(B, S)
    for factors in ("default", "nonneg"):
        U = cov_flash(data, factors=factors)
        names = [n for n in ref["names"] if n.startswith(("tFLASH_" + factors, "FLASH_" + factors))]
        assert list(U) == names
        for name in names:
            R = np.array(ref["matrices"][name])
            rel = np.linalg.norm(U[name] - R) / np.linalg.norm(R)
            assert rel < 1e-3, (name, rel)
            np.testing.assert_allclose(U[name], U[name].T)


def test_no_factor_gives_empty_dict():
    """The protocol fixture (17 strong rows): mashr finds no factor and returns an empty list."""
    fx = json.loads((REF / "golden" / "fixture_mashr_input.json").read_text())
    b = np.array(fx["strong.b"]["values"])
    s = np.array(fx["strong.s"]["values"])
    data = mash_set_data(b, s, conditions=fx["strong.b"]["colnames"])
    with pytest.warns(RuntimeWarning, match="did not find any factors"):
        assert cov_flash(data) == {}
    with pytest.warns(RuntimeWarning):
        assert cov_flash(data, factors="nonneg") == {}


def test_options(strong_data, tmp_path, mashlib_log):
    B, S, _ = strong_data
    data = mash_set_data(B, S, conditions=list("abcde"))
    U = cov_flash(data, tag="x", subset=np.arange(60))
    assert list(U) == ["tFLASH_x", "FLASH_x_1"]
    full = cov_flash(data, remove_singleton=True, output_model=tmp_path / "m.pkl")
    assert "Removing 0 singleton effect vectors" in mashlib_log()
    saved = pickle.loads((tmp_path / "m.pkl").read_bytes())
    f = saved["factors"][:, 0]
    np.testing.assert_allclose(full["FLASH_default_1"], np.outer(f, f))  # raw (unnormalised) column
    assert saved["conditions"] == list("abcde") and saved["model"].n_factors == 1
    cov_flash(data, output_model=tmp_path / "m.rds")
    from mashlib.io import read_rds

    back = read_rds(tmp_path / "m.rds")
    assert np.asarray(back["factors"]).shape == (5, 1)
    with pytest.raises(MashInputError, match="factors"):
        cov_flash(data, factors="positive")
    with pytest.raises(MashInputError):
        cov_flash(B)
    with pytest.raises(MashInputError, match="subset"):
        cov_flash(data, subset=[1000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov_flash(data, subset=np.arange(B.shape[0]) < 50)
