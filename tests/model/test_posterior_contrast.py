"""pecotmr's mashPosteriorContrast / updateMashModelCov, ported (mashlib.model.posterior_contrast,
mashlib.model.condition_subset).

No R reference is available for these (pecotmr is not in the reference environment), so
they are checked against (a) the values pecotmr's own testthat states and hand-derived
designs, and (b) a literal per-variant transcription of pecotmr's R loop (``fitMashContrast``
and its ``.mashDeviationContrast`` / ``.mashPairwiseContrast`` loops) written below.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import mashlib as ml
from mashlib import MashInputError
from mashlib.model import update_mash_model_cov
from mashlib.io import RArray, read_rds, write_rds
from mashlib.model.posterior_contrast import contrast_grouping, contrast_summary, read_grouping_recipe


# ----------------------------------------------------------------- pecotmr's loop, transcribed
def _r_fit_contrast(i, orig, pm, pv, grouping):
    """fitMashContrast(index = i + 1, ...) as pecotmr's loop version, one variant."""
    names = list(pm.columns)
    ov = orig.iloc[i].to_numpy()
    tested = [n for n, v in zip(names, ov) if v != 0]
    if len(tested) < 2:
        return None
    n = len(tested)
    g = {t: (grouping or {}).get(t, 0) for t in tested}
    if n <= 2:
        D = pd.DataFrame([[1.0], [-1.0]], index=tested, columns=[f"{tested[0]}_vs_{tested[1]}"])
    else:
        dev = pd.DataFrame(-1.0, index=tested, columns=tested)
        for t in tested:
            dev.loc[t, t] = n - 1
        for grp in sorted({v for v in g.values() if v > 0}):
            mask = [t for t in tested if g[t] == grp]
            for a in mask:
                dev.loc[a, a] = (n - 1) / len(mask)
                for b in mask:
                    dev.loc[a, b] = (n - 1) / len(mask)
        dev.columns = [f"{t}_deviation" for t in tested]
        pairs = list(itertools.combinations(tested, 2))
        pw = pd.DataFrame(0.0, index=tested, columns=[f"{a}_vs_{b}" for a, b in pairs])
        for a, b in pairs:
            pw.loc[a, f"{a}_vs_{b}"] = 1
            pw.loc[b, f"{a}_vs_{b}"] = -1
        adj = pw.copy()
        for a, b in pairs:
            col = f"{a}_vs_{b}"
            vals = [g[t] for t in tested if t in (a, b)]
            relevant = [v for v in vals if v > 0]
            if len(set(vals)) > 1 and relevant:
                for dg in dict.fromkeys(v for v in vals if v > 0):
                    rows = [t for t in tested if g[t] == dg]
                    matched = [t for t in rows if t in (a, b)]
                    adj.loc[rows, col] = pw.loc[matched[0], col] / len(rows)
        D = pd.concat([dev / (n - 1), adj], axis=1)
    m = pm.iloc[i][tested].to_numpy()
    S = pv[i][np.ix_([names.index(t) for t in tested], [names.index(t) for t in tested])]
    diff = D.to_numpy().T @ m
    se = np.sqrt(np.diag(D.to_numpy().T @ S @ D.to_numpy()))
    p = 2 * norm.sf(np.abs(diff / se))
    out = {}
    for k, c in enumerate(D.columns):
        out[f"mean_contrast_{c}"] = diff[k]
        out[f"se_contrast_{c}"] = se[k]
        out[f"p_contrast_{c}"] = p[k]
    return out


def _random_posterior(J=40, conds=("a", "b", "c", "d", "e"), seed=3):  # J >= 6
    rng = np.random.default_rng(seed)
    R = len(conds)
    pm = pd.DataFrame(rng.normal(size=(J, R)), index=[f"v{j}" for j in range(J)], columns=list(conds))
    A = rng.normal(size=(J, R, R))
    pv = np.einsum("jab,jcb->jac", A, A) / R + 0.05 * np.eye(R)
    orig = pd.DataFrame(rng.normal(size=(J, R)), index=pm.index, columns=list(conds))
    drop = rng.random((J, R)) < 0.3          # untested cells: zero, or NaN
    orig = orig.mask(drop, 0.0)
    orig.iloc[3, :] = 0.0                     # tested nowhere
    orig.iloc[4, 1:] = 0.0                    # tested in one condition
    orig.iloc[5, [0, 2]] = np.nan             # NaN = untested
    return pm, pv, orig


