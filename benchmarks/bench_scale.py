"""Benchmark of the streaming posterior (issue #6) -> benchmarks/results/scale.json.

Runs, each in its own subprocess so that its peak resident memory (``VmHWM``) is its own:

* ``r_case``   -- R's ``scale`` reference: mashr's fit (pi, grid, canonical + 5 extra
  covariances) applied to the 50,000 new rows x 20 conditions (EE, Shat varying by row);
  rows/s against R's 520 rows/s (96.1 s) and agreement with R's numbers.
* ``big_ez``   -- 1,000,000 rows x 44 conditions, ~100 kept components, EZ model, input
  and output ``.npy`` stores, in-process under ``max_memory="2GB"``: rows/s, peak RSS, and
  the up-front memory estimate against the measured peak.
* ``big_ee``   -- the same model on the first rows with the EE model (per-row covariance
  path): rows/s, extrapolated to 10^6 rows.
* ``inproc_sub``, ``dask_1w``, ``dask_2w`` -- a row subset of the big store in-process and
  on a Dask LocalCluster with 1 and 2 single-threaded workers: speed-up and max |diff|.

Usage::

    python benchmarks/bench_scale.py            # full run (several minutes on 2 cores)
    python benchmarks/bench_scale.py --quick    # small sizes, seconds (smoke test)

Reads the R case from ``../shared/reference/scale`` (benchmarks may; tests may not).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
REF = ROOT.parent / "shared" / "reference" / "scale"
R_RATE = 50_000 / 96.129          # mashr 0.2.81, mash_compute_posterior_matrices, 50k x 20
R_PEAK_KB = 1_478_156

SIZES = {"full": {"big": 1_000_000, "ee": 3_000, "dask": 200_000, "r": 50_000},
         "quick": {"big": 20_000, "ee": 200, "dask": 6_000, "r": 3_000}}


def vm_hwm() -> int:
    """Peak resident set size of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- model + data
def big_model(R=44, n_kept=100, seed=5):
    """Canonical covariances on R conditions + 3 ED-like full-rank + 3 rank-1; 12-point grid;
    random pi on ``n_kept`` components (null included)."""
    import mashlib as ml
    from mashlib.model import FittedG
    rng = np.random.default_rng(seed)
    conds = [f"tissue{i + 1:02d}" for i in range(R)]
    U = ml.cov_canonical(ml.mash_set_data(rng.normal(size=(4, R)), 1.0, conditions=conds))
    for i in range(3):
        f = rng.normal(size=(R, 3))
        U[f"ED_{i + 1}"] = f @ f.T + 0.1 * np.eye(R)
    for i in range(3):
        f = rng.normal(size=(R, 1))
        U[f"rank1_{i + 1}"] = f @ f.T
    U = ml.normalize_Ulist(U)
    grid = np.geomspace(0.05, 4.0, 12)
    P = 1 + len(U) * grid.size
    pi = np.zeros(P)
    keep = np.r_[0, rng.choice(np.arange(1, P), n_kept - 1, replace=False)]
    pi[keep] = rng.dirichlet(np.ones(n_kept))
    return FittedG(pi, U, grid, True), conds


def make_big_store(path: Path, J: int, conds, seed=9):
    """Simulated (Bhat, Shat) for J rows: 20% shared effects, log-normal standard errors."""
    from mashlib.stream import save_npy_store
    if (path / "manifest.json").exists() and json.loads((path / "manifest.json").read_text())["n_rows"] == J:
        return path
    rng = np.random.default_rng(seed)
    R = len(conds)
    S = np.exp(0.3 * rng.normal(size=(J, R))) * 0.5
    B = np.where(rng.random((J, 1)) < 0.2, rng.normal(size=(J, 1)) * 1.5 + 0.5 * rng.normal(size=(J, R)), 0.0)
    B += S * rng.normal(size=(J, R))
    ids = np.char.add("chr1:", np.arange(J).astype(str))
    save_npy_store(path, B, S, conds, ids, overwrite=True)
    return path


