"""Streaming / chunked / Dask posterior (issue #6): equality with the in-process engine,
resume after failure, store refusal, condition matching, sampling and sharing."""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

import mashlib as ml
from mashlib._errors import MashInputError
from mashlib.model import FittedG
from mashlib.stream import (ChunkFailedError, compute_posterior_streaming, estimate_memory,
                           get_pairwise_sharing_from_samples, open_store, parse_memory,
                           prepare_model, save_npy_store)
from mashlib.stream.kernel import posterior_chunk_fallback, resolve_kernel

OUT = ["PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb"]
CONDS = ["brain", "liver", "lung", "heart"]


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    J, R = 530, 4
    shared = rng.normal(size=(J, 1)) * 2.0
    B = np.where(rng.random((J, 1)) < 0.4, shared + 0.3 * rng.normal(size=(J, R)), 0.0)
    S = 0.4 + rng.random((J, R))
    Bhat = B + S * rng.normal(size=(J, R))
    data = ml.mash_set_data(Bhat, S)
    Ulist = ml.cov_canonical(data)
    grid = np.array([0.1, 0.4, 1.0, 2.5])
    P = 1 + len(Ulist) * grid.size
    pi = rng.dirichlet(np.ones(P))
    pi[[3, 7]] = 0.0                      # dropped by pi_thresh, as after a real fit
    g = FittedG(pi=pi, Ulist=Ulist, grid=grid, usepointmass=True)
    frame = pd.DataFrame(Bhat, columns=CONDS, index=[f"v{j}" for j in range(J)])
    return {"Bhat": Bhat, "Shat": S, "g": g, "frame": frame, "J": J, "R": R}


def engine_posterior(g, Bhat, Shat, alpha=0.0, A=None, cov=False):
    post = ml.mash_compute_posterior_matrices(g, ml.mash_set_data(Bhat, Shat, alpha=alpha), A=A,
                                              output_posterior_cov=cov)
    return {k: np.asarray(v) for k, v in post.items()}


def maxdiff(ref, res, keys=OUT):
    return max(float(np.abs(np.asarray(ref[k]) - np.asarray(res[k])).max()) for k in keys)


@pytest.mark.parametrize("chunk", [None, 97, 530])
def test_chunked_equals_engine(case, chunk):
    ref = engine_posterior(case["g"], case["Bhat"], case["Shat"])
    res = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], chunk_size=chunk,
                                      progress=False)
    assert maxdiff(ref, res) <= 1e-12
    assert res["PosteriorMean"].shape == (case["J"], case["R"])
    assert 0 <= res["lfsr"].min() and res["lfsr"].max() <= 1 and res["lfsr"].std() > 0.1


def test_chunked_ez_with_A_and_cov(case):
    A = np.array([[1.0, -1.0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    ref = engine_posterior(case["g"], case["Bhat"], case["Shat"], alpha=1.0, A=A, cov=True)
    res = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], alpha=1.0, A=A,
                                      output_posterior_cov=True, chunk_size=64, progress=False)
    assert maxdiff(ref, res, OUT + ["PosteriorCov"]) <= 1e-12
    assert res["PosteriorCov"].shape == (case["J"], 2, 2)


@pytest.mark.parametrize("fast_ez", [True, False])
def test_chunked_ez_rescaled_path(case, fast_ez):
    """EZ: fast path (common-cov kernel then x Shat_alpha) vs the engine's per-row path."""
    ref = engine_posterior(case["g"], case["Bhat"], case["Shat"], alpha=1.0)
    res = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], alpha=1.0,
                                      chunk_size=100, fast_ez=fast_ez, progress=False)
    d = maxdiff(ref, res)
    assert d == 0.0 if not fast_ez else d <= 1e-13
    assert np.abs(ref["PosteriorMean"]).max() > 1