def test_pecotmr_documented_values():
    pm = pd.DataFrame([[0.5, 0.3, 0.0]], index=["chr1:100:A:G"], columns=["a", "b", "c"])
    pv = np.diag([0.1, 0.1, 0.1])[None]
    out = ml.mash_posterior_contrast(pm, pv, pm)      # two tested: one pairwise contrast
    assert list(out.columns) == ["feature_id", "mean_contrast_a_vs_b", "se_contrast_a_vs_b", "p_contrast_a_vs_b"]
    assert out["mean_contrast_a_vs_b"][0] == pytest.approx(0.5 - 0.3, abs=1e-15)
    assert out["se_contrast_a_vs_b"][0] == pytest.approx(np.sqrt(0.2), abs=1e-15)
    pm3 = pd.DataFrame([[0.5, 0.3, -0.2]], index=["chr1:100:A:G"], columns=["a", "b", "c"])
    out = ml.mash_posterior_contrast(pm3, RArray(np.diag([0.1] * 3)[:, :, None], [list("abc"), list("abc"), None]), pm3)
    assert out.shape == (1, 19)                       # feature_id + (3 deviation + 3 pairwise) x 3
    assert out["mean_contrast_a_deviation"][0] == pytest.approx(0.5 - (0.3 - 0.2) / 2, abs=1e-15)
    assert out["se_contrast_a_deviation"][0] == pytest.approx(np.sqrt(0.1 * 1.5), abs=1e-15)
    # an effect tested in fewer than two conditions gives nothing
    assert ml.mash_posterior_contrast(pm3, np.diag([1.0] * 3)[None], pm3 * [0, 1, 0]).shape == (0, 0)


def test_grouped_design_by_hand():
    """pecotmr's testthat case: a, b replicates (group 1), c alone in group 2, d ungrouped."""
    D = ml.contrast_design(list("abcd"), {"a": 1, "b": 1, "c": 2, "d": 0})
    third = -1 / 3
    np.testing.assert_allclose(D["a_deviation"], [0.5, 0.5, third, third], atol=1e-15)
    np.testing.assert_allclose(D["c_deviation"], [third, third, 1, third], atol=1e-15)
    np.testing.assert_allclose(D["d_deviation"], [third, third, third, 1], atol=1e-15)
    np.testing.assert_allclose(D["a_vs_b"], [1, -1, 0, 0], atol=0)        # within a group: unchanged
    np.testing.assert_allclose(D["a_vs_c"], [0.5, 0.5, -1, 0], atol=0)    # a's +1 spread over its group
    np.testing.assert_allclose(D["b_vs_d"], [0.5, 0.5, 0, -1], atol=0)
    np.testing.assert_allclose(D["c_vs_d"], [0, 0, 1, -1], atol=0)
    assert D.shape == (4, 10)


@pytest.mark.parametrize("grouping", [None, {"a": 1, "b": 0, "c": 1, "d": 2, "e": 2}])
def test_matches_pecotmr_loop(grouping):
    pm, pv, orig = _random_posterior()
    out = ml.mash_posterior_contrast(pm, pv, orig, grouping)
    ref_rows = [(pm.index[i], _r_fit_contrast(i, orig.fillna(0), pm, pv, grouping)) for i in range(pm.shape[0])]
    ref_rows = [(f, r) for f, r in ref_rows if r is not None]
    assert list(out["feature_id"]) == [f for f, _ in ref_rows]
    assert "v3" not in set(out["feature_id"]) and "v4" not in set(out["feature_id"])
    for k, (f, r) in enumerate(ref_rows):
        row = out.iloc[k]
        for col, v in r.items():
            assert row[col] == pytest.approx(v, rel=1e-12, abs=1e-14), (f, col)
        others = [c for c in out.columns[1:] if c not in r]
        assert row[others].isna().all()            # contrasts of untested conditions are NA
    # dplyr::select order: means (deviation, pairwise), SEs, p-values
    kinds = [(c.split("_contrast_")[0], "deviation" in c) for c in out.columns[1:]]
    order = [("mean", True), ("mean", False), ("se", True), ("se", False), ("p", True), ("p", False)]
    assert kinds == sorted(kinds, key=order.index)
    assert out.attrs["r_class"] == ["tbl_df", "tbl", "data.frame"]