# ----------------------------------------------------------------------------- runs (children)
def run_r_case(n):
    import pandas as pd
    import mashlib as ml
    from mashlib.io import read_rds
    from mashlib.model import FittedG
    from mashlib.stream import compute_posterior_streaming
    B = read_rds(REF / "Bhat_new_50000x20.rds").iloc[:n]
    S = np.asarray(read_rds(REF / "Shat_new_50000x20.rds"), float)[:n]
    ee = json.loads((REF / "step_mash_ee.json").read_text())
    setup = json.loads((REF / "scale_setup.json").read_text())
    post = json.loads((REF / "step_posterior50k.json").read_text())
    U = ml.cov_canonical(ml.mash_set_data(B.iloc[:5], S[:5]))
    for nm in setup["Uextra"]["names"]:
        U[nm] = np.asarray(setup["Uextra"]["matrices"][nm], float)
    g = FittedG(np.asarray(ee["pi"]["values"]), ml.normalize_Ulist(U), np.asarray(ee["grid"]), True)
    assert g.component_names() == ee["pi"]["names"]
    t = time.perf_counter()
    res = compute_posterior_streaming(g, B, S, max_memory="2GB", progress=False)
    dt = time.perf_counter() - t
    pm = np.asarray(res["PosteriorMean"])
    out = {"rows": n, "conditions": 20, "kept_components": int((g.pi > 1e-10).sum()),
           "seconds": dt, "rows_per_s": n / dt, "r_rows_per_s": R_RATE, "speedup_vs_R": n / dt / R_RATE,
           "peak_rss_bytes": vm_hwm(), "r_peak_rss_bytes": R_PEAK_KB * 1024,
           "max_abs_diff_vs_R_first5_PosteriorMean": float(np.abs(pm[:5] - post["PosteriorMean_first5rows"]).max()),
           "max_abs_diff_vs_R_first5_lfsr": float(np.abs(res["lfsr"][:5] - post["lfsr_first5rows"]).max()),
           "estimate": str(res.estimate)}
    if n == 50_000:
        out["max_abs_diff_vs_R_colmeans"] = float(np.abs(pm.mean(0) - post["PosteriorMean_colmeans"]).max())
    return out


def _big_call(J_total, rows, alpha, work, engine="inprocess", n_workers=None, tag="big"):
    from mashlib.stream import compute_posterior_streaming
    g, conds = big_model()
    store = work / f"input_{J_total}"
    out = work / f"out_{tag}"
    src = str(store)
    if rows < J_total:                       # a row subset, read from the store (mmap)
        import pandas as pd
        Bm = np.load(store / "Bhat.npy", mmap_mode="r")
        Sm = np.load(store / "Shat.npy", mmap_mode="r")
        src = pd.DataFrame(np.array(Bm[:rows]), columns=conds)
        Shat = np.array(Sm[:rows])
    else:
        Shat = None
    client = cluster = None
    if engine == "dask":
        import distributed
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    t = time.perf_counter()
    res = compute_posterior_streaming(g, src, Shat, alpha=alpha, conditions=conds, max_memory="2GB",
                                      out=out, overwrite=True, engine=engine, client=client,
                                      progress=False, verbose=True)
    dt = time.perf_counter() - t
    info = {"rows": rows, "conditions": len(conds), "kept_components": int((g.pi > 1e-10).sum()),
            "alpha": alpha, "engine": engine, "seconds": dt, "rows_per_s": rows / dt,
            "chunk_rows": res.chunk_rows, "n_chunks": res.n_chunks,
            "estimate_peak_bytes": res.estimate.peak_bytes, "estimate": str(res.estimate),
            "estimate_seconds": res.estimate.seconds, "peak_rss_bytes": vm_hwm(), "out": str(out)}
    if client is not None:
        info["n_workers"] = n_workers
        info["worker_peak_rss_bytes"] = list(client.run(vm_hwm).values())
        client.close()
        cluster.close()
    if res.estimate.seconds:
        info["time_estimate_ratio"] = res.estimate.seconds / dt      # printed estimate / actual
    peak = max(info.get("worker_peak_rss_bytes") or [info["peak_rss_bytes"]])
    info["memory_estimate_error"] = peak / info["estimate_peak_bytes"] - 1   # worker peak for Dask
    return info