def test_fallback_kernel_agrees_with_engine(case):
    """Independent Cholesky kernel vs the engine's spectral kernel (cross-check)."""
    ref = engine_posterior(case["g"], case["Bhat"], case["Shat"])
    res = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], chunk_size=200,
                                      kernel=posterior_chunk_fallback, progress=False)
    assert maxdiff(ref, res) < 1e-10
    assert resolve_kernel() is not posterior_chunk_fallback


def test_store_resume_after_failure(case, tmp_path):
    store = save_npy_store(tmp_path / "in", case["frame"], case["Shat"])
    calls = []
    engine_kernel = resolve_kernel()

    def failing(Bhat, *a, **k):
        calls.append(Bhat.shape[0])
        if len(calls) >= 4:                      # chunk 4 (rows 300-399) keeps failing
            raise RuntimeError("disk on fire")
        return engine_kernel(Bhat, *a, **k)

    out = tmp_path / "post"
    with pytest.raises(ChunkFailedError, match=r"rows 300-399"):
        compute_posterior_streaming(case["g"], store, chunk_size=100, out=out, progress=False,
                                    kernel=failing, retries=1)
    man = json.loads((out / "manifest.json").read_text())
    assert man["done_chunks"] == [0, 1, 2] and not man["complete"]
    assert len(calls) == 3 + 2                    # 3 good chunks, then 1 try + 1 retry
    partial = np.load(out / "PosteriorMean.npy")[:300].copy()
    calls.clear()

    def counting(Bhat, *a, **k):
        calls.append(Bhat.shape[0])
        return engine_kernel(Bhat, *a, **k)

    res = compute_posterior_streaming(case["g"], store, out=out, progress=False, kernel=counting)
    assert calls == [100, 100, 30]                # only chunks 4-6 (rows 300-529) recomputed
    ref = engine_posterior(case["g"], case["Bhat"], case["Shat"])
    assert maxdiff(ref, res) <= 1e-12
    np.testing.assert_array_equal(res["PosteriorMean"][:300], partial)
    st = open_store(out)
    assert st["manifest"]["complete"] and list(st["row_ids"][:2]) == ["v0", "v1"]
    assert st["conditions"] == CONDS


def test_retry_recovers_flaky_chunk(case):
    engine_kernel = resolve_kernel()
    state = {"n": 0}

    def flaky(*a, **k):
        state["n"] += 1
        if state["n"] == 2:
            raise MemoryError("transient")
        return engine_kernel(*a, **k)

    res = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], chunk_size=200,
                                      kernel=flaky, progress=False)
    assert maxdiff(engine_posterior(case["g"], case["Bhat"], case["Shat"]), res) <= 1e-12


def test_existing_store_refused(case, tmp_path):
    out = tmp_path / "post"
    kw = dict(chunk_size=300, out=out, progress=False)
    compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], **kw)
    with pytest.raises(MashInputError, match="overwrite"):
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], **kw)
    with pytest.raises(MashInputError, match="overwrite=True"):       # different data
        compute_posterior_streaming(case["g"], case["Bhat"] * 2, case["Shat"], **kw)
    res = compute_posterior_streaming(case["g"], case["Bhat"] * 2, case["Shat"], overwrite=True, **kw)
    ref = engine_posterior(case["g"], case["Bhat"] * 2, case["Shat"])
    assert maxdiff(ref, res) <= 1e-12
    other = tmp_path / "not_a_store"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(MashInputError, match="not a mashlib store"):
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], out=other,
                                    overwrite=True, progress=False)
    assert (other / "precious.txt").exists()


def test_condition_names_matched_and_mismatch_reported(case):
    g, fr = case["g"], case["frame"]
    ref = engine_posterior(g, case["Bhat"], case["Shat"])
    Sfr = pd.DataFrame(case["Shat"], columns=CONDS)
    perm = ["lung", "brain", "heart", "liver"]
    res = compute_posterior_streaming(g, fr[perm], Sfr[perm], conditions=CONDS, progress=False)
    assert res.conditions == CONDS and maxdiff(ref, res) <= 1e-12
    with pytest.raises(MashInputError, match="Shat: its columns"):
        compute_posterior_streaming(g, fr[perm], Sfr, conditions=CONDS, progress=False)
    bad = fr.rename(columns={"liver": "Liver", "heart": "kidney"})
    with pytest.raises(MashInputError) as ei:
        compute_posterior_streaming(g, bad, case["Shat"], conditions=CONDS, progress=False)
    msg = str(ei.value)
    assert "'liver'" in msg and "'heart'" in msg and "'Liver'" in msg and "'kidney'" in msg
    assert "exclude_conditions" in msg


