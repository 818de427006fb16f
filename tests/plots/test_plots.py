"""plot_U (protocol mash_plot_prior.R behaviour), plot_sharing and mash_plot_meta."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from mashlib._errors import MashInputError  # noqa: E402
from mashlib.plots import _r_round, mash_plot_meta, plot_sharing, plot_U, prior_palette  # noqa: E402

REF = Path(__file__).parents[1] / "data" / "reference"
CONDS = ["ALL", "Ast", "End", "Exc", "Inh", "Mic", "OPC", "Oli"]


def _titles(figs):
    return [ax.get_title(loc="left") for f in figs for ax in f.axes if ax.get_title(loc="left")]


def _chain_prior():
    """A prior shaped like R's ed_bovy output on the fixture: 32 U, w named null + U."""
    with open(REF / "golden" / "chain_values.json") as fh:
        ch = json.load(fh)
    names = ch["prior_U_names"]
    rng = np.random.default_rng(3)
    U = {}
    for nm in names:
        a = rng.normal(size=(8, 2))
        U[nm] = pd.DataFrame(a @ a.T + 0.1 * np.eye(8), index=CONDS, columns=CONDS)
    w = pd.Series(ch["prior_w"], index=["null"] + names)
    return {"U": U, "w": w, "loglik": None}, w


def test_plot_U_chain_prior_order_titles_message_and_files(tmp_path, mashlib_log):
    prior, w = _chain_prior()
    out = tmp_path / "toy.EE.prior.pdf"
    figs = plot_U(prior, output=out, data_name="/some/dir/toy.EE.prior.rds")
    msg = mashlib_log().strip()
    # 9 of the 32 components have w > 1e-6 in R; length(w) counts the null
    assert msg == "9 of 33 components have weight > 1e-06"
    titles = _titles(figs)
    wu = w.drop("null")
    expected = wu[wu > 1e-6].sort_values(ascending=False, kind="stable")
    assert titles == [f"{k} w = {_r_round(v)}" for k, v in expected.items()]
    assert titles[0] == "simple_het_3 w = 0.149426"
    assert "End w = 0.06269" in titles
    assert len(figs) == 1 and figs[0].get_size_inches().tolist() == [20.0, 8.0]
    texts = [t.get_text() for t in figs[0].texts]
    assert "Data source: toy.EE.prior.rds" in texts
    assert out.stat().st_size > 1000 and out.read_bytes()[:5] == b"%PDF-"
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # atomic writes leave no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.EE.prior.pdf", "toy.EE.prior.png"]