def child(name, size, work):
    s = SIZES[size]
    if name == "r_case":
        return run_r_case(s["r"])
    if name == "big_ez":
        return _big_call(s["big"], s["big"], 1.0, work, tag="big_ez")
    if name == "big_ee":
        r = _big_call(s["big"], s["ee"], 0.0, work, tag="big_ee")
        r["extrapolated_seconds_1e6_rows"] = 1e6 / r["rows_per_s"]
        return r
    if name == "inproc_sub":
        return _big_call(s["big"], s["dask"], 1.0, work, tag="inproc_sub")
    if name in ("dask_1w", "dask_2w"):
        nw = int(name[5])
        return _big_call(s["big"], s["dask"], 1.0, work, engine="dask", n_workers=nw, tag=name)
    raise SystemExit(f"unknown run {name}")


# ----------------------------------------------------------------------------- parent
def spawn(name, size, work):
    cmd = [sys.executable, __file__, "--child", name, "--size", size, "--workdir", str(work)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    load0 = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{p.stderr[-4000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s_including_start"] = time.perf_counter() - t
    res["load_avg_1min_before_after"] = [load0, os.getloadavg()[0]]   # the 2 cores are shared
    plan = [ln for ln in p.stderr.splitlines() if ln.startswith("mashlib:")]
    res["printed_plan"] = plan[-1] if plan else None
    print(f"[{name}] {json.dumps({k: v for k, v in res.items() if k not in ('estimate', 'printed_plan')})}",
          flush=True)
    return res


def parallel_efficiency() -> float:
    """How much of 2 cores this machine gives us now: t(1 job) / t(2 concurrent jobs) / 1.

    1.0 means two single-threaded processes run as fast as one (2 free cores); 0.5 means
    they share one core (the cores are shared with other work), so no 2-worker speed-up is
    possible at that moment.
    """
    code = ("import numpy as np, time; a = np.random.default_rng(0).random((300, 300)); "
            "[np.linalg.eigh(a @ a.T) for _ in range(120)]")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    for p in ps:
        p.wait()
    return t1 / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, seconds)")
    ap.add_argument("--workdir", default="/tmp/mashlib_bench_scale")
    ap.add_argument("--only", nargs="*", help="subset of runs")
    ap.add_argument("--child")
    ap.add_argument("--size", default="full")
    a = ap.parse_args()
    work = Path(a.workdir)
    if a.child:
        print(json.dumps(child(a.child, a.size, work), default=float))
        return
    size = "quick" if a.quick else "full"
    work = work / size
    work.mkdir(parents=True, exist_ok=True)
    _, conds = big_model()
    make_big_store(work / f"input_{SIZES[size]['big']}", SIZES[size]["big"], conds)
    runs = a.only or ["r_case", "big_ez", "big_ee", "inproc_sub", "dask_1w", "dask_2w"]
    target = HERE / "results" / ("scale.json" if size == "full" else "scale_quick.json")
    results = json.loads(target.read_text()) if a.only and target.exists() else {}
    for name in runs:
        if name.startswith("dask"):
            results[f"parallel_efficiency_before_{name}"] = parallel_efficiency()
        results[name] = spawn(name, size, work)
    if {"inproc_sub", "dask_1w", "dask_2w"} <= set(results):
        ref = {k: np.load(Path(results["inproc_sub"]["out"]) / f"{k}.npy", mmap_mode="r")
               for k in ("PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb")}
        for nm in ("dask_1w", "dask_2w"):
            diffs = [float(np.abs(np.load(Path(results[nm]["out"]) / f"{k}.npy") - ref[k]).max())
                     for k in ref]
            results[nm]["max_abs_diff_vs_inprocess"] = max(diffs)
        results["dask_speedup_2w_vs_1w"] = results["dask_1w"]["seconds"] / results["dask_2w"]["seconds"]
        results["note_dask_speedup"] = (
            "the 2 cores are shared with other sessions; parallel_efficiency_before_* (2 concurrent "
            "single-threaded jobs vs 1; 1.0 = two free cores, 0.5 = one) bounds the attainable speed-up")
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__, "size": size,
                          "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    from mashlib._atomic import atomic_path
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