def test_exclude_conditions_subsets_model(case):
    g = case["g"]
    keep = [0, 2, 3]
    Usub = {k: np.asarray(u)[np.ix_(keep, keep)] for k, u in g.Ulist.items()}
    gsub = FittedG(pi=g.pi, Ulist=Usub, grid=g.grid, usepointmass=True)
    ref = engine_posterior(gsub, case["Bhat"][:, keep], case["Shat"][:, keep])
    # the data lack "liver": drop it from the model by name
    fr = case["frame"].drop(columns="liver")
    Sfr = pd.DataFrame(case["Shat"][:, keep], columns=fr.columns)
    res = compute_posterior_streaming(g, fr, Sfr, conditions=CONDS, exclude_conditions=["liver"],
                                      progress=False)
    assert res.conditions == ["brain", "lung", "heart"] and maxdiff(ref, res) <= 1e-12
    with pytest.raises(MashInputError, match="not conditions of the model"):
        compute_posterior_streaming(g, fr, Sfr, conditions=CONDS, exclude_conditions=["spleen"],
                                    progress=False)


def test_dask_localcluster_two_workers_identical(case, tmp_path):
    distributed = pytest.importorskip("distributed")
    store = save_npy_store(tmp_path / "in", case["frame"], case["Shat"])
    ref = compute_posterior_streaming(case["g"], store, chunk_size=90, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = compute_posterior_streaming(case["g"], store, chunk_size=90, engine="dask",
                                          client=client, out=tmp_path / "post", progress=False)
        res_mem = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], chunk_size=90,
                                              engine="dask", client=client, progress=False)
        planned = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], engine="dask",
                                              client=client, progress=False)
    assert maxdiff(ref, res) == 0.0 and maxdiff(ref, res_mem) == 0.0
    # planned chunks differ by engine (1 chunk in-process, >= 4 per worker on Dask) but start on
    # multiples of 64 rows, so the numbers are bit-identical
    inproc = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], progress=False)
    assert planned.n_chunks >= 8 and planned.chunk_rows % 64 == 0 and inproc.n_chunks == 1
    assert maxdiff(inproc, planned) == 0.0
    assert open_store(tmp_path / "post")["manifest"]["done_chunks"] == list(range(6))


def test_dask_missing_is_input_error(case, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MashInputError, match=r"pip install mashlib\[dask\]"):
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], engine="dask",
                                    progress=False)


def test_long_table(case, tmp_path):
    res = compute_posterior_streaming(case["g"], case["frame"], case["Shat"], chunk_size=200,
                                      out=tmp_path / "post", long_table=True, progress=False)
    tab = pd.read_csv(res.long_table)
    assert list(tab.columns) == ["variant", "condition", "pm", "psd", "lfsr", "lfdr", "negprob"]
    assert len(tab) == case["J"] * case["R"]
    assert tab["variant"].iloc[5] == "v1" and tab["condition"].iloc[5] == "liver"
    np.testing.assert_allclose(tab["pm"].to_numpy().reshape(case["J"], case["R"]),
                               res["PosteriorMean"], rtol=1e-15, atol=0)
    mem = compute_posterior_streaming(case["g"], case["frame"], case["Shat"], long_table=True,
                                      progress=False)
    pd.testing.assert_frame_equal(mem.long_table.astype({"variant": str}), tab, check_exact=True)