def test_plot_U_heatmap_values_upper_triangle_reversed():
    X = np.array([[4.0, 2.0, -1.0], [2.0, 2.0, 0.5], [-1.0, 0.5, 1.0]])
    figs = plot_U({"U": {"a": X}, "w": {"a": 1.0}})
    ax = figs[0].axes[0]
    vals = np.ma.getdata(ax.images[0].get_array()).reshape(3, 3)
    mask = np.ma.getmaskarray(ax.images[0].get_array()).reshape(3, 3)
    # X / max(diag) with the lower triangle removed, rows reversed (row 1 drawn on top)
    lat = X / 4.0
    exp = lat[::-1]
    keep = ~np.tril(np.ones((3, 3), bool), -1)[::-1]
    np.testing.assert_allclose(vals[keep], exp[keep])
    assert mask.tolist() == (~keep).tolist()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3", "2", "1"]
    # to_cor uses cov2cor
    figs = plot_U({"U": {"a": X}, "w": {"a": 1.0}}, to_cor=True, remove_label=True)
    ax = figs[0].axes[0]
    vals = np.ma.getdata(ax.images[0].get_array()).reshape(3, 3)[::-1]
    d = np.sqrt(np.diag(X))
    assert vals[0, 1] == pytest.approx(2.0 / (d[0] * d[1]))
    assert vals[0, 2] == pytest.approx(-1.0 / (d[0] * d[2]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t1", "t2", "t3"]


def test_plot_U_weights_alignment_max_comp_and_unwrapping(mashlib_log):
    U = {"x": np.eye(2), "y": {"mat": 2 * np.eye(2)}, "z": np.ones((2, 2)), "q": np.zeros((2, 2))}
    # named w: aligned by name, missing -> 0; "null" dropped
    w = pd.Series({"null": 0.5, "z": 0.3, "y": 0.15, "q": 0.05})
    figs = plot_U({"U": U, "w": w})
    assert _titles(figs) == ["z w = 0.3", "y w = 0.15", "q w = 0.05"]
    assert mashlib_log().strip() == "3 of 4 components have weight > 1e-06"
    # positional w (no names), w longer than U is cut
    figs = plot_U({"U": U, "w": np.array([0.1, 0.4, 0.0, 0.2, 0.3])})
    assert _titles(figs) == ["y w = 0.4", "q w = 0.2", "x w = 0.1"]
    # max_comp > 1 truncates; 1 and -1 mean all
    assert len(_titles(plot_U({"U": U, "w": w}, max_comp=2))) == 2
    assert len(_titles(plot_U({"U": U, "w": w}, max_comp=1))) == 3
    # unnamed components (a list) become Comp_i; a bare Ulist has all weights 1
    figs = plot_U({"U": [np.eye(2), np.ones((2, 2))], "w": [0.2, 0.8]})
    assert _titles(figs) == ["Comp_2 w = 0.8", "Comp_1 w = 0.2"]
    assert _titles(plot_U({"a": np.eye(2), "b": np.eye(2)})) == ["a w = 1", "b w = 1"]
    # `name` selects a sub-element
    figs = plot_U({"EE": {"U": {"a": np.eye(2)}, "w": {"a": 1.0}}}, name="EE")
    assert _titles(figs) == ["a w = 1"]


def test_plot_U_many_components_paginate(tmp_path, monkeypatch):
    import mashlib.plots as mp

    # pages hold 10 rows of 5 (50 panels) by default; 1 row here to keep the test fast
    assert mp._ROWS_PER_PAGE == 10
    monkeypatch.setattr(mp, "_ROWS_PER_PAGE", 1)
    U = {f"c{k}": np.eye(3) for k in range(7)}
    figs = plot_U(U, output=tmp_path / "big")
    assert len(figs) == 2 and len(_titles(figs)) == 7
    assert [f.get_size_inches().tolist() for f in figs] == [[20.0, 4.0], [20.0, 4.0]]
    pdf = (tmp_path / "big.pdf").read_bytes()
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 2
    assert (tmp_path / "big.png").exists() and (tmp_path / "big_page2.png").exists()


def test_plot_U_errors():
    with pytest.raises(MashInputError, match="smaller `tol`"):
        plot_U({"U": {"a": np.eye(2)}, "w": {"a": 1e-9}})
    with pytest.raises(MashInputError, match="no 'U'"):
        plot_U({"w": [1.0], "loglik": 3.0})
    with pytest.raises(MashInputError, match="max_comp"):
        plot_U({"a": np.eye(2)}, max_comp=0)
    with pytest.raises(MashInputError, match="cannot find 'EZ'"):
        plot_U({"EE": {"U": {"a": np.eye(2)}}}, name="EZ")


def test_palette_matches_r_colorramppalette():
    cmap = prior_palette(128)
    assert cmap.N == 128
    assert to_hex(cmap(0)) == "#4575b4" and to_hex(cmap(127)) == "#d73027"
    # colorRampPalette: linear RGB interpolation between the 7 anchors at 128 points;
    # colour 2 lies 6/127 of the way from #4575B4 to #91BFDB
    r = np.array(cmap(1)[:3]) * 255
    exp = np.array([0x45, 0x75, 0xB4]) + 6 / 127 * (np.array([0x91, 0xBF, 0xDB]) - [0x45, 0x75, 0xB4])
    np.testing.assert_allclose(r, exp, atol=1e-6)
    # the centre anchor #FFFFBF sits at 1/2 on [-1, 1] (between colours 64 and 65)
    mid = (np.array(cmap(63)[:3]) + np.array(cmap(64)[:3])) / 2 * 255
    np.testing.assert_allclose(mid, [0xFF, 0xFF, 0xBF], atol=1.5)


def test_r_round_formatting():
    assert _r_round(0.350889467491187) == "0.350889"
    assert _r_round(0.0001) == "1e-04"
    assert _r_round(1.2e-05) == "1.2e-05"
    assert _r_round(0.00012) == "0.00012"
    assert _r_round(4e-7) == "0"


def test_plot_sharing_and_meta(tmp_path):
    S = pd.DataFrame([[1.0, 0.4], [0.4, 1.0]], index=["a", "b"], columns=["a", "b"])
    fig = plot_sharing(S, output=tmp_path / "share.pdf")
    ax = fig.axes[0]
    vals = np.ma.getdata(ax.collections[0].get_array()).reshape(2, 2)
    np.testing.assert_allclose(vals, S.to_numpy()[::-1])
    assert [t.get_text() for t in ax.texts] == ["1.00", "0.40", "0.40", "1.00"]
    assert (tmp_path / "share.pdf").stat().st_size > 1000
    with pytest.raises(MashInputError, match="square"):
        plot_sharing(np.ones((2, 3)))
    pm = pd.DataFrame([[1.0, -2.0, 0.5]], index=["snp1"], columns=["c1", "c2", "c3"])
    psd = pd.DataFrame([[0.5, 1.0, 0.1]], index=["snp1"], columns=["c1", "c2", "c3"])
    fig = mash_plot_meta({"PosteriorMean": pm, "PosteriorSD": psd}, "snp1",
                         output=tmp_path / "meta.pdf")
    ax = fig.axes[0]
    segs = ax.collections[0].get_segments()
    lo = sorted((s[0][0], s[1][0]) for s in segs)
    exp = sorted(zip(pm.to_numpy()[0] - 1.96 * psd.to_numpy()[0],
                     pm.to_numpy()[0] + 1.96 * psd.to_numpy()[0]))
    np.testing.assert_allclose(lo, exp)
    # conditions top-down in their order
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert ticks["c1"] > ticks["c2"] > ticks["c3"]
    assert (tmp_path / "meta.pdf").exists() and (tmp_path / "meta.png").exists()
    with pytest.raises(MashInputError, match="row"):
        mash_plot_meta({"PosteriorMean": pm, "PosteriorSD": psd}, 5)


def test_sharing_and_meta_from_a_mash_fit():
    from mashlib.model import cov_canonical
    from mashlib.model import mash_set_data
    from mashlib.model import mash
    from mashlib.model import get_pairwise_sharing, get_pm, get_psd

    with open(REF / "golden" / "fixture_mashr_input.json") as fh:
        f = json.load(fh)
    b = pd.DataFrame(f["strong.b"]["values"], columns=f["strong.b"]["colnames"],
                     index=[f"mash::mash::var{i + 1}" for i in range(17)])
    s = pd.DataFrame(f["strong.s"]["values"], columns=f["strong.s"]["colnames"], index=b.index)
    md = mash_set_data(b, s, alpha=0, zero_Bhat_Shat_reset=1000)
    m = mash(md, cov_canonical(md))
    fig = plot_sharing(m)
    vals = np.ma.getdata(fig.axes[0].collections[0].get_array()).reshape(8, 8)
    np.testing.assert_allclose(vals[::-1], get_pairwise_sharing(m).to_numpy())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == CONDS
    fig = mash_plot_meta(m, "mash::mash::var3")
    ax = fig.axes[0]
    assert ax.get_title() == "mash::mash::var3"
    pm, psd = get_pm(m).iloc[2].to_numpy(), get_psd(m).iloc[2].to_numpy()
    segs = ax.collections[0].get_segments()
    np.testing.assert_allclose([sg[0][0] for sg in segs], pm - 1.96 * psd)
    np.testing.assert_allclose([sg[1][0] for sg in segs], pm + 1.96 * psd)


def test_unlabelled_components_borrow_condition_names():
    lab = pd.DataFrame(np.eye(3), index=["a", "b", "c"], columns=["a", "b", "c"])
    figs = plot_U({"U": {"PCA_1": lab, "ED_PCA_1": 2 * np.eye(3)},
                   "w": {"PCA_1": 0.4, "ED_PCA_1": 0.6}})
    assert _titles(figs) == ["ED_PCA_1 w = 0.6", "PCA_1 w = 0.4"]
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in figs[0].axes[:2]]
    assert ticks == [["a", "b", "c"], ["a", "b", "c"]]


def test_plot_U_readable_at_34_and_60_conditions(tmp_path):
    """Beyond 20 conditions: panels grow, labels sized to the cells (>= 5 pt), rotated 90 degrees,
    no two x labels overlap, and the PNG is written at 150 dpi."""
    from mashlib.plots import plot_component
    for n in (34, 60):
        names = [f"Tissue_with_a_long_name_{i}" for i in range(n)]
        rng = np.random.default_rng(n)
        U = {}
        for k in range(2):
            a = rng.normal(size=(n, 2))
            U[f"c{k}"] = pd.DataFrame(a @ a.T + np.eye(n), index=names, columns=names)
        prior = {"U": U, "w": {f"c{k}": 0.5 for k in range(2)}}
        fig = plot_U(prior)[0]
        ax = fig.axes[0]
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig).draw()
        labels = ax.get_xticklabels()
        assert all(t.get_rotation() == 90 for t in labels) and labels[0].get_fontsize() >= 5
        boxes = [t.get_window_extent() for t in labels]
        assert all(boxes[i].x1 <= boxes[i + 1].x0 + 0.5 for i in range(n - 1)), "x labels overlap"
        if n == 34:
            out = tmp_path / f"p{n}.pdf"
            plot_U({"U": {"c0": U["c0"]}, "w": {"c0": 1.0}}, output=out)
            from PIL import Image
            with Image.open(out.with_suffix(".png")) as im:
                assert round(im.info["dpi"][0]) == 150
        one = plot_component(U["c0"], "c0", w=0.25)
        assert [t.get_text() for t in one.axes[0].get_xticklabels()] == names
