"""mashlib against pymash (jschnable/pymash, "pymashrink") on the same workloads, same run.

Rows (each side in its own subprocess, BLAS and OpenMP pinned to one thread, CPU seconds
measured in the child around the call only; inputs are written once as ``.npz`` so that both
sides read identical arrays):

* ``fixg_50k``: the fixed-g posterior of the 50,000 new rows x 20 (per-row Shat, EE) under R's
  fitted model (``mash(data, g=g, fixg=True)``: log-likelihood and posterior summaries).
* ``mash_20000x20``: ``mash`` on the reference ``scale`` data (20,000 x 20, EE, canonical + 5
  data-driven matrices): weights estimated (mashlib: mix-SQP as R; pymash: its default).
* ``mash_2000x5``: ``mash`` on ``simple_sims(500, 5)`` with ``cov_canonical``.

pymash is not a dependency of mashlib: install it in a separate environment, e.g.::

    python -m venv /tmp/pmv && /tmp/pmv/bin/pip install numpy scipy pybind11 setuptools wheel
    /tmp/pmv/bin/pip install --no-build-isolation pymashrink   # or a checkout of jschnable/pymash

Usage::

    .venv/bin/python benchmarks/bench_pymash.py --pymash-python /tmp/pmv/bin/python [--rows a,b]

Writes ``benchmarks/results/pymash.json`` with both sides' CPU and wall seconds, their ratio,
the log-likelihoods and the largest posterior-mean difference, the pymash version and the
1-minute load average.  Reads ``../shared/reference/scale`` (rows skipped when absent).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCALE = ROOT.parent / "shared" / "reference" / "scale"
sys.path.insert(0, str(HERE))
ROWS = ["fixg_50k", "mash_20000x20", "mash_2000x5"]


def prepare(work: Path, rows) -> None:
    """Inputs as plain arrays, built once with mashlib (read by both sides)."""
    from bench_mash import simple_sims
    from bench_speedup import _read_rds, _scale_U
    import mashlib as ml
    if "fixg_50k" in rows and not (work / "fixg_50k.npz").exists():
        B, S = _read_rds("Bhat_new_50000x20.rds"), _read_rds("Shat_new_50000x20.rds")
        d = ml.mash_set_data(B, S)
        ref = json.load(open(SCALE / "step_mash_ee.json"))
        U = ml.normalize_Ulist(_scale_U(d))
        np.savez(work / "fixg_50k.npz", B=B, S=S, pi=np.array(ref["pi"]["values"]),
                 grid=np.array(ref["grid"]), U=np.stack([np.asarray(u, float) for u in U.values()]),
                 names=np.array(list(U)))
    if "mash_20000x20" in rows and not (work / "mash_20000x20.npz").exists():
        B, S = _read_rds("Bhat_20000x20.rds"), _read_rds("Shat_20000x20.rds")
        U = _scale_U(ml.mash_set_data(B, S))
        np.savez(work / "mash_20000x20.npz", B=B, S=S, U=np.stack(list(U.values())), names=np.array(list(U)))
    if "mash_2000x5" in rows and not (work / "mash_2000x5.npz").exists():
        B, S = simple_sims(500, 5, 1.0)
        U = ml.cov_canonical(ml.mash_set_data(B, S))
        np.savez(work / "mash_2000x5.npz", B=B, S=S, U=np.stack(list(U.values())), names=np.array(list(U)))


def child(side: str, row: str, work: Path) -> dict:
    z = np.load(work / f"{row}.npz")
    U = {str(n): u for n, u in zip(z["names"], z["U"])}
    if side == "mashlib":
        import mashlib as lib
        version = lib.__version__
        g_args = dict(Ulist=U)
    else:
        from importlib.metadata import version as _version

        import pymash as lib
        version = _version("pymashrink")
        g_args = dict(Ulist=list(U.values()), usepointmass=True)
    data = lib.mash_set_data(z["B"], z["S"])
    g = lib.FittedG(pi=z["pi"], grid=z["grid"], **g_args) if row == "fixg_50k" else None
    c0, t0 = time.process_time(), time.perf_counter()
    if row == "fixg_50k":
        m = lib.mash(data, g=g, fixg=True)
    else:
        m = lib.mash(data, U)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    pm = m.result["PosteriorMean"] if side == "mashlib" else m.posterior_mean
    np.save(work / f"{row}.{side}.pm.npy", np.asarray(pm, float))
    return {"version": version, "cpu": cpu, "wall": wall, "loglik": float(m.loglik)}


def run(side: str, python: str, row: str, work: Path, threads: int = 1) -> dict:
    n = str(threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
    env.pop("PYTHONPATH", None)
    from bench_speedup import run_child
    return run_child([python, __file__, "--child", side, row, str(work)], env, work, f"{side} {row}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pymash-python", required=False, default="/tmp/pmv/bin/python",
                    help="python of an environment where pymash is installed")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--pymash-threads", type=int, default=1,
                    help="OpenMP/BLAS threads of the pymash side (mashlib: 1); compare wall times then")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        side, row, work = args.child
        print("RESULT " + json.dumps(child(side, row, Path(work))))
        return
    rows = [r for r in args.rows.split(",") if r]
    if not SCALE.exists():
        rows = [r for r in rows if r not in ("fixg_50k", "mash_20000x20")]
    work = Path(tempfile.mkdtemp(prefix="mashlib_vs_pymash_"))
    prepare(work, rows)
    results = {}
    for row in rows:
        a = run("mashlib", sys.executable, row, work)
        b = run("pymash", args.pymash_python, row, work, args.pymash_threads)
        pa = np.load(work / f"{row}.mashlib.pm.npy")
        pb = np.load(work / f"{row}.pymash.pm.npy")
        key = row if args.pymash_threads == 1 else f"{row}_pymash_{args.pymash_threads}_threads"
        res = {"mashlib": a, "pymash": b, "pymash_threads": args.pymash_threads,
               "cpu_ratio": b["cpu"] / a["cpu"], "wall_ratio": b["wall"] / a["wall"],
               "loglik_diff": a["loglik"] - b["loglik"], "max_abs_pm_diff": float(np.abs(pa - pb).max())}
        results[key] = res
        print(f"{key:16s} pymash {b['cpu']:7.2f} s  mashlib {a['cpu']:6.2f} s CPU  x{res['cpu_ratio']:5.1f}   "
              f"wall {b['wall']:7.2f} / {a['wall']:6.2f} s  x{res['wall_ratio']:5.1f}   "
              f"loglik mashlib - pymash {res['loglik_diff']:+.3g}   max |PM diff| {res['max_abs_pm_diff']:.2g}   "
              f"load {a['load_avg_1min_before_after'][0]:.1f}-{b['load_avg_1min_before_after'][1]:.1f}",
              flush=True)
    from bench_speedup import merge_results
    merge_results(HERE / "results" / "pymash.json", results, {
        "mashlib_threads": 1,
        "note": "mash_20000x20 (2026-12-05): pymash (default optmethod slsqp) had not finished after 840 s CPU "
                "and was stopped (mashlib: 4.8 s CPU for the same fit in bench_speedup.py's scale_ee row)"})


if __name__ == "__main__":
    main()
