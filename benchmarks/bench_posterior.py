"""Benchmark of the ``mash_posterior`` workflow (issue #14) -> benchmarks/results/posterior.json.

A synthetic study made by this script: a fitted model on 20 conditions (canonical + 4
data-driven covariances, 12-point grid, ~40 kept components, EE) with a residual
correlation V, and ``--units`` analysis units of ``--rows`` variants x 20 conditions
each (Shat varying by row, as real summary statistics), written as the protocol's unit
RDS files (``list(bhat, sbhat)``).  Then, each run in its own subprocess so that its peak
resident memory is its own:

* ``posterior_w1`` / ``posterior_w2``: ``mashlib run mash_posterior posterior`` over every
  unit with 1 and 2 worker processes (posterior covariances kept, as the contrasts need);
* ``posterior_resume``: the same call again, every unit up to date (the cost of checking);
* ``contrast_w1`` / ``contrast_w2``: ``posterior_contrast`` on those posteriors.

And in this process, on a sample of units, where one unit's time goes: reading the unit
RDS, aligning/preprocessing, the model set-up, the posterior itself (the numeric work,
``mash_compute_posterior_matrices``), building the R list, serialising + writing (``--compress-level 0``),
hashing + sidecar.  *Per-unit overhead* is everything but the numeric work.  Wall and CPU
seconds are both recorded: on the shared 2-core machine the wall clock mostly measures the
other sessions (the load average of each run is kept).

Usage::

    python benchmarks/bench_posterior.py                 # 1,000 units of 2,000 x 20 (~30 min on 2 shared cores)
    python benchmarks/bench_posterior.py --units 50      # quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _peak_self() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- synthetic study
def make_study(work: Path, units: int, rows: int, R: int = 20, seed: int = 14) -> dict:
    """Model, V and unit files under ``work`` (reused when already there)."""
    import pandas as pd
    from mashlib import cov_canonical, mash_set_data, normalize_Ulist
    from mashlib.io import RList, write_rds
    from mashlib.model import FittedG
    from mashlib.protocol.posterior_units import write_rds_fast
    stamp = work / f"study_{units}x{rows}x{R}.json"
    paths = {"mash_model": str(work / "model.rds"), "vhat_data": str(work / "V.rds"),
             "analysis_units": str(work / f"units_{units}.txt")}
    if stamp.is_file():
        return paths
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    conds = [f"tissue{i + 1:02d}" for i in range(R)]
    U = cov_canonical(mash_set_data(rng.normal(size=(4, R)), 1.0, conditions=conds))
    for i in range(4):
        f = rng.normal(size=(R, 2))
        U[f"ED_{i + 1}"] = f @ f.T + 0.1 * np.eye(R)
    U = normalize_Ulist(U)
    grid = np.geomspace(0.02, 2.0, 12)
    g = FittedG(np.zeros(1 + len(U) * grid.size), U, grid, True)
    keep = np.r_[0, rng.choice(np.arange(1, g.pi.size), 39, replace=False)]
    g.pi[keep] = rng.dirichlet(np.ones(keep.size))
    V = np.full((R, R), 0.2) + 0.8 * np.eye(R)
    labelled = {k: (pd.DataFrame(u, index=conds, columns=conds) if k.startswith("ED_") else u) for k, u in U.items()}
    model = RList(r_class="mash")
    model.update({"result": None, "loglik": 0.0,
                  "fitted_g": {"pi": pd.Series(g.pi, index=g.component_names()), "Ulist": labelled,
                               "grid": grid, "usepointmass": True}, "alpha": 0.0})
    write_rds(paths["mash_model"], {"mash_model": model, "vhat_file": paths["vhat_data"], "prior_file": ""})
    write_rds(paths["vhat_data"], pd.DataFrame(V, index=conds, columns=conds))
    # effects: 90% null, else drawn from a kept component; Shat varying by row and condition
    xU = [np.zeros((R, R))] + [grid[l] ** 2 * U[k] for l in range(grid.size) for k in U]
    Lv = np.linalg.cholesky(V)
    udir = work / "units"
    udir.mkdir(exist_ok=True)
    lines = []
    for u in range(units):
        S = rng.uniform(0.05, 0.3, size=(rows, 1)) * rng.uniform(0.7, 1.3, size=(rows, R))
        comp = np.where(rng.random(rows) < 0.9, 0, rng.choice(keep[1:], size=rows))
        B = np.zeros((rows, R))
        for c in np.unique(comp[comp > 0]):
            idx = np.flatnonzero(comp == c)
            w, Q = np.linalg.eigh(xU[c])
            B[idx] = (rng.normal(size=(idx.size, R)) * np.sqrt(np.clip(w, 0, None))) @ Q.T
        Bhat = B + S * (rng.normal(size=(rows, R)) @ Lv.T)
        ids = [f"chr{u % 22 + 1}:{1000 * u + j}:A:G" for j in range(rows)]
        f = udir / f"gene{u + 1:05d}.rds"
        write_rds_fast(f, {"bhat": pd.DataFrame(Bhat, index=ids, columns=conds),
                           "sbhat": pd.DataFrame(S, index=ids, columns=conds)})
        lines.append(f"{f}\n")
    Path(paths["analysis_units"]).write_text("".join(lines))
    stamp.write_text(json.dumps({"units": units, "rows": rows, "conditions": R, "kept": int(keep.size),
                                 "components": int(g.pi.size)}))
    return paths


# ----------------------------------------------------------------------------- one unit, in stages
def profile_units(paths: dict, n: int = 8) -> dict:
    """Median seconds per stage of one unit's posterior (this process, 1 BLAS thread)."""
    import hashlib
    from mashlib.io import serialize_rds
    from mashlib.model import mash_compute_posterior_matrices, posterior_to_r, update_mash_model_cov
    from mashlib.protocol import posterior_units as pu
    from mashlib.protocol.steps import make_data
    units = pu.read_units_file(paths["analysis_units"])[:n]
    t0 = time.perf_counter()
    model = pu.load_unit_model(paths["mash_model"])
    V = pu.read_vhat_file(paths["vhat_data"], model)
    load_model = time.perf_counter() - t0
    opts = pu.UnitOptions()
    st = {k: [] for k in ("read", "prepare", "model_setup", "posterior", "to_r", "serialize_write",
                          "hash_sidecar", "total")}
    out = Path(paths["analysis_units"]).parent / "profile_out.rds"
    cpu = {k: [] for k in st}
    for u in units:
        t = [time.perf_counter()]
        c = [time.process_time()]
        B, S = pu.read_unit_matrices(u.path, opts)
        t.append(time.perf_counter())
        c.append(time.process_time())
        B, S, keep, conds, _ = pu.prepare_unit(B, S, model, opts, str(u.path))
        t.append(time.perf_counter())
        c.append(time.process_time())
        g = update_mash_model_cov(model.g, conds, keep)
        data = make_data(B, S, 0.0, V)
        t.append(time.perf_counter())
        c.append(time.process_time())
        res = mash_compute_posterior_matrices(g, data, output_posterior_cov=True)
        t.append(time.perf_counter())
        c.append(time.process_time())
        obj = posterior_to_r(res, list(B.index), keep, with_cov=True)
        t.append(time.perf_counter())
        c.append(time.process_time())
        out.write_bytes(serialize_rds(obj))           # the default --compress-level 0
        t.append(time.perf_counter())
        c.append(time.process_time())
        hashlib.sha256(Path(u.path).read_bytes()).hexdigest()
        out.with_suffix(".json").write_text(json.dumps({"x": 1}))
        t.append(time.perf_counter())
        c.append(time.process_time())
        assert len(c) == len(t)
        for k, a, b, ca, cb in zip(list(st)[:-1], t[:-1], t[1:], c[:-1], c[1:]):
            st[k].append(b - a)
            cpu[k].append(cb - ca)
        st["total"].append(t[-1] - t[0])
        cpu["total"].append(c[-1] - c[0])
    med = {k: float(np.median(v)) for k, v in st.items()}
    med["overhead"] = med["total"] - med["posterior"]
    med["overhead_fraction_of_numeric"] = med["overhead"] / med["posterior"]
    cmed = {k: float(np.median(v)) for k, v in cpu.items()}
    cmed["overhead"] = cmed["total"] - cmed["posterior"]
    med["cpu_s"] = cmed
    med["cpu_overhead_fraction_of_numeric"] = cmed["overhead"] / cmed["posterior"]
    med["load_model_once_s"] = load_model
    med["output_bytes"] = out.stat().st_size
    med["kept_components"] = int((model.g.pi > 1e-10).sum())
    return med


