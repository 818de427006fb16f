"""Residual correlation estimators (map §1.5-1.7, §2.2 Residual correlation; P14, P21)."""
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.model import cov_canonical
from mashlib.model import mash_set_data, mash_update_data
from mashlib.model import mash
from mashlib.vhat import (E_V, estimate_null_correlation_simple, mash_estimate_corr_em,
                          vhat_identity, vhat_mle, vhat_simple)

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"
UNIT = json.load(open(REF / "golden" / "unit_values.json"))
B4 = np.array([[1, 1.5, 0.5], [0.5, 1, 0.2], [-0.8, -0.5, -1], [0.6, 1.7, 0.3]])


def test_null_cor_simple_golden():
    d = mash_set_data(B4, np.ones((4, 3)))
    V = estimate_null_correlation_simple(d)
    np.testing.assert_allclose(V.to_numpy(), UNIT["null_cor_simple"], atol=1e-8)
    assert V.attrs["n_rows_used"] == 4
    # EZ with Shat = 1.5: z = Bhat/Shat is unchanged (mashr test_estimate_cor.R)
    dz = mash_set_data(B4, np.full((4, 3), 1.5), alpha=1)
    np.testing.assert_allclose(estimate_null_correlation_simple(dz).to_numpy(),
                               UNIT["null_cor_simple"], atol=1e-8)


def test_sim_small_c():
    ref = json.load(open(REF / "sim_small" / "c_null_corr_simple.json"))
    d = mash_set_data(pd.read_csv(REF / "sim_small" / "Bhat.csv"),
                      pd.read_csv(REF / "sim_small" / "Shat.csv"))
    V = estimate_null_correlation_simple(d)
    np.testing.assert_allclose(V.to_numpy(), ref["V"], atol=1e-8)
    assert list(V.columns) == ref["colnames"]


def test_not_enough_null_data():
    d = mash_set_data(np.array([[5.0, 0.1, 0.2], [0.1, 0.2, 0.3], [4.0, 4.0, 4.0]]), 1.0)
    with pytest.raises(MashInputError, match="not enough null data.*vhat_identity"):
        estimate_null_correlation_simple(d)
    with pytest.warns(UserWarning, match="Identity"):
        fit = mash_estimate_corr_em(d, cov_canonical(d), max_iter=0)
    np.testing.assert_array_equal(fit["V"].to_numpy(), np.eye(3))


def test_corr_em_maxiter0_equals_simple_fit():
    d = mash_set_data(B4, np.ones((4, 3)))
    U = cov_canonical(d)
    em0 = mash_estimate_corr_em(d, U, max_iter=0)
    np.testing.assert_allclose(em0["V"].to_numpy(), UNIT["corr_em_maxiter0"]["V"], atol=1e-8)
    assert em0["niter"] == 0
    np.testing.assert_allclose(em0["loglik"], [UNIT["corr_em_maxiter0"]["loglik"]], rtol=1e-6)
    m = mash(mash_update_data(d, V=em0["V"].to_numpy()), U, outputlevel=3)
    np.testing.assert_allclose(em0["mash_model"].result["PosteriorMean"].to_numpy(),
                               m.result["PosteriorMean"].to_numpy(), atol=1e-12)


def test_corr_em_maxiter3_golden():
    d = mash_set_data(B4, np.ones((4, 3)))
    em = mash_estimate_corr_em(d, cov_canonical(d), max_iter=3)
    u = UNIT["corr_em_maxiter3"]
    np.testing.assert_allclose(em["V"].to_numpy(), u["V"], atol=1e-4)
    assert em["niter"] == u["niter"] == 2        # tol-break over-counts by one (P21)
    np.testing.assert_allclose(em["loglik"], u["loglik"], rtol=1e-6)
    V = mash_estimate_corr_em(d, cov_canonical(d), max_iter=3, details=False)
    np.testing.assert_allclose(V.to_numpy(), em["V"].to_numpy())


def test_E_V_matches_definition():
    rng = np.random.default_rng(0)
    d = mash_set_data(rng.standard_normal((30, 3)), rng.uniform(0.5, 1.5, (30, 3)), alpha=1)
    m = mash(d, cov_canonical(d), grid=[0.5, 1.0], outputlevel=3)
    Z = d.Bhat / d.Shat
    S = d.Shat * d.Shat_alpha
    PM = m.result["PosteriorMean"].to_numpy()
    PC = m.result["PosteriorCov"]
    ref = np.zeros((3, 3))
    for j in range(30):   # definition, row by row (test only)
        mt = PM[j] / S[j]
        E2 = PC[j] / np.outer(S[j], S[j]) + np.outer(mt, mt)
        ref += np.outer(Z[j], Z[j]) - np.outer(mt, Z[j]) - np.outer(Z[j], mt) + E2
    np.testing.assert_allclose(E_V(d, m), (ref + ref.T) / 2, rtol=1e-12)


def test_sim_small_e_corr_em():
    ref = json.load(open(REF / "sim_small" / "e_corr_em.json"))
    d = mash_set_data(pd.read_csv(REF / "sim_small" / "Bhat.csv"),
                      pd.read_csv(REF / "sim_small" / "Shat.csv"))
    fit = mash_estimate_corr_em(d, cov_canonical(d))
    np.testing.assert_allclose(fit["V"].to_numpy(), ref["V"], atol=1e-4)
    assert fit["niter"] == ref["niter"]
    np.testing.assert_allclose(fit["loglik"], ref["loglik_trace"], rtol=1e-6)


def test_protocol_wrappers(caplog):
    cols = ["c1", "c2", "c3"]
    b = pd.DataFrame(B4, columns=cols)
    s = pd.DataFrame(np.ones((4, 3)), columns=cols)
    I = vhat_identity(b)
    assert list(I.columns) == cols and (I.to_numpy() == np.eye(3)).all()
    assert vhat_identity(4).shape == (4, 4)
    with caplog.at_level(logging.INFO, logger="mashlib.vhat"):
        V = vhat_simple(b, s)
    assert "4 of 4 null rows" in caplog.text and V.attrs["n_rows_used"] == 4
    np.testing.assert_allclose(V.to_numpy(), UNIT["null_cor_simple"], atol=1e-8)
    d = mash_set_data(b, s)
    Vm = vhat_mle(b, s, cov_canonical(d), max_iter=3)
    np.testing.assert_allclose(Vm.to_numpy(), UNIT["corr_em_maxiter3"]["V"], atol=1e-4)
    assert Vm.attrs["n_rows_used"] == 4 and Vm.attrs["niter"] == 2
    assert list(Vm.columns) == cols
