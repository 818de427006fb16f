"""Benchmark of the MASH engine against R mashr's timings (issue #2 "Speed").

Shapes (R timings on this machine kind from tests/data/reference/MANIFEST.md):

1. ``sim_2000x5``: J = 2,000, R = 5, canonical (numpy port of ``simple_sims(500, 5, 1)``,
   seed 1).  R: 0.73 s.
2. ``sim_20000x44``: J = 20,000, R = 44, canonical, 736 components (``simple_sims(5000, 44, 1)``
   in numpy, seed 1; R's loglik -1350597 is for R's random numbers).  R: 223 s (likelihood
   9.6 s, mix-SQP 207 s, posterior 4.9 s).
3. ``scale_ee`` / ``scale_commoncov``: the reference ``scale`` inputs (J = 20,000, R = 20,
   canonical + the 5 extra matrices of ``scale_setup.json``), EE and EZ (transformed Shat = 1,
   common covariance).  R: 138 s (loglik -614826.85) and 92 s (-620678.46).
4. ``posterior50k``: posterior for the 50,000 new rows under R's fitted EE model (pi and grid
   from ``step_mash_ee.json``).  R: 96 s, 1.48 GB; loglik of the new rows -1533529.08.

Each step runs in its own subprocess so that its peak RSS is its own.  Wall and CPU
(``time.process_time``) seconds are both recorded with the 1-minute load average: on a
shared 2-core machine the wall clock is only meaningful when the load is below ~2.  Prints a table and
writes ``benchmarks/results/mash.json``.  Usage::

    .venv/bin/python benchmarks/bench_mash.py [--steps sim_2000x5,scale_ee,...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCALE = ROOT.parent / "shared" / "reference" / "scale"
STEPS = ["sim_2000x5", "scale_ee", "scale_commoncov", "posterior50k", "sim_20000x44"]
R_REF = {
    "sim_2000x5": {"seconds": 0.73, "loglik": None, "rss_gb": None},
    "sim_20000x44": {"seconds": 223.0, "loglik": None, "rss_gb": None,
                     "phases": {"likelihood": 9.6, "fit": 207.0, "posterior": 4.9}},
    "scale_ee": {"seconds": 138.0, "loglik": -614826.846745179, "rss_gb": 1.24},
    "scale_commoncov": {"seconds": 92.0, "loglik": -620678.456176607, "rss_gb": 1.25},
    "posterior50k": {"seconds": 96.0, "loglik": -1533529.07696982, "rss_gb": 1.48},
}


def simple_sims(nsamp: int, ncond: int, err_sd: float, seed: int = 1):
    """numpy version of mashr ``simple_sims`` (null, iid, first-condition, shared effects)."""
    rng = np.random.default_rng(seed)
    B = np.zeros((4 * nsamp, ncond))
    B[nsamp:2 * nsamp] = rng.standard_normal((nsamp, ncond))
    B[2 * nsamp:3 * nsamp, 0] = rng.standard_normal(nsamp)
    B[3 * nsamp:] = rng.standard_normal(nsamp)[:, None]
    Bhat = B + rng.normal(0, err_sd, B.shape)
    return Bhat, np.full(B.shape, err_sd)


def _read_rds(name):
    import pyreadr
    return np.asarray(pyreadr.read_r(str(SCALE / name))[None], float)


def _scale_U(data):
    from mashlib.model import cov_canonical
    setup = json.load(open(SCALE / "scale_setup.json"))
    U = cov_canonical(data)
    U.update({k: np.array(v) for k, v in setup["Uextra"]["matrices"].items()})
    return U


def _timed_mash(data, U):
    """mash() with per-phase timings (likelihood, fit, posterior)."""
    import importlib
    M = importlib.import_module("mashlib.model.fit")
    from mashlib.model import expand_cov, normalize_Ulist
    from mashlib.model import calc_relative_lik_matrix
    from mashlib.model import compute_posterior_matrices, compute_posterior_weights
    c0, t0 = time.process_time(), time.perf_counter()
    grid = M.autoselect_grid(data)
    Un = normalize_Ulist(U)
    xU = expand_cov(Un, grid)
    lm = calc_relative_lik_matrix(data, xU)
    c1, t1 = time.process_time(), time.perf_counter()
    pi = M.optimize_pi(np.exp(lm["loglik_matrix"]), M.set_prior(len(xU)))
    c2, t2 = time.process_time(), time.perf_counter()
    keep = np.flatnonzero(pi > 1e-10)
    w = compute_posterior_weights(pi[keep], lm["loglik_matrix"][:, keep])
    names = list(xU)
    compute_posterior_matrices(data, np.stack([xU[names[p]] for p in keep]), weights=w)
    c3, t3 = time.process_time(), time.perf_counter()
    vl = M._vlogliks(pi, lm, data.Shat_alpha, True)[0]
    return {"seconds": t3 - t0, "loglik": float(vl.sum()), "P": len(xU), "kept": int(keep.size),
            "phases": {"likelihood": t1 - t0, "fit": t2 - t1, "posterior": t3 - t2},
            "cpu_seconds": {"likelihood": c1 - c0, "fit": c2 - c1, "posterior": c3 - c2},
            "load_avg_1min": os.getloadavg()[0]}


def step(name: str) -> dict:
    from mashlib.model import cov_canonical
    from mashlib.model import mash_set_data
    if name == "sim_2000x5":
        B, S = simple_sims(500, 5, 1.0)
        d = mash_set_data(B, S)
        return _timed_mash(d, cov_canonical(d))
    if name == "sim_20000x44":
        B, S = simple_sims(5000, 44, 1.0)
        d = mash_set_data(B, S)
        return _timed_mash(d, cov_canonical(d))
    if name in ("scale_ee", "scale_commoncov"):
        B, S = _read_rds("Bhat_20000x20.rds"), _read_rds("Shat_20000x20.rds")
        cond = [f"cond{i + 1}" for i in range(B.shape[1])]
        d = mash_set_data(B, S, alpha=0 if name == "scale_ee" else 1, conditions=cond)
        out = _timed_mash(d, _scale_U(d))
        return out
    if name == "posterior50k":
        from mashlib.model import normalize_Ulist
        from mashlib.model import FittedG, mash_compute_loglik, mash_compute_posterior_matrices
        B, S = _read_rds("Bhat_new_50000x20.rds"), _read_rds("Shat_new_50000x20.rds")
        cond = [f"cond{i + 1}" for i in range(B.shape[1])]
        d = mash_set_data(B, S, conditions=cond)
        ref = json.load(open(SCALE / "step_mash_ee.json"))
        g = FittedG(pi=np.array(ref["pi"]["values"]), Ulist=normalize_Ulist(_scale_U(d)),
                    grid=np.array(ref["grid"]))
        c0, t0 = time.process_time(), time.perf_counter()
        post = mash_compute_posterior_matrices(g, d)
        c1, t1 = time.process_time(), time.perf_counter()
        ll = mash_compute_loglik(g, d)
        c2, t2 = time.process_time(), time.perf_counter()
        pref = json.load(open(SCALE / "step_posterior50k.json"))
        err = float(np.abs(post["PosteriorMean"].to_numpy()[:5]
                           - np.array(pref["PosteriorMean_first5rows"])).max())
        err_l = float(np.abs(post["lfsr"].to_numpy()[:5] - np.array(pref["lfsr_first5rows"])).max())
        return {"seconds": t1 - t0, "loglik": ll, "kept": int((g.pi > 1e-10).sum()),
                "phases": {"posterior": t1 - t0, "loglik_new_rows": t2 - t1},
                "cpu_seconds": {"posterior": c1 - c0, "loglik_new_rows": c2 - c1},
                "load_avg_1min": os.getloadavg()[0],
                "pm_first5_max_abs_diff_vs_R": err, "lfsr_first5_max_abs_diff_vs_R": err_l}
    raise SystemExit(f"unknown step {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        res = step(args.step)
        res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print("RESULT " + json.dumps(res))
        return
    results = {}
    for name in args.steps.split(","):
        if name.startswith("scale") or name == "posterior50k":
            if not SCALE.exists():
                print(f"{name}: skipped ({SCALE} not found)")
                continue
        p = subprocess.run([sys.executable, __file__, "--step", name], capture_output=True,
                           text=True, cwd=ROOT)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if p.returncode or not line:
            print(f"{name}: failed\n{p.stderr[-2000:]}")
            continue
        res = json.loads(line[-1][7:])
        res["R"] = R_REF[name]
        res["speedup_vs_R"] = R_REF[name]["seconds"] / res["seconds"]
        if R_REF[name]["loglik"] is not None:
            res["loglik_rel_diff_vs_R"] = abs(res["loglik"] - R_REF[name]["loglik"]) / abs(
                R_REF[name]["loglik"])
        results[name] = res
        ph = ", ".join(f"{k} {v:.2f}" for k, v in res.get("phases", {}).items())
        ph += "; cpu " + ", ".join(f"{k} {v:.2f}" for k, v in res.get("cpu_seconds", {}).items())
        ph += f"; load {res.get('load_avg_1min', 0):.1f}"
        print(f"{name:16s} {res['seconds']:8.2f} s  (R {R_REF[name]['seconds']:7.2f} s, "
              f"x{res['speedup_vs_R']:.1f})  RSS {res['peak_rss_gb']:.2f} GB  "
              f"loglik {res['loglik']:.6f}  [{ph}]", flush=True)
    out = HERE / "results" / "mash.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"machine_cores": os.cpu_count(), "python": sys.version.split()[0],
            "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    prev = json.load(open(out)) if out.exists() else {}
    prev.update(results)
    prev["_meta"] = meta
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(prev, indent=2))
    tmp.replace(out)
    print(f"\n{'step':16s} {'mashlib s':>10s} {'R s':>8s} {'speedup':>8s} {'RSS GB':>7s} "
          f"{'loglik':>16s}")
    for k, r in prev.items():
        if k.startswith("_"):
            continue
        print(f"{k:16s} {r['seconds']:10.2f} {r['R']['seconds']:8.2f} {r['speedup_vs_R']:8.1f} "
              f"{r['peak_rss_gb']:7.2f} {r['loglik']:16.4f}")


if __name__ == "__main__":
    main()