# ----------------------------------------------------------------------------- runs
def child(case: str, paths: dict, cwd: str, workers: int) -> dict:
    from mashlib import protocol
    lines = []
    t0 = time.perf_counter()
    wf = "posterior" if case.startswith("posterior") else "posterior_contrast"
    protocol.run_workflow("mash_posterior", wf, cwd=cwd, workers=workers, log=lines.append, **paths)
    dt = time.perf_counter() - t0
    self_peak = _peak_self()
    ru_s, ru_c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = ru_c.ru_maxrss * 1024
    cpu = ru_s.ru_utime + ru_s.ru_stime + ru_c.ru_utime + ru_c.ru_stime   # this process + its workers
    prog = [ln for ln in lines if "/" in ln and "computed" in ln]
    return {"seconds": dt, "cpu_seconds": cpu, "peak_rss_bytes": self_peak, "max_worker_peak_rss_bytes": kids,
            "progress": prog[-2:] if wf != "posterior" else prog[-1:]}


def run_case(case: str, paths: dict, cwd: Path, workers: int, units: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", case, "--cwd", str(cwd), "--workers", str(workers),
           "--paths", json.dumps(paths)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(case=case, workers=workers, units=units, seconds_per_unit=res["seconds"] / units,
               cpu_seconds_per_unit=res["cpu_seconds"] / units,
               wall_s_including_start=time.perf_counter() - t0,
               load_avg_1min_before_after=[load0, os.getloadavg()[0]])
    print(f"[{case}] {res['seconds']:.1f} s ({res['cpu_seconds']:.1f} s CPU), {1000 * res['seconds_per_unit']:.1f} "
          f"ms/unit, peak RSS "
          f"{res['peak_rss_bytes'] / 2 ** 20:.0f} MB (workers {res['max_worker_peak_rss_bytes'] / 2 ** 20:.0f} MB), "
          f"load {load0:.2f}", flush=True)
    return res


def _same(a: Path, b: Path, n: int = 3) -> float:
    from mashlib.io import read_rds
    diff = 0.0
    for f in sorted((a / "cache").glob("*.posterior.rds"))[:n]:
        x, y = read_rds(f), read_rds(b / "cache" / f.name)
        for k in ("PosteriorMean", "lfsr"):
            diff = max(diff, float(np.abs(x[k].to_numpy() - y[k].to_numpy()).max()))
    return diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--work", default="/tmp/mashlib_bench_posterior")
    ap.add_argument("--no-contrast", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--cwd")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--paths")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, json.loads(a.paths), a.cwd, a.workers)))
        return
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    work = Path(a.work)
    t0 = time.perf_counter()
    paths = make_study(work, a.units, a.rows)
    gen = time.perf_counter() - t0
    print(f"study: {a.units} units of {a.rows} x 20 in {work} ({gen:.0f} s to make)", flush=True)
    results = {"study": json.loads(next(work.glob(f"study_{a.units}x{a.rows}x20.json")).read_text()),
               "profile_per_unit_s": profile_units(paths)}
    prof = results["profile_per_unit_s"]
    print("one unit (median CPU s): " + ", ".join(f"{k} {v:.4f}" for k, v in prof["cpu_s"].items()), flush=True)
    A, B, keep = work / "out_w1", work / "out_w2", work / "w1_sample"
    for d in (A, B, keep):
        shutil.rmtree(d, ignore_errors=True)
    # one set of outputs on disk at a time (1,000 units: ~8 GB of posteriors, ~10 GB of contrasts)
    results["posterior_w1"] = run_case("posterior_w1", paths, A, 1, a.units)
    results["posterior_resume"] = run_case("posterior_resume", paths, A, 1, a.units)
    if not a.no_contrast:
        results["contrast_w1"] = run_case("contrast_w1", paths, A, 1, a.units)
    (keep / "cache").mkdir(parents=True)
    for f in sorted((A / "cache").glob("*.posterior.rds"))[:3]:
        shutil.copy(f, keep / "cache" / f.name)
    shutil.rmtree(A, ignore_errors=True)
    results["posterior_w2"] = run_case("posterior_w2", paths, B, 2, a.units)
    results["posterior_speedup_2w_vs_1w"] = results["posterior_w1"]["seconds"] / results["posterior_w2"]["seconds"]
    results["max_abs_diff_w2_vs_w1"] = _same(keep, B)
    if not a.no_contrast:
        results["contrast_w2"] = run_case("contrast_w2", paths, B, 2, a.units)
        results["contrast_speedup_2w_vs_1w"] = results["contrast_w1"]["seconds"] / results["contrast_w2"]["seconds"]
    for d in (B, keep):
        shutil.rmtree(d, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                          "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "note": "the 2 cores are shared with other sessions; see load_avg_1min_before_after"}
    per_unit_w1 = results["posterior_w1"]["seconds_per_unit"]
    results["summary"] = {
        "posterior_ms_per_unit_w1": 1000 * per_unit_w1,
        "posterior_cpu_ms_per_unit_w1": 1000 * results["posterior_w1"]["cpu_seconds_per_unit"],
        "numeric_cpu_ms_per_unit": 1000 * prof["cpu_s"]["posterior"],
        "overhead_cpu_ms_per_unit": 1000 * prof["cpu_s"]["overhead"],
        "overhead_fraction_of_numeric_cpu": prof["cpu_overhead_fraction_of_numeric"],
        "resume_ms_per_unit": 1000 * results["posterior_resume"]["seconds_per_unit"],
    }
    name = "posterior.json" if a.units >= 1000 else "posterior_quick.json"
    out = HERE / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print("\n| run | wall s | CPU s | wall ms/unit | peak RSS MB (largest worker) | load before |\n|---|---|---|---|---|---|")
    for k in ("posterior_w1", "posterior_w2", "posterior_resume", "contrast_w1", "contrast_w2"):
        if k in results:
            r = results[k]
            print(f"| {k} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {1000 * r['seconds_per_unit']:.1f} | "
                  f"{r['peak_rss_bytes'] / 2 ** 20:.0f} ({r['max_worker_peak_rss_bytes'] / 2 ** 20:.0f}) | "
                  f"{r['load_avg_1min_before_after'][0]:.1f} |")
    c = prof["cpu_s"]
    print(f"\nper unit (CPU): numeric {1000 * c['posterior']:.1f} ms, overhead {1000 * c['overhead']:.1f} ms "
          f"({100 * prof['cpu_overhead_fraction_of_numeric']:.0f} % of the numeric work): "
          + ", ".join(f"{k} {1000 * v:.1f}" for k, v in c.items() if k not in ("posterior", "total", "overhead"))
          + f" ms; wrote {out}")


if __name__ == "__main__":
    main()