def test_memory_budget(case):
    assert parse_memory("2GB") == 2_000_000_000 and parse_memory("1.5GiB") == int(1.5 * 2**30)
    with pytest.raises(MashInputError, match="max_memory"):
        parse_memory("lots")
    model = prepare_model(case["g"])
    assert model.n_components == int((case["g"].pi > 1e-10).sum())
    est = estimate_memory(model, 10**6, max_memory="1GB", baseline_bytes=2e8)
    assert 1 <= est.chunk_rows < 10**6 and est.peak_bytes <= 0.9e9 and est.chunk_rows % 64 == 0
    assert est.n_chunks == -(-10**6 // est.chunk_rows)
    with pytest.raises(MashInputError, match="too small"):
        compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], max_memory="1MB",
                                    progress=False)


def test_posterior_samples_moments(case):
    rows = np.arange(12)
    M = 4000
    res = compute_posterior_streaming(case["g"], case["Bhat"][rows], case["Shat"][rows],
                                      posterior_samples=M, seed=7, chunk_size=5, progress=False)
    smp = res["PosteriorSamples"]
    assert smp.shape == (12, case["R"], M)
    pm, psd = res["PosteriorMean"], res["PosteriorSD"]
    z = (smp.mean(axis=2) - pm) / (psd / np.sqrt(M))
    assert np.abs(z).max() < 5
    np.testing.assert_allclose(smp.std(axis=2), psd, rtol=0.08)
    negfrac = (smp < 0).mean(axis=2)
    np.testing.assert_allclose(negfrac, res["NegativeProb"], atol=5 * 0.5 / np.sqrt(M))
    again = compute_posterior_streaming(case["g"], case["Bhat"][rows], case["Shat"][rows],
                                        posterior_samples=M, seed=7, chunk_size=5, progress=False)
    np.testing.assert_array_equal(again["PosteriorSamples"], smp)


def _sharing_loop(samples, lfsr, factor, thresh, FUN):
    """Literal transcription of mashr's get_pairwise_sharing_from_samples loops."""
    J, R, M = samples.shape
    S = np.full((R, R), np.nan)
    for i in range(R):
        for j in range(i, R):
            a = np.flatnonzero((lfsr[:, i] < thresh) | (lfsr[:, j] < thresh))
            if a.size == 0:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = FUN(samples[a, i, :]) / FUN(samples[a, j, :])
            hit = (ratio > factor) & (ratio < (1 / factor if factor > 0 else np.inf))
            S[i, j] = np.mean(hit.sum(axis=1) / M)
    il = np.tril_indices(R, -1)
    S[il] = S.T[il]
    return S


@pytest.mark.parametrize("factor,FUN", [(0.5, None), (0.0, None), (0.5, np.abs)])
def test_pairwise_sharing_from_samples(factor, FUN):
    rng = np.random.default_rng(3)
    J, R, M = 60, 5, 30
    samples = rng.normal(size=(J, 1, M)) + 0.6 * rng.normal(size=(J, R, M))
    samples[0, 1, :3] = 0.0                    # 0/0 and x/0 ratios
    samples[0, 2, :3] = 0.0
    lfsr = rng.random((J, R)) * 0.2
    lfsr[:, 4] = 0.9                           # condition 4 never significant on its own
    f = (lambda x: x) if FUN is None else FUN
    S = get_pairwise_sharing_from_samples(samples=samples, lfsr=lfsr, factor=factor,
                                          lfsr_thresh=0.05, FUN=FUN, block_rows=7)
    np.testing.assert_allclose(S, _sharing_loop(samples, lfsr, factor, 0.05, f), rtol=0, atol=1e-14)
    d = np.diag(S)                             # x_i / x_i = 1 is shared unless 0/0
    assert np.all((d[:4] > 0.99) & (d[:4] <= 1.0)) and np.isnan(d[4])   # 4: no significant row
    lfsr[:] = 0.9
    assert np.isnan(get_pairwise_sharing_from_samples(samples=samples, lfsr=lfsr)).all()


