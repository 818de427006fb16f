"""Protocol prior engines (mashlib.prior) against the R chain (golden/chain_values.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib._errors import MashInputError
from mashlib.prior import (ENGINES, ed_bovy, mixture_prior, prior_weights, read_prior, ud,
                           ud_control, ud_unconstrained, validate_components, validate_prior)

pytestmark = pytest.mark.parity  # reproduces R reference outputs (tests/data/reference)

REF = Path(__file__).parents[1] / "data" / "reference"


def _json(*parts):
    with open(REF.joinpath(*parts)) as fh:
        return json.load(fh)


def _prep(f, key):
    """chain.R's prep(): rownames mash::mash::var<i>, NA b -> 0, NA / <= 0 s -> 1000."""
    b = np.array(f[key + ".b"]["values"], dtype=float)
    s = np.array(f[key + ".s"]["values"], dtype=float)
    b[np.isnan(b)] = 0.0
    s[np.isnan(s) | (s <= 0)] = 1000.0
    rows = [f"mash::mash::var{i + 1}" for i in range(b.shape[0])]
    cols = f[key + ".b"]["colnames"]
    return pd.DataFrame(b, index=rows, columns=cols), pd.DataFrame(s, index=rows, columns=cols)


@pytest.fixture(scope="module")
def chain():
    from mashlib.model import cov_canonical, cov_pca
    from mashlib.model import mash_set_data

    f = _json("golden", "fixture_mashr_input.json")
    ch = _json("golden", "chain_values.json")
    sb, ss = _prep(f, "strong")
    md0 = mash_set_data(sb, ss, alpha=0, zero_Bhat_Shat_reset=1000)
    U_can, U_pca = cov_canonical(md0), cov_pca(md0, 2)
    # flash and flash_nonneg are empty on 17 rows (R: NULL), so comps = pca(2) + canonical
    assert not ch.get("names_flash") and not ch.get("names_flash_nonneg")  # NULL: absent in JSON
    comps = {**U_pca, **U_can}
    V = np.array(ch["V_simple"])
    md = mash_set_data(sb, ss, alpha=0, V=V, zero_Bhat_Shat_reset=1000)
    mdz = mash_set_data(sb, ss, alpha=1, V=V, zero_Bhat_Shat_reset=1000)
    return dict(ch=ch, comps=comps, md=md, mdz=mdz, U_pca=U_pca)


@pytest.fixture(scope="module")
def ed_prior(chain):
    return ed_bovy(chain["md"], chain["comps"], accelerate=False)  # R parity: plain EM


def test_components_match_r(chain):
    ch = chain["ch"]
    assert list(chain["comps"]) == ch["names_pca2"] + ch["names_canonical"]
    for k, v in ch["U_pca2"].items():
        np.testing.assert_allclose(np.asarray(chain["U_pca"][k]), np.array(v), atol=1e-10)


def test_ed_bovy_matches_r_chain(chain, ed_prior):
    ch = chain["ch"]
    # U = c(comps, ED_comps): 32 names in R's order
    assert list(ed_prior["U"]) == ch["prior_U_names"]
    assert len(ed_prior["U"]) == 32
    # w named "null" first, then U; within the 1e-4 pi tolerance (measured ~3e-7)
    w = ed_prior["w"]
    assert isinstance(w, pd.Series)
    assert list(w.index) == ["null"] + ch["prior_U_names"]
    np.testing.assert_allclose(w.to_numpy(), np.array(ch["prior_w"]), atol=1e-4)
    assert np.abs(w.to_numpy() - np.array(ch["prior_w"])).max() < 1e-5
    assert w.sum() == pytest.approx(1.0, abs=1e-10)
    assert ed_prior["loglik"] is None
    # the first ED matrix (ED_PCA_1) within 1e-4 relative Frobenius (measured ~1e-12)
    U1, R1 = ed_prior["U"]["ED_PCA_1"], np.array(ch["U_ed_first"])
    assert np.linalg.norm(U1 - R1) / np.linalg.norm(R1) < 1e-4
    np.testing.assert_allclose(U1, R1, atol=1e-8)
    # the raw components are kept untouched
    np.testing.assert_allclose(ed_prior["U"]["PCA_1"], np.asarray(chain["comps"]["PCA_1"]))


