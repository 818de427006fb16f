"""Benchmark of contrasts, posterior samples and TEEM (issue 14, parts 2-4).

Cases (R seconds from tests/data/reference/wave2/*/meta.json or the wave2 README, R 4.2.2,
mashr 0.2.81, same 2-core machine kind; R's numbers are single runs):

* ``contrast_ref2``: ``mash(mash_update_data(data, ref = 2), cov_canonical)`` on the wave2
  1,000 x 6 contrast data (per-row LSVSLt).  R: update 0.036 s + mash 1.209 s.
* ``samples_50``: ``mash(data, cov_canonical, posterior_samples = 50, outputlevel = 3)`` on the
  wave2 160 x 4 data.  R (``algorithm.version = "R"``, the only one that samples): 3.64 s.
* ``teem``: ``cov_ed(data, U_pca, subset = strong, algorithm = "teem")`` (195 x 5, 82
  iterations).  R (C++): 0.013 s.
* ``samples_20000x20``: 100 samples per effect for 20,000 x 20 heterogeneous-SE rows
  under a canonical model fitted on 2,000 of them (posterior alone vs posterior + samples);
  no R number (R's sampler is an R loop over effects).
* ``contrast_5000x10``: ``ref = "mean"`` contrasts of 5,000 x 10 heterogeneous rows, fit +
  posterior vs the same fit on the original data.
* ``teem_5000x20``: TEEM on 5,000 x 20 z-scores from 8 PCA-type inits vs bovy ED (200 steps).

Each case runs in its own subprocess (its own peak RSS); the 1-minute load average is
recorded (2 shared cores: wall times are only meaningful below a load of ~2).  Prints a table
and writes ``benchmarks/results/post.json``.  Usage::

    .venv/bin/python benchmarks/bench_post.py [--cases contrast_ref2,teem,...]
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
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
W2 = ROOT / "tests" / "data" / "reference" / "wave2"
CASES = ["contrast_ref2", "samples_50", "teem", "samples_20000x20", "contrast_5000x10",
         "teem_5000x20"]
R_SECONDS = {"contrast_ref2": 0.036 + 1.209, "samples_50": 3.638, "teem": 0.013}


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _hetero(J, R, seed):
    import mashlib as ml
    s = ml.simple_sims(J // 4, R, 1, seed=seed)
    rng = np.random.default_rng(seed + 1)
    S = rng.uniform(0.5, 1.5, (J, R))
    B = s["B"].to_numpy() + rng.standard_normal((J, R)) * S
    return B, S


def run_case(name: str) -> dict:
    import mashlib as ml
    res: dict = {}
    if name == "contrast_ref2":
        d = W2 / "contrast"
        data = ml.mash_set_data(pd.read_csv(d / "Bhat.csv"), pd.read_csv(d / "Shat.csv"),
                                V=pd.read_csv(d / "V.csv").to_numpy())
        dc, t1, _ = _timed(lambda: ml.mash_update_data(data, ref=2))
        m, t2, c2 = _timed(lambda: ml.mash(dc, ml.cov_canonical(dc)))
        res = {"seconds": t1 + t2, "phases": {"update": t1, "mash": t2}, "cpu_seconds": c2,
               "loglik": m.loglik, "R_loglik": -7829.95297275796}
    elif name == "samples_50":
        d = W2 / "posterior_samples"
        data = ml.mash_set_data(pd.read_csv(d / "Bhat.csv"), pd.read_csv(d / "Shat.csv"))
        m, t, c = _timed(lambda: ml.mash(data, ml.cov_canonical(data), posterior_samples=50,
                                         seed=2718, outputlevel=3))
        res = {"seconds": t, "cpu_seconds": c, "loglik": m.loglik, "R_loglik": -1153.34649652352}
    elif name == "teem":
        d = W2 / "teem"
        r = json.load(open(d / "teem.json"))
        data = ml.mash_set_data(pd.read_csv(d / "Bhat.csv"), pd.read_csv(d / "Shat.csv"))
        strong = np.array(r["strong_idx_1based"]) - 1
        U = {k: np.array(v) for k, v in r["U_pca"].items()}
        fit, t, c = _timed(lambda: ml.cov_ed(data, U, subset=strong, algorithm="teem",
                                             details=True))
        res = {"seconds": t, "cpu_seconds": c, "loglik": float(fit.loglik_trace[-1]),
               "R_loglik": r["teem_loglik"], "niter": fit.niter}
    elif name == "samples_20000x20":
        B, S = _hetero(20000, 20, 7)
        data = ml.mash_set_data(B, S)
        m = ml.mash(data.subset(np.arange(0, 20000, 10)), ml.cov_canonical(data), outputlevel=1)
        _, t0, _ = _timed(lambda: ml.mash_compute_posterior_matrices(m, data))
        p, t1, c1 = _timed(lambda: ml.mash_compute_posterior_matrices(m, data, posterior_samples=100,
                                                                      seed=1))
        res = {"seconds": t1, "phases": {"posterior_only": t0, "posterior_plus_samples": t1},
               "cpu_seconds": c1, "samples_shape": list(p["PosteriorSamples"].shape),
               "samples_gb": p["PosteriorSamples"].nbytes / 1e9}
    elif name == "contrast_5000x10":
        B, S = _hetero(5000, 10, 3)
        data = ml.mash_set_data(B, S, V=0.2 + 0.8 * np.eye(10))
        mo, t0, _ = _timed(lambda: ml.mash(data, ml.cov_canonical(data)))
        mc, t1, c1 = _timed(lambda: ml.mash(ml.mash_update_data(data, ref="mean"),
                                            ml.cov_canonical(ml.mash_update_data(data, ref="mean"))))
        res = {"seconds": t1, "phases": {"original_data": t0, "contrasts": t1},
               "cpu_seconds": c1, "loglik": mc.loglik}
    elif name == "teem_5000x20":
        B, S = _hetero(5000, 20, 5)
        data = ml.mash_set_data(B, S)
        U0 = ml.cov_pca(data, 7)
        ft, t1, c1 = _timed(lambda: ml.cov_ed(data, U0, algorithm="teem", details=True))
        fb, t2, _ = _timed(lambda: ml.cov_ed(data, U0, maxiter=200, details=True))
        res = {"seconds": t1, "phases": {"teem": t1, "bovy_200_steps": t2}, "cpu_seconds": c1,
               "niter": ft.niter, "loglik": float(ft.loglik_trace[-1])}
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    res["load_avg_1min"] = os.getloadavg()[0]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--case", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.case:
        print("RESULT " + json.dumps(run_case(a.case)))
        return 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    results = {}
    for name in a.cases.split(","):
        p = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True,
                           text=True, cwd=ROOT, env=env)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            print(f"{name}: failed\n{p.stderr[-2000:]}")
            continue
        res = json.loads(line[-1][7:])
        if name in R_SECONDS:
            res["R_seconds"] = R_SECONDS[name]
            res["speedup_vs_R"] = R_SECONDS[name] / res["seconds"]
        results[name] = res
        ph = ", ".join(f"{k} {v:.2f}" for k, v in res.get("phases", {}).items())
        rs = f"R {res['R_seconds']:.3f} s, x{res['speedup_vs_R']:.1f}" if "R_seconds" in res else "no R"
        print(f"{name:18s} {res['seconds']:8.3f} s ({rs})  RSS {res['peak_rss_gb']:.2f} GB  "
              f"load {res['load_avg_1min']:.1f}  {ph}", flush=True)
    out = HERE / "results" / "post.json"
    out.parent.mkdir(exist_ok=True)
    prev = json.load(open(out)) if out.exists() else {}
    prev.update(results)
    prev["_meta"] = {"machine_cores": os.cpu_count(), "python": sys.version.split()[0],
                     "numpy": np.__version__,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sys.path.insert(0, str(ROOT))
    from mashlib._atomic import atomic_path
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(prev, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