def test_pairwise_sharing_from_stream_result(case):
    res = compute_posterior_streaming(case["g"], case["frame"], case["Shat"], posterior_samples=20,
                                      progress=False)
    S = get_pairwise_sharing_from_samples(res, lfsr_thresh=0.2)
    assert isinstance(S, pd.DataFrame) and list(S.columns) == CONDS
    ref = _sharing_loop(res["PosteriorSamples"], res["lfsr"], 0.5, 0.2, lambda x: x)
    np.testing.assert_allclose(S.to_numpy(), ref, atol=1e-14)
    assert ((S.to_numpy() > 0) & (S.to_numpy() <= 1)).all()


def test_relative_lik_matrix_dask_equals_inprocess(case):
    distributed = pytest.importorskip("distributed")
    from mashlib.model import calc_relative_lik_matrix
    g = case["g"]
    data = ml.mash_set_data(case["Bhat"], case["Shat"])
    xU = ml.expand_cov(g.Ulist, g.grid, True)
    ref = calc_relative_lik_matrix(data, xU)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = ml.calc_relative_lik_matrix_dask(data, xU, client=client, chunk_rows=128)
    assert res["loglik_matrix"].shape == (case["J"], len(xU))
    # 128-row blocks vs one block: BLAS may round the last bit differently by block shape
    np.testing.assert_allclose(res["loglik_matrix"], ref["loglik_matrix"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res["lfactors"], ref["lfactors"], rtol=1e-12, atol=1e-12)


def test_mashdata_input_with_V(case):
    """A MashData (transformed rows, its own V) streams to the engine's numbers."""
    R = case["R"]
    V = 0.3 * np.ones((R, R)) + 0.7 * np.eye(R)
    data = ml.mash_set_data(case["frame"], case["Shat"], V=V)
    ref = {k: np.asarray(v) for k, v in ml.mash_compute_posterior_matrices(case["g"], data).items()}
    res = compute_posterior_streaming(case["g"], data, chunk_size=128, progress=False)
    assert maxdiff(ref, res) <= 1e-12 and res.conditions == CONDS
    plain = compute_posterior_streaming(case["g"], case["Bhat"], case["Shat"], progress=False)
    assert np.abs(plain["PosteriorMean"] - res["PosteriorMean"]).max() > 1e-3   # V matters


def test_posterior_samples_ez_moments(case):
    rows = np.arange(10)
    M = 4000
    res = compute_posterior_streaming(case["g"], case["Bhat"][rows], case["Shat"][rows], alpha=1.0,
                                      posterior_samples=M, seed=3, progress=False)
    smp = res["PosteriorSamples"]
    z = (smp.mean(axis=2) - res["PosteriorMean"]) / (res["PosteriorSD"] / np.sqrt(M))
    assert np.abs(z).max() < 5
    np.testing.assert_allclose(smp.std(axis=2), res["PosteriorSD"], rtol=0.08)


def test_streaming_front_door_matches_in_memory_posterior():
    """``compute_posterior_streaming`` gives mash_compute_posterior_matrices' numbers; the in-memory
    front door refuses streaming options and names the streaming one."""
    import mashlib as ml

    rng = np.random.default_rng(11)
    J, R = 300, 4
    B = rng.normal(size=(J, R)) * rng.choice([0.0, 2.0], size=(J, 1))
    S = rng.uniform(0.5, 1.5, size=(J, R))
    data = ml.mash_set_data(B + rng.normal(size=(J, R)) * S, S)
    m = ml.mash(data, ml.cov_canonical(data), verbose=False)
    direct = ml.mash_compute_posterior_matrices(m, data)
    with pytest.raises(ml.MashInputError, match="compute_posterior_streaming"):
        ml.mash_compute_posterior_matrices(m, data, max_memory="2GB")
    streamed = ml.compute_posterior_streaming(m, data, max_memory="2GB", chunk_size=64, progress=False,
                                              fast_ez=False)
    for key in ("PosteriorMean", "PosteriorSD", "lfsr", "NegativeProb", "lfdr"):
        np.testing.assert_allclose(np.asarray(streamed[key]), np.asarray(direct[key]),
                                   rtol=0, atol=1e-12)
