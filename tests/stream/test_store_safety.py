"""Issue 10, items 1-3 and the memory budget: output stores never destroy inputs, overwrite
deletes only mashlib's own output stores, a resume verifies every finished chunk, and an
unfinished store does not open as finished."""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

import mashlib as ml
from mashlib._errors import MashInputError
from mashlib.model import FittedG
from mashlib.stream import (ChunkFailedError, compute_posterior_streaming, estimate_memory, open_store,
                           prepare_model, save_npy_store)
from mashlib.stream.kernel import resolve_kernel

OUT = ["PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb"]
CONDS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    J, R = 1000, 3
    B = np.where(rng.random((J, 1)) < 0.4, 2.0 * rng.normal(size=(J, 1)), 0.0) + 0.2 * rng.normal(size=(J, R))
    S = 0.5 + rng.random((J, R))
    Bhat = B + S * rng.normal(size=(J, R))
    data = ml.mash_set_data(Bhat, S)
    Ulist = ml.cov_canonical(data)
    grid = np.array([0.3, 1.0, 3.0])
    pi = rng.dirichlet(np.ones(1 + len(Ulist) * grid.size))
    return {"Bhat": Bhat, "Shat": S, "g": FittedG(pi=pi, Ulist=Ulist, grid=grid), "J": J}


def engine(g, Bhat, Shat):
    post = ml.mash_compute_posterior_matrices(g, ml.mash_set_data(Bhat, Shat))
    return {k: np.asarray(v) for k, v in post.items()}


def store(tmp_path, case, name="in", B=None):
    return save_npy_store(tmp_path / name, case["Bhat"] if B is None else B, case["Shat"], CONDS)


def files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------- item 1
@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_out_overlapping_input_store_refused_before_deleting(case, tmp_path, where):
    src = store(tmp_path, case)
    before = files(src)
    out = {"same": src, "inside": src / "post", "contains": tmp_path}[where]
    with pytest.raises(MashInputError, match="input store"):
        compute_posterior_streaming(case["g"], src, out=out, overwrite=True, progress=False)
    assert files(src) == before                        # Bhat.npy, Shat.npy, manifest intact
    assert not (src / "post").exists()


def test_out_holding_memory_mapped_input_refused(case, tmp_path):
    src = store(tmp_path, case)
    st = open_store(src)
    with pytest.raises(MashInputError, match="memory-mapped"):
        compute_posterior_streaming(case["g"], st["Bhat"], st["Shat"], out=src, overwrite=True,
                                    progress=False)
    assert (src / "Bhat.npy").is_file()
    with pytest.raises(MashInputError, match="memory-mapped"):      # input store re-saved onto itself
        save_npy_store(src, st["Bhat"], st["Shat"], CONDS, overwrite=True)
    assert (src / "Bhat.npy").is_file()


def test_overwrite_deletes_only_marked_output_stores(case, tmp_path):
    other_input = store(tmp_path, case, "other_input")
    before = files(other_input)
    with pytest.raises(MashInputError, match="input store"):       # an input store is never an out
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], out=other_input,
                                    overwrite=True, progress=False)
    assert files(other_input) == before
    # a posterior store without mashlib's owner mark (e.g. written by hand or an older version)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"format": "mashlib-npy-store", "kind": "posterior",
                                                    "arrays": {}, "conditions": CONDS}))
    (fake / "data.npy").write_bytes(b"precious")
    with pytest.raises(MashInputError, match="not marked"):
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], out=fake, overwrite=True,
                                    progress=False)
    assert (fake / "data.npy").read_bytes() == b"precious"
    # our own store with a user's file dropped into it: refused, nothing deleted
    out = tmp_path / "post"
    compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], out=out, progress=False)
    assert json.loads((out / "manifest.json").read_text())["owner"] == "mashlib-posterior-store"
    (out / "notes.txt").write_text("mine")
    n_before = len(list(out.iterdir()))
    with pytest.raises(MashInputError, match="notes.txt"):
        compute_posterior_streaming(case["g"], case["Bhat"] * 2, case["Shat"], out=out,
                                    overwrite=True, progress=False)
    assert len(list(out.iterdir())) == n_before
    (out / "notes.txt").unlink()
    res = compute_posterior_streaming(case["g"], case["Bhat"] * 2, case["Shat"], out=out,
                                      overwrite=True, progress=False)
    ref = engine(case["g"], case["Bhat"] * 2, case["Shat"])
    assert max(np.abs(ref[k] - np.asarray(res[k])).max() for k in OUT) <= 1e-12


# ----------------------------------------------------------------------------- item 2
def _killed_run(case, src, out, stop_at):
    """Write the first chunks, then fail (as a killed run leaves the store)."""
    engine_kernel = resolve_kernel()
    seen = []

    def failing(Bhat, *a, **k):
        seen.append(1)
        if len(seen) > stop_at:
            raise RuntimeError("killed")
        return engine_kernel(Bhat, *a, **k)

    with pytest.raises(ChunkFailedError):
        compute_posterior_streaming(case["g"], src, out=out, chunk_size=128, calibrate=False,
                                    progress=False, kernel=failing, retries=0)


