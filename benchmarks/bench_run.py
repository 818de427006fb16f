"""Benchmark of ``make run`` (issue 12: the toy protocol in <= 30 s on an idle 2-core machine).

Cases:

* ``make_run``: ``python -m mashlib demo`` (what ``make run`` runs after set-up) into a fresh
  output folder: wall time, and per step (ed_bovy with its producers, mash, plot_U) the time
  the driver notebook records; then the same command again, every step up to date, which
  is the fixed cost of the notebooks (four kernel starts, imports, signature checks).
* ``overhead``: the pieces of that fixed cost: a bare ``import mashlib.protocol`` plus the
  engines' imports (numpy, scipy, pandas, matplotlib) in a fresh interpreter, and one
  Jupyter kernel start (papermill on a one-cell notebook).

Run with ``OPENBLAS_NUM_THREADS=1``; each result records the 1-minute load average before
and after (the development machine has 2 shared cores, so a loaded machine is slower).

Usage::

    python benchmarks/bench_run.py [case ...]      # default: all cases

Writes ``benchmarks/results/run.json``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "run.json"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _timed(cmd, **kw) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt, r.stdout


def _step_times(out: str) -> dict:
    """``[step] wrote ... in X s`` lines of the streamed progress -> {step: seconds}."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^\[(\w+)\] wrote .* in ([0-9.]+) s$", out, re.M)}


def _driver_timings(nb: Path) -> dict:
    """The ``timings`` dict the driver notebook's step-3 cell displays."""
    cells = json.loads(nb.read_text())["cells"]
    for c in cells:
        for o in c.get("outputs", []):
            text = "".join(o.get("data", {}).get("text/plain", ""))
            if text.startswith("{'step 1"):
                return eval(text, {})  # noqa: S307 - a dict literal we wrote
    return {}


def case_make_run() -> dict:
    with tempfile.TemporaryDirectory(prefix="mashlib_bench_run_") as tmp:
        cmd = [sys.executable, "-m", "mashlib", "demo", "--output", tmp]
        first, out1 = _timed(cmd, cwd=ROOT)
        steps = _driver_timings(Path(tmp) / "mash_protocol.ipynb")
        second, out2 = _timed(cmd, cwd=ROOT)
        assert "up to date" in out2
    return {"wall_s_fresh": round(first, 1), "driver_steps_s": {k: round(v, 1) for k, v in steps.items()},
            "compute_s_by_step": _step_times(out1), "wall_s_all_up_to_date": round(second, 1)}


def case_overhead() -> dict:
    imp, _ = _timed([sys.executable, "-c", "import numpy, scipy.linalg, pandas, matplotlib.figure; "
                     "import mashlib as ml, mashlib.protocol; ml.mash; ml.cov_ed; ml.plot_U"])
    nothing, _ = _timed([sys.executable, "-c", "pass"])
    with tempfile.TemporaryDirectory() as tmp:
        import nbformat
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        src = Path(tmp) / "one.ipynb"
        nbformat.write(nb, str(src))
        kern, _ = _timed([sys.executable, "-c", "import papermill as pm, sys; pm.execute_notebook(sys.argv[1], "
                          "sys.argv[2], progress_bar=False, kernel_name='python3')", str(src), str(Path(tmp) / "o.ipynb")])
    return {"python_start_s": round(nothing, 2), "imports_s": round(imp - nothing, 2),
            "papermill_one_cell_notebook_s": round(kern, 2)}


CASES = {"make_run": case_make_run, "overhead": case_overhead}


def main(argv=None) -> dict:
    names = (argv if argv is not None else sys.argv[1:]) or list(CASES)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for n in names:
        load0 = os.getloadavg()[0]
        r = CASES[n]()
        r["load_average_1min_at_start"] = load0
        r["load_average_1min_at_end"] = os.getloadavg()[0]
        r["cpus"] = os.cpu_count()
        print(n, json.dumps(r, indent=1), flush=True)
        results[n] = r
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
