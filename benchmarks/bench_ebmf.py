"""Benchmark of mashlib.ebmf (issue #3) and cov_flash (issue #4) against R's timings.

Cases: the gtex_flash settings i-x of tests/data/reference/MANIFEST.md (flashier 1.0.60,
medians of 3 R runs), cov_flash default / nonneg on the sim_protocol strong set
(1,500 x 20; R single runs from sim_protocol/meta_setup.json), and ``wave2`` (issue #15): ash
with ``df`` / ``halfnormal``, the later ebnm families, the flashier control steps on gtex and
CorShrink ``sd_boot`` beside the R seconds of tests/data/reference/wave2/*/meta.json. Each case runs ``--repeat``
times (default 3) and the median is reported beside R's seconds, with our ELBO, R's ELBO
and the number of factors. Cases whose ebnm family is not yet in mashlib.eb.ebnm are
recorded as skipped.

Usage::

    python benchmarks/bench_ebmf.py [--repeat N] [case ...]    # default: all cases

Writes ``benchmarks/results/ebmf.json``.
"""
from __future__ import annotations

import importlib
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REF = ROOT / "tests" / "data" / "reference"
OUT = ROOT / "benchmarks" / "results" / "ebmf.json"

GTEX = {
    "i": ({}, None),
    "ii": ({}, "ebnm_normal_scale_mixture"),
    "iii": ({}, "ebnm_unimodal_symmetric"),
    "iv": ({"var_type": 2}, None),
    "v": ({"var_type": (1, 2)}, None),
    "vi": ({"S": 1, "var_type": 2}, None),
    "vii": ({"var_type": 2}, ("ebnm_point_normal", "ebnm_point_exponential")),
    "viii": ({"var_type": 2, "backfit": True}, ("ebnm_point_normal", "ebnm_point_exponential")),
    "ix": ({"greedy_Kmax": 10}, None),
    "x": ({"var_type": 1}, "ebnm_point_laplace"),
}


def _ebnm(names):
    e = importlib.import_module("mashlib.eb.ebnm")  # the module, not the same-named function

    if names is None:
        return None, None
    if isinstance(names, str):
        names = (names,)
    fns = [getattr(e, n, None) for n in names]
    missing = [n for n, f in zip(names, fns) if f is None]
    if missing:
        return None, missing[0]
    return (fns[0] if len(fns) == 1 else tuple(fns)), None