def test_resume_recomputes_chunks_whose_input_changed(case, tmp_path, caplog):
    src = store(tmp_path, case)
    out = tmp_path / "post"
    _killed_run(case, src, out, stop_at=4)
    man = json.loads((out / "manifest.json").read_text())
    assert man["done_chunks"] == [0, 1, 2, 3]
    assert set(man["chunks"]) == {"0", "1", "2", "3"} and len(man["chunks"]["1"]["input"]) == 32
    # rows 200-299 of the input change (chunks 1 and 2: rows 128-383), rows 0-127 do not
    B2 = case["Bhat"].copy()
    B2[200:300] += 3.0
    save_npy_store(src, B2, case["Shat"], CONDS, overwrite=True)
    calls = []
    engine_kernel = resolve_kernel()

    def counting(Bhat, *a, **k):
        calls.append(Bhat.shape[0])
        return engine_kernel(Bhat, *a, **k)

    with caplog.at_level(logging.WARNING, logger="mashlib"):
        res = compute_posterior_streaming(case["g"], src, out=out, progress=False, kernel=counting)
    assert "rows 128-255" in caplog.text and "rows 256-383" in caplog.text
    assert "rows 0-127" not in caplog.text and "input rows changed" in caplog.text
    assert len(calls) == 2 + 4                        # chunks 1, 2 redone; 4..7 new; 0, 3 kept
    ref = engine(case["g"], B2, case["Shat"])
    assert max(np.abs(ref[k] - np.asarray(res[k])).max() for k in OUT) <= 1e-12


def test_resume_recomputes_chunk_whose_output_was_damaged(case, tmp_path, caplog):
    out = tmp_path / "post"
    src = store(tmp_path, case)
    _killed_run(case, src, out, stop_at=2)
    pm = np.load(out / "lfsr.npy", mmap_mode="r+")
    pm[130] = 0.0                                    # a torn / overwritten page in chunk 1
    pm.flush()
    del pm
    with caplog.at_level(logging.WARNING, logger="mashlib"):
        res = compute_posterior_streaming(case["g"], src, out=out, progress=False)
    assert "rows 128-255" in caplog.text and "output rows on disk differ" in caplog.text
    ref = engine(case["g"], case["Bhat"], case["Shat"])
    assert max(np.abs(ref[k] - np.asarray(res[k])).max() for k in OUT) <= 1e-12


def test_resume_with_other_model_is_refused(case, tmp_path):
    out = tmp_path / "post"
    src = store(tmp_path, case)
    _killed_run(case, src, out, stop_at=2)
    g2 = FittedG(pi=case["g"].pi[::-1].copy(), Ulist=case["g"].Ulist, grid=case["g"].grid)
    with pytest.raises(MashInputError, match="unfinished posterior of a different call"):
        compute_posterior_streaming(g2, src, out=out, progress=False)
    with pytest.raises(MashInputError, match="different call"):      # other V
        compute_posterior_streaming(case["g"], src, out=out, progress=False, V=0.5 * np.eye(3) + 0.5)


# ----------------------------------------------------------------------------- item 3
def test_open_store_unfinished_refuses_or_partial_nan(case, tmp_path):
    out = tmp_path / "post"
    src = store(tmp_path, case)
    _killed_run(case, src, out, stop_at=3)
    with pytest.raises(MashInputError, match=r"unfinished.*384 of 1000 rows.*rows 0-383.*partial=True"):
        open_store(out)
    with pytest.warns(UserWarning, match="unwritten rows are NaN"):
        st = open_store(out, partial=True)
    lfsr = st["lfsr"]
    assert np.isnan(lfsr[384:]).all() and not np.isnan(lfsr[:384]).any()
    ref = engine(case["g"], case["Bhat"], case["Shat"])
    np.testing.assert_allclose(lfsr[:384], ref["lfsr"][:384], atol=1e-12)
    del st, lfsr
    assert np.load(out / "lfsr.npy")[500].tolist() == [0.0, 0.0, 0.0]   # the file is not changed
    # resumed, it opens normally
    compute_posterior_streaming(case["g"], src, out=out, progress=False)
    assert not np.isnan(open_store(out)["lfsr"]).any()


# ----------------------------------------------------------------------------- memory budget
def _rss_file() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    raise OSError


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc RssFile")
def test_memory_mapped_input_pages_released(case, tmp_path):
    """A memory-mapped input must not stay resident as it is streamed: the budget holds.

    (The issue: 2,000,000 x 20 from a memory map with max_memory='500MB' peaked at 504 MB RSS.)
    Here 250,000 x 4 (8 MB per matrix): the file-backed resident set may grow by at most a few
    chunks' pages, not by the whole input.
    """
    rng = np.random.default_rng(1)
    J, R = 250_000, 3
    src = save_npy_store(tmp_path / "big", rng.normal(size=(J, R)), 0.5 + rng.random((J, R)), CONDS)
    st = open_store(src)
    before = _rss_file()
    res = compute_posterior_streaming(case["g"], st["Bhat"], st["Shat"], chunk_size=16_384,
                                      out=tmp_path / "post", progress=False, calibrate=False)
    grown = _rss_file() - before
    input_bytes = 2 * J * R * 8
    assert grown < 0.1 * input_bytes, (grown, input_bytes)      # main: grows by all 12 MB
    assert res["lfsr"].shape == (J, R) and 0 <= res["lfsr"].min()
    # the plan counts the mapped pages and the copy (2 x 8 R bytes per mapped matrix and row)
    e0 = estimate_memory(prepare_model(case["g"]), J, max_memory="1GB", in_memory_outputs=False)
    e1 = estimate_memory(prepare_model(case["g"]), J, max_memory="1GB", in_memory_outputs=False,
                            mapped_bytes_per_row=2 * 2 * 8.0 * R)
    assert e1.bytes_per_row - e0.bytes_per_row == pytest.approx(96.0)