def test_prior_weight_mash_loglik_matches_r(chain, ed_prior):
    from mashlib.model import mash

    m = mash(chain["md"], Ulist=ed_prior["U"], outputlevel=1)
    assert m.loglik == pytest.approx(chain["ch"]["prior_loglik_mash"], rel=1e-6)


def test_mixture_prior_dispatch_and_validation(chain, ed_prior):
    assert set(ENGINES) >= {"ed_bovy", "ud", "ud_unconstrained", "cov_ed", "ud_ted"}
    with pytest.raises(MashInputError, match="unknown engine 'bovy'.*'ed_bovy'.*'ud'.*"
                                             "'ud_unconstrained'"):
        mixture_prior(chain["md"], chain["comps"], engine="bovy")
    with pytest.raises(MashInputError, match="unknown engine"):
        mixture_prior(chain["md"], chain["comps"], engine=["ed_bovy"])
    with pytest.raises(MashInputError, match="required by engine 'ed_bovy'"):
        mixture_prior(chain["md"], None)
    with pytest.raises(MashInputError, match="unnamed list"):
        validate_components([np.eye(8)])
    with pytest.raises(MashInputError, match="non-empty"):
        ed_bovy(chain["md"], {})
    with pytest.raises(MashInputError, match=r"3 x 3 but the data have R = 8"):
        ed_bovy(chain["md"], {"a": np.eye(3)})
    # a prior without U -> clear error; with U -> normalised
    with pytest.raises(MashInputError, match="element 'U'"):
        validate_prior({"w": [1.0]}, source="toy.EE.prior.rds")
    p = validate_prior({"U": ed_prior["U"], "w": ed_prior["w"].to_numpy(), "loglik": None})
    assert list(p["w"].index) == ["null"] + list(ed_prior["U"])
    with pytest.raises(MashInputError, match="33 weights for 2"):
        validate_prior({"U": {"a": np.eye(2), "b": np.eye(2)}, "w": np.ones(33)})
    with pytest.raises(MashInputError, match="does not exist"):
        read_prior("/nonexistent/x.prior.rds")


def test_read_prior_roundtrip(tmp_path, ed_prior):
    from mashlib.io import write_rds

    path = tmp_path / "toy.EE.prior.rds"
    write_rds(path, {"U": ed_prior["U"], "w": ed_prior["w"], "loglik": None})
    p = read_prior(path)
    assert list(p["U"]) == list(ed_prior["U"])
    np.testing.assert_allclose(p["w"].reindex(ed_prior["w"].index).to_numpy(),
                               ed_prior["w"].to_numpy())
    write_rds(tmp_path / "bad.rds", {"w": ed_prior["w"]})
    with pytest.raises(MashInputError, match="bad.rds.*element 'U'"):
        read_prior(tmp_path / "bad.rds")


def test_ud_control_is_pecotmrs():
    assert ud_control(8) == dict(unconstrained_update="ed", scaled_update="fa",
                                 resid_update="none", lambda_=8, penalty_type="iw",
                                 maxiter=1000, tol=1e-2, tol_lik=1e-2)
    assert ud_control(20, "ted")["unconstrained_update"] == "ted"


def test_ud_ted_on_ee_data_is_a_clear_error(chain):
    with pytest.raises(MashInputError, match=r"needs i\.i\.d\. data: use effect_model='EZ'"):
        ud_unconstrained(chain["md"], chain["comps"])
    with pytest.raises(MashInputError, match=r"i\.i\.d"):
        mixture_prior(chain["md"], chain["comps"], engine="ud_ted")