def _timed(fn, repeat):
    """Run ``fn`` ``repeat`` times; (result, median wall s, wall runs, median CPU s)."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return out, float(np.median(times)), times, float(np.median(cpu))


def bench_gtex(case, repeat):
    import pandas as pd

    from mashlib.ebmf import flash

    ref = json.loads((REF / "gtex_flash" / f"flash_{case}.json").read_text())
    Y = pd.read_csv(REF / "gtex_flash" / "gtex.csv").to_numpy()
    kw, fam = GTEX[case]
    kw = dict(kw)
    kw.setdefault("greedy_Kmax", 5)
    fn, missing = _ebnm(fam)
    row = {"call": ref["call"], "R_s": ref["elapsed_s"], "R_elbo": ref["elbo"], "R_K": ref["K"]}
    if missing:
        row["skipped"] = f"ebnm family {missing} not yet available"
        return row
    if fn is not None:
        kw["ebnm_fn"] = fn
    fit, med, runs, cpu = _timed(lambda: flash(Y, verbose=0, **kw), repeat)
    row.update({"ours_s": med, "runs_s": runs, "ours_cpu_s": cpu, "elbo": fit.elbo, "K": fit.n_factors,
                "elbo_minus_R": fit.elbo - ref["elbo"], "speedup_vs_R": ref["elapsed_s"] / med,
                "parity_ok": bool(fit.elbo >= ref["elbo"] - 0.05 and fit.n_factors == ref["K"])})
    return row


def bench_cov_flash(factors, repeat):
    import pandas as pd

    from mashlib.prior import cov_flash
    from mashlib.model import mash_set_data

    sp = REF / "sim_protocol"
    meta = json.loads((sp / "meta_setup.json").read_text())["timings"]["components_EE"]
    ref = json.loads((sp / "components_EE.json").read_text())["U"]
    data = mash_set_data(pd.read_csv(sp / "input_strong.b.csv"), pd.read_csv(sp / "input_strong.s.csv"))
    U, med, runs, cpu = _timed(lambda: cov_flash(data, factors=factors), repeat)
    names = [n for n in ref["names"] if n.startswith(("tFLASH_" + factors, "FLASH_" + factors))]
    rel = max(np.linalg.norm(U[n] - np.asarray(ref["matrices"][n])) / np.linalg.norm(ref["matrices"][n])
              for n in names) if list(U) == names else None
    r_s = meta[f"cov_flash_{factors}_s"]
    return {"call": f"cov_flash(strong 1500x20, factors='{factors}')", "R_s": r_s, "ours_s": med, "runs_s": runs, "ours_cpu_s": cpu,
            "names_match": list(U) == names, "max_rel_frobenius_vs_R": rel, "speedup_vs_R": r_s / med}


W2 = REF / "wave2"
W2_OUT = ("posterior_mean", "posterior_sd", "posterior_second_moment", "lfsr", "fitted_g", "log_likelihood")


def bench_wave2(repeat):
    """Issue #15: the later ash/ebnm families, flashier controls and CorShrink sd_boot beside R's seconds
    (wave2 meta.json: R 4.2.2 medians of 3 runs for ash_t/ebnm_more, single runs for flash_control and
    corshrink_boot)."""
    import warnings

    import pandas as pd

    import mashlib as ml

    rows = {}

    def add(name, call, r_s, fn):
        if r_s is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, med, runs, cpu = _timed(fn, repeat)
        rows[name] = {"call": call, "R_s": r_s, "ours_s": med, "runs_s": runs, "ours_cpu_s": cpu,
                      "speedup_vs_R": r_s / med if med > 0 else float("inf")}

    meta = json.loads((W2 / "ash_t" / "meta.json").read_text())["elapsed_s"]
    d = pd.read_csv(W2 / "ash_t" / "input.csv")
    x, s = d["x"].to_numpy(), d["s"].to_numpy()
    add("ash_t_df5", "ash(x, s, df=5)", meta["t_df5_default"], lambda: ml.ash(x, s, df=5))
    add("ash_t_df5_halfuniform", "ash(x, s, df=5, mixcompdist='halfuniform')", meta["t_df5_halfuniform"],
        lambda: ml.ash(x, s, df=5, mixcompdist="halfuniform"))
    add("ash_halfnormal", "ash(x, s, mixcompdist='halfnormal')", meta["normal_halfnormal"],
        lambda: ml.ash(x, s, mixcompdist="halfnormal"))

    meta = json.loads((W2 / "ebnm_more" / "meta.json").read_text())["elapsed_s"]
    d = pd.read_csv(W2 / "ebnm_more" / "input.csv")
    x, s, grp = d["x"].to_numpy(), d["s"].to_numpy(), d["group"].astype(str).to_numpy()
    for key, call, fn in [
        ("generalized_binary", "ebnm_generalized_binary(x, s)", lambda: ml.ebnm_generalized_binary(x, s, output=W2_OUT)),
        ("npmle", "ebnm_npmle(x, s)", lambda: ml.ebnm_npmle(x, s, output=W2_OUT)),
        ("deconvolver_z", "ebnm_deconvolver(x / s, 1)", lambda: ml.ebnm_deconvolver(x / s, 1, output=W2_OUT)),
        ("flat", "ebnm_flat(x, s)", lambda: ml.ebnm_flat(x, s, output=W2_OUT)),
        ("point_mass", "ebnm_point_mass(x, s)", lambda: ml.ebnm_point_mass(x, s, output=W2_OUT)),
        ("group_point_normal", "ebnm_group(x, s, group, 'point_normal')",
         lambda: ml.ebnm_group(x, s, group=grp, prior_family="point_normal", output=W2_OUT)),
        ("group_normal_scale_mixture", "ebnm_group(x, s, group, 'normal_scale_mixture')",
         lambda: ml.ebnm_group(x, s, group=grp, prior_family="normal_scale_mixture", output=W2_OUT)),
        ("horseshoe_s_const", "ebnm_horseshoe(x, 1)", lambda: ml.ebnm_horseshoe(x, 1, output=W2_OUT)),
    ]:
        add(f"ebnm_{key}", call, meta[key], fn)

    meta = json.loads((W2 / "flash_control" / "meta.json").read_text())["elapsed_s"]
    fc = W2 / "flash_control"
    Y = pd.read_csv(REF / "gtex_flash" / "gtex.csv").to_numpy()
    L0, F0 = pd.read_csv(fc / "init_L0.csv").to_numpy(), pd.read_csv(fc / "init_F0.csv").to_numpy()
    E = pd.read_csv(fc / "perturbation_E.csv").to_numpy()
    st = {"s0": ml.flash_factors_init(ml.flash_set_verbose(ml.flash_init(Y), 0), (L0, F0))}
    st["s1"] = ml.flash_backfit(st["s0"])
    st["s3"] = ml.flash_add_intercept(st["s1"])
    st["s4"] = ml.flash_backfit(st["s3"])
    st["s6"] = ml.flash_factors_set_to_zero(st["s4"], [1])
    st["s8"] = ml.flash_backfit(ml.flash_factors_fix(st["s1"], [0], which_dim="factors"))
    st["s10"] = ml.flash_set_verbose(ml.flash_update_data(st["s1"], Y + E), 0)  # (update_data resets verbose)
    steps = {
        "s0": ("flash_init |> flash_set_verbose(0) |> flash_factors_init(L0, F0)",
               lambda: ml.flash_factors_init(ml.flash_set_verbose(ml.flash_init(Y), 0), (L0, F0))),
        "s1": ("s0 |> flash_backfit()", lambda: ml.flash_backfit(st["s0"])),
        "s2": ("s0 |> flash_set_conv_crit(max_chg, 1e-4) |> flash_backfit()",
               lambda: ml.flash_backfit(ml.flash_set_conv_crit(st["s0"], ml.flash_conv_crit_max_chg, 1e-4))),
        "s3": ("s1 |> flash_add_intercept()", lambda: ml.flash_add_intercept(st["s1"])),
        "s4": ("s3 |> flash_backfit()", lambda: ml.flash_backfit(st["s3"])),
        "s5": ("s4 |> flash_factors_reorder(4, 3, 1, 2)", lambda: ml.flash_factors_reorder(st["s4"], [3, 2, 0, 1])),
        "s6": ("s4 |> flash_factors_set_to_zero(2)", lambda: ml.flash_factors_set_to_zero(st["s4"], [1])),
        "s7": ("s6 |> flash_backfit()", lambda: ml.flash_backfit(st["s6"])),
        "s8": ("s1 |> flash_factors_fix(1, 'factors') |> flash_backfit()",
               lambda: ml.flash_backfit(ml.flash_factors_fix(st["s1"], [0], which_dim="factors"))),
        "s9": ("s8 |> flash_factors_unfix(1) |> flash_backfit()",
               lambda: ml.flash_backfit(ml.flash_factors_unfix(st["s8"], [0]))),
        "s10": ("s1 |> flash_update_data(gtex + E)", lambda: ml.flash_update_data(st["s1"], Y + E)),
        "s11": ("s10 |> flash_backfit()", lambda: ml.flash_backfit(st["s10"])),
    }
    for k, (call, fn) in steps.items():
        add(f"flash_control_{k}", call, meta[k], fn)

    meta = json.loads((W2 / "corshrink_boot" / "meta.json").read_text())["elapsed_s"]
    X = pd.read_csv(W2 / "corshrink_boot" / "X.csv").to_numpy()
    add("corshrink_sd_boot", "CorShrinkData(X 250x8, sd_boot=TRUE)", meta["corshrinkdata_sd_boot"],
        lambda: ml.corshrink_data(X, sd_boot=True, seed=123))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="gtex cases i..x, cov_flash_default, cov_flash_nonneg, wave2")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    cases = a.cases or list(GTEX) + ["cov_flash_default", "cov_flash_nonneg", "wave2"]
    load_start = os.getloadavg()
    # warm up imports (scipy, pandas, ebnm) so they are not timed
    bench_gtex("iv", 1)
    results = {}
    for c in cases:
        if c == "wave2":
            rows = bench_wave2(a.repeat)
            results.update(rows)
            for name, r in rows.items():
                print(f"{name:34s} ours {r['ours_s']:8.4f} s (cpu {r['ours_cpu_s']:7.4f})   R {r['R_s']:7.3f} s"
                      f"   R/ours {r['speedup_vs_R']:7.1f}", flush=True)
            continue
        if c in GTEX:
            results[f"gtex_{c}"] = bench_gtex(c, a.repeat)
        elif c.startswith("cov_flash_"):
            results[c] = bench_cov_flash(c.split("_")[-1], a.repeat)
        else:
            raise SystemExit(f"unknown case {c!r}")
        r = results[f"gtex_{c}" if c in GTEX else c]
        print(f"{c:18s} ours {r.get('ours_s', float('nan')):7.2f} s (cpu {r.get('ours_cpu_s', float('nan')):6.2f})"
              f"   R {r['R_s']:7.2f} s   "
              f"{r.get('skipped', '')}{'elbo - R = %.4f K=%s' % (r['elbo_minus_R'], r['K']) if 'elbo' in r else ''}",
              flush=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(), "repeat": a.repeat,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "note": "ours_s: wall-clock median, ours_cpu_s: process CPU median (the fair figure when the "
                    "machine is shared: wall > CPU means waiting for a core); R timings from the reference "
                    "MANIFEST (R 4.2.2, 2 cores)"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    old.setdefault("cases", {}).update(results)
    old["meta"] = meta
    from mashlib._atomic import atomic_path

    with atomic_path(OUT) as tmp:
        tmp.write_text(json.dumps(old, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