def test_contrast_table_written_as_tibble(tmp_path):
    pm, pv, orig = _random_posterior(J=8)
    out = ml.mash_posterior_contrast(pm, pv, orig)
    write_rds(tmp_path / "c.rds", out)
    back = read_rds(tmp_path / "c.rds")
    assert back.attrs["r_class"] == ["tbl_df", "tbl", "data.frame"]
    assert isinstance(back.index, pd.RangeIndex)          # compact row names, as a tibble
    assert list(back.columns) == list(out.columns)
    assert list(back["feature_id"]) == list(out["feature_id"])
    np.testing.assert_array_equal(back.iloc[:, 1:].to_numpy(float), out.iloc[:, 1:].to_numpy(float))


def test_grouping_and_summary(tmp_path):
    conds = ["Ast", "Mic1", "Mic2", "Oli"]
    g = contrast_grouping(conds, [["Mic1", "Mic2"], []])
    assert g == {"Ast": 0, "Mic1": 1, "Mic2": 1, "Oli": 0}
    assert contrast_grouping(conds, [[], []]) is None
    with pytest.raises(MashInputError, match=r"group 1 \(Mic1,Mikro\): \['Mikro'\] are not conditions"):
        contrast_grouping(conds, [["Mic1", "Mikro"]])
    with pytest.raises(MashInputError, match=r"group 2: \['Mic1'\] are already in group 1"):
        contrast_grouping(conds, [["Mic1", "Mic2"], ["Mic1", "Oli"]])
    (tmp_path / "recipe.txt").write_text("# replicates\nMic1, Mic2\n\nAst,Oli\n")
    assert read_grouping_recipe(tmp_path / "recipe.txt") == [["Mic1", "Mic2"], ["Ast", "Oli"]]
    t1 = pd.DataFrame({"p_contrast_Ast_vs_Oli": [1e-6, 0.5, np.nan], "p_contrast_Ast_vs_Mic1": [0.2, 0.3, 0.9]})
    t2 = pd.DataFrame({"p_contrast_Ast_vs_Oli": [0.4, 0.5]})
    S = contrast_summary([t1, t2], ["Ast", "Mic1", "Oli"], 1e-5)
    assert list(S.columns) == ["Ast_vs_Mic1", "Ast_vs_Oli", "Mic1_vs_Oli"]
    assert S["Ast_vs_Oli"].tolist() == [1, 4, 1, 2] and S["Ast_vs_Mic1"].tolist() == [0, 3, 0, 1]
    assert S["Mic1_vs_Oli"].tolist() == [0, 0, 0, 0]


def test_bad_contrast_input():
    pm, pv, orig = _random_posterior(J=8)
    with pytest.raises(MashInputError, match=r"orig_mean: lacks conditions \['e'\]"):
        ml.mash_posterior_contrast(pm, pv, orig.drop(columns="e"))
    with pytest.raises(MashInputError, match="posterior_cov: shape"):
        ml.mash_posterior_contrast(pm, pv[:, :4, :4], orig)


# ----------------------------------------------------------------- the model on fewer conditions
def _g(names, R, grid=(0.5, 1.0), seed=1):
    rng = np.random.default_rng(seed)
    U = {}
    for k in names:
        A = rng.normal(size=(R, R))
        U[k] = A @ A.T / R
    fg = ml.FittedG(pi=np.ones(1 + len(names) * len(grid)), Ulist=U, grid=np.array(grid), usepointmass=True)
    fg.pi = fg.pi / fg.pi.sum()
    return fg