def test_ud_engines_structure(chain):
    ch = chain["ch"]
    ref = _json("golden", "ud_values.json")
    # EE -> udr's non-iid path; the full pecotmr control (maxiter 1000, tol.lik 1e-2)
    res = ud(chain["md"], chain["comps"])
    names = list(res["U"])
    assert names[:15] == ref["alpha0_ed"]["names_first"]
    assert names[:13] == ch["names_canonical"]
    assert names[13:] == [f"unconstrained{k}" for k in range(1, 51)]
    assert list(res["w"].index) == names and "null" not in res["w"].index
    assert res["w"].sum() == pytest.approx(1.0, abs=1e-8)
    # R: 153.44 from R's 50 random Wishart inits, which numpy cannot draw (P20); over numpy
    # seeds 0-3 this fit ends at 150.1-163.0 (the data are 17 rows, so the optimum found
    # depends on the inits). EE is non-iid, where R's udr ignores lambda: unpenalised.
    assert 140 < res["loglik"] < 175
    assert res["loglik"] > ref["alpha0_ed"]["init_loglik"]
    # with mashlib's IW extension for non-iid data the fit stops far lower (about 32.6)
    pen = ud(chain["md"], None, penalize_non_iid=True)
    assert pen["loglik"] < res["loglik"] - 50
    for U in res["U"].values():
        assert np.linalg.eigvalsh(U).min() > -1e-8
    # EZ -> iid path with TED (kept small: udr's penalised TED is slow)
    res_t = ud_unconstrained(chain["mdz"], None, n_unconstrained=3, maxiter=2)
    assert list(res_t["U"]) == ch["names_canonical"] + ["unconstrained1", "unconstrained2",
                                                         "unconstrained3"]
    assert np.isfinite(res_t["loglik"])
    # injected initial matrices are used instead of random draws
    init = {f"unconstrained{k}": np.eye(8) * k for k in (1, 2)}
    r0 = ud(chain["mdz"], None, U_unconstrained_init=init, maxiter=1)
    assert list(r0["U"])[-2:] == ["unconstrained1", "unconstrained2"]


@pytest.mark.slow
def test_sim_protocol_prior_weights_given_r_U():
    """ed_bovy's weight step with R's 112 U (R's cov_ed took 1132 s, so U is imported)."""
    from mashlib.model import mash_set_data

    D = REF / "sim_protocol"
    ref = _json("sim_protocol", "prior_fit_post_cov_ed_EE.json")
    b = pd.read_csv(D / "input_strong.b.csv")
    s = pd.read_csv(D / "input_strong.s.csv")
    V = np.array(_json("sim_protocol", "vhat_simple.json")["V_EE"])
    md = mash_set_data(b, s, alpha=0, V=V, zero_Bhat_Shat_reset=1000)
    U = {k: np.array(ref["prior_U"]["matrices"][k]) for k in ref["prior_U"]["names"]}
    w = prior_weights(md, U)
    wr = pd.Series(ref["prior_w"]["values"], index=ref["prior_w"]["names"])
    assert list(w.index) == list(wr.index)
    np.testing.assert_allclose(w.to_numpy(), wr.to_numpy(), atol=1e-4)


def test_engines_return_a_mixture_prior(tmp_path):
    """Prior engines return MixturePrior(U, w, loglik): attributes, the R list, and plot_U takes it."""
    import mashlib as ml

    rng = np.random.default_rng(2)
    B = rng.normal(size=(80, 3)) * rng.choice([0.5, 3.0], size=(80, 1))
    d = ml.mash_set_data(B, np.ones_like(B))
    pr = ml.ed_bovy(d, ml.cov_pca(d, 2))
    assert isinstance(pr, ml.MixturePrior) and pr["U"] is pr.U and list(pr.w.index)[0] == "null"
    assert set(pr.to_r()) == {"U", "w", "loglik"} and pr.w.sum() == pytest.approx(1.0)
    assert repr(pr).startswith(f"MixturePrior({len(pr.U)} components")
    ml.plot_U(pr, output=tmp_path / "prior.pdf", tol=0, png=False)
    assert (tmp_path / "prior.pdf").stat().st_size > 1000