def test_marginal_subset_is_the_unobserved_limit():
    """The posterior of the kept conditions under the marginal model equals the full model's
    with the dropped conditions unobserved (their Shat huge)."""
    conds = ["c1", "c2", "c3", "c4"]
    g = _g(["U1", "U2", "U3"], 4)
    rng = np.random.default_rng(7)
    B = rng.normal(size=(30, 4)) * 2
    S = rng.uniform(0.5, 1.5, size=(30, 4))
    keep = ["c1", "c3", "c4"]
    sub = update_mash_model_cov(g, conds, keep)
    assert sub.pi.tolist() == g.pi.tolist() and sub.Ulist["U2"].shape == (3, 3)
    np.testing.assert_array_equal(sub.Ulist["U2"], g.Ulist["U2"][np.ix_([0, 2, 3], [0, 2, 3])])
    post_k = ml.mash_compute_posterior_matrices(sub, ml.mash_set_data(B[:, [0, 2, 3]], S[:, [0, 2, 3]]))
    S_big = S.copy()
    S_big[:, 1] = 1e7
    post_f = ml.mash_compute_posterior_matrices(g, ml.mash_set_data(B, S_big))
    for k in ("PosteriorMean", "PosteriorSD", "lfsr"):
        np.testing.assert_allclose(post_k[k].to_numpy(), post_f[k].to_numpy()[:, [0, 2, 3]], atol=1e-6)
    assert update_mash_model_cov(g, conds, conds) is g


def test_pecotmr_subset_rules():
    """updateMashModelCov: named singletons rebuilt, dropped ones removed with their weights,
    identity -> a 1 in the first cell, labelled matrices by name, others the leading block."""
    samples = ["brain", "blood", "muscle"]
    dd = np.arange(1.0, 10.0).reshape(3, 3)
    dd = dd @ dd.T
    het = np.full((3, 3), 0.5) + 0.5 * np.eye(3)
    U = {"identity": np.eye(3), "brain": np.diag([1.0, 0, 0]), "blood": np.diag([0, 1.0, 0]),
         "muscle": np.diag([0, 0, 1.0]), "dataDriven": dd, "het": het}
    g = ml.FittedG(pi=np.linspace(1, 2, 1 + 6 * 2), Ulist=U, grid=np.array([0.5, 1.0]), usepointmass=True)
    m2 = update_mash_model_cov(g, samples, ["brain", "muscle"], method="pecotmr", labelled=["dataDriven"])
    assert list(m2.Ulist) == ["identity", "brain", "muscle", "dataDriven", "het"]
    np.testing.assert_array_equal(m2.Ulist["identity"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(m2.Ulist["brain"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(m2.Ulist["muscle"], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(m2.Ulist["dataDriven"], dd[np.ix_([0, 2], [0, 2])])
    np.testing.assert_array_equal(m2.Ulist["het"], het[:2, :2])
    names = g.component_names()
    kept = [i for i, nm in enumerate(names) if "blood" not in nm]
    np.testing.assert_array_equal(m2.pi, g.pi[kept])
    assert not any("blood" in nm for nm in m2.component_names())
    # a condition name that is a substring of other components' names breaks pecotmr's rule
    g2 = ml.FittedG(pi=np.full(1 + 2 * 2, 0.2), Ulist={"A": np.diag([1.0, 0]), "ED_PCA_1": np.eye(2)},
                    grid=np.array([0.5, 1.0]))
    with pytest.raises(MashInputError, match="substring match"):
        update_mash_model_cov(g2, ["A", "B"], ["B"], method="pecotmr")
    with pytest.raises(MashInputError, match=r"keep: \['x'\] are not conditions"):
        update_mash_model_cov(g, samples, ["x"])
    with pytest.raises(MashInputError, match="method: 'exact' is not one of marginal, pecotmr"):
        update_mash_model_cov(g, samples, ["brain"], method="exact")
