"""Deterministic synthetic input for the MASH protocol (the shipped ``input/mash`` example).

``python -m mashlib.protocol.simulate protocol-example --out input/mash`` writes

* ``protocol_example.mashr_input.rds``: the mixture_prior input, a named list of
  variants x conditions matrices ``strong.b/.s/.z``, ``random.b/.s/.z``,
  ``null.b/.s/.z`` and ``XtX`` (34 tissue-like conditions);
* ``protocol_example.EE.mash.rds``: the mash_fit input (the same sets after the
  protocol's preprocessing: NA -> 0 / 1000, rows ``mash::mash::<variant>``);
* ``protocol_example.EE.V_simple.rds`` and ``protocol_example.EE.prior.rds``: the
  residual correlation and ed_bovy prior of the pipeline run on it (unless
  ``--no-derived``).

The generative model.  For variant j with true effects :math:`\\beta_j` and standard
errors :math:`s_{jr} = \\sigma / \\sqrt{2 f_j (1 - f_j) n_r}` (allele frequency
:math:`f_j`, tissue sample size :math:`n_r`),

.. math:: \\hat\\beta_j = \\beta_j + \\mathrm{diag}(s_j)\\, e_j, \\qquad e_j \\sim N(0, V),

where V is a block residual correlation (all tissues 0.15, brain tissues 0.4) as
sample overlap induces.  :math:`\\beta_j / \\tau_j` is drawn from a mixture of sharing
patterns: effects shared by all tissues (nearly equal, and heterogeneous rank-one),
shared within a tissue group (brain, smooth muscle, heart/muscle), and specific to
one tissue (testis, liver, whole blood), with the scale :math:`\\tau_j` on a grid of
z-score sizes.  The *strong* set holds effects with max |z| > 4, the *random* set is
10 % effects and 90 % nulls, and the *null* set holds nulls only.  A small fraction
of cells is missing (NA), as tissues with no expression are in real data.
Everything comes from one ``numpy.random.Generator`` seeded with ``seed``, so the
files regenerate value for value.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import MashInputError

__all__ = ["TISSUES", "GROUPS", "residual_correlation", "sharing_patterns", "simulate_protocol_example",
           "write_protocol_example", "main"]

BRAIN = ["Brain_Amygdala", "Brain_Anterior_cingulate_cortex", "Brain_Caudate",
         "Brain_Cerebellar_Hemisphere", "Brain_Cerebellum", "Brain_Cortex", "Brain_Frontal_Cortex",
         "Brain_Hippocampus", "Brain_Hypothalamus", "Brain_Putamen"]
OTHER = ["Adipose_Subcutaneous", "Adipose_Visceral", "Artery_Aorta", "Artery_Coronary", "Artery_Tibial",
         "Colon_Sigmoid", "Colon_Transverse", "Esophagus_Mucosa", "Esophagus_Muscularis",
         "Heart_Atrial_Appendage", "Heart_Left_Ventricle", "Liver", "Lung", "Muscle_Skeletal",
         "Nerve_Tibial", "Pancreas", "Pituitary", "Skin_Not_Sun_Exposed", "Skin_Sun_Exposed", "Spleen",
         "Stomach", "Testis", "Thyroid", "Whole_Blood"]
TISSUES = BRAIN + OTHER
GROUPS = {
    "brain": BRAIN,
    "smooth_muscle": ["Artery_Aorta", "Artery_Coronary", "Artery_Tibial", "Colon_Sigmoid",
                      "Esophagus_Muscularis"],
    "heart_muscle": ["Heart_Atrial_Appendage", "Heart_Left_Ventricle", "Muscle_Skeletal"],
}
SINGLETONS = ["Testis", "Liver", "Whole_Blood"]

#: pattern -> prior weight among true effects
PATTERN_WEIGHTS = {"equal": 0.25, "shared_het": 0.2, "brain": 0.2, "smooth_muscle": 0.1,
                   "heart_muscle": 0.05, "Testis": 0.1, "Liver": 0.05, "Whole_Blood": 0.05}


def _indicator(names):
    return np.array([t in names for t in TISSUES], dtype=float)


def residual_correlation() -> np.ndarray:
    """The true residual correlation V: 0.15 between all tissues, 0.4 within brain, unit diagonal."""
    one = np.ones(len(TISSUES))
    brain = _indicator(BRAIN)
    V = 0.15 * np.outer(one, one) + 0.25 * np.outer(brain, brain)
    np.fill_diagonal(V, 1.0)
    return V


def sharing_patterns(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The true covariance patterns (unit scale) of the effect mixture."""
    R = len(TISSUES)
    one = np.ones(R)
    pats = {"equal": 0.9 * np.outer(one, one) + 0.1 * np.eye(R)}
    load = rng.uniform(0.3, 1.0, size=R)
    pats["shared_het"] = np.outer(load, load) + 0.05 * np.eye(R)
    for g, members in GROUPS.items():
        ind = _indicator(members)
        pats[g] = 0.9 * np.outer(ind, ind) + 0.1 * np.diag(ind)
    for t in SINGLETONS:
        ind = _indicator([t])
        pats[t] = np.outer(ind, ind)
    return pats


def _draw_effects(rng, n, pats):
    names = list(PATTERN_WEIGHTS)
    w = np.array([PATTERN_WEIGHTS[k] for k in names])
    which = rng.choice(len(names), size=n, p=w / w.sum())
    B = np.zeros((n, len(TISSUES)))
    for k, nm in enumerate(names):
        rows = np.flatnonzero(which == k)
        if rows.size:
            L = np.linalg.cholesky(pats[nm] + 1e-10 * np.eye(len(TISSUES)))
            B[rows] = rng.standard_normal((rows.size, len(TISSUES))) @ L.T
    return B, np.array(names)[which]


def _ids(rng, n):
    code = np.sort(rng.choice(22 * 100_000_000, size=n, replace=False))  # unique (chrom, pos)
    chrom, pos = code // 100_000_000 + 1, code % 100_000_000 + 10_000
    alleles = np.array(["A", "C", "G", "T"])
    a1 = rng.integers(0, 4, size=n)
    a2 = (a1 + rng.integers(1, 4, size=n)) % 4
    return [f"chr{c}:{p}:{alleles[x]}:{alleles[y]}" for c, p, x, y in zip(chrom, pos, a1, a2)]


def simulate_protocol_example(n_strong: int = 100, n_random: int = 500, n_null: int = 500,
                              seed: int = 20240, na_fraction: float = 0.002) -> dict[str, pd.DataFrame]:
    """Simulate the mashr input list (see the module docstring for the model).

    Parameters
    ----------
    n_strong, n_random, n_null : int
        Rows of the strong (effects with max |z| > 4), random (10 % effects) and null sets.
    seed : int
        Seed of the ``numpy.random.Generator``.
    na_fraction : float
        Fraction of (b, s) cells set to NA.

    Returns
    -------
    dict
        ``strong.b``, ``strong.s``, ``strong.z``, ``random.*``, ``null.*`` (DataFrames,
        variants x tissues) and ``XtX`` (``t(Z) Z / n`` of the strong z-scores).
    """
    if min(n_strong, n_random, n_null) < 1:
        raise MashInputError("n_strong, n_random and n_null must be positive")
    rng = np.random.default_rng(seed)
    R = len(TISSUES)
    pats = sharing_patterns(rng)
    Lv = np.linalg.cholesky(residual_correlation())
    n_samples = np.round(rng.uniform(120, 700, size=R))
    n_samples[[TISSUES.index(t) for t in BRAIN]] = np.round(rng.uniform(100, 250, size=len(BRAIN)))
    z_scales = np.array([1.5, 3.0, 5.0, 8.0])

    def draw(n, effect_frac, strong=False):
        out_b, out_s = [], []
        got = 0
        while got < n:
            m = 4 * n if strong else n
            f = rng.uniform(0.05, 0.5, size=m)
            S = 1.0 / np.sqrt(2 * f[:, None] * (1 - f[:, None]) * n_samples[None, :])
            is_eff = rng.random(m) < effect_frac
            B, _ = _draw_effects(rng, m, pats)
            tau = rng.choice(z_scales, size=m)[:, None] * np.median(S, axis=1, keepdims=True)
            B = np.where(is_eff[:, None], B * tau, 0.0)
            E = (rng.standard_normal((m, R)) @ Lv.T) * S
            Bhat = B + E
            if strong:
                keep = is_eff & (np.max(np.abs(Bhat / S), axis=1) > 4)
                Bhat, S = Bhat[keep], S[keep]
            out_b.append(Bhat)
            out_s.append(S)
            got += Bhat.shape[0]
        return np.vstack(out_b)[:n], np.vstack(out_s)[:n]

    sets = {"strong": draw(n_strong, 1.0, strong=True), "random": draw(n_random, 0.1),
            "null": draw(n_null, 0.0)}
    out: dict[str, pd.DataFrame] = {}
    for name, (b, s) in sets.items():
        ids = _ids(rng, b.shape[0])
        na = rng.random(b.shape) < na_fraction
        b = np.round(np.where(na, np.nan, b), 6)
        s = np.round(np.where(na, np.nan, s), 6)
        out[f"{name}.b"] = pd.DataFrame(b, index=ids, columns=TISSUES)
        out[f"{name}.s"] = pd.DataFrame(s, index=ids, columns=TISSUES)
        out[f"{name}.z"] = out[f"{name}.b"] / out[f"{name}.s"]
    Z = np.nan_to_num(out["strong.z"].to_numpy())
    out["XtX"] = pd.DataFrame(Z.T @ Z / Z.shape[0], index=TISSUES, columns=TISSUES)
    return out


def write_protocol_example(out_dir, prefix: str = "protocol_example", derived: bool = True,
                           log=print, **sim_kwargs) -> list[Path]:
    """Write the example files into ``out_dir`` (see the module docstring).

    ``derived=True`` also runs ``vhat_simple`` and ``ed_bovy`` (defaults: EE, flash,
    flash_nonneg, pca, canonical) in a scratch folder and keeps their V and prior.
    """
    from ..io import mashr_input_from_dict, write_rds

    out_dir = Path(out_dir)
    sim = simulate_protocol_example(**sim_kwargs)
    inp_path = write_rds(out_dir / f"{prefix}.mashr_input.rds", sim)
    pre = mashr_input_from_dict(sim, str(inp_path)).preprocess()
    mash_in = {k: v for k, v in pre.to_dict().items() if k != "XtX"}
    written = [inp_path, write_rds(out_dir / f"{prefix}.EE.mash.rds", mash_in)]
    log(f"wrote {written[0]} and {written[1]}")
    if derived:
        from .. import protocol
        with tempfile.TemporaryDirectory(prefix="mashlib_example_") as tmp:
            # plain EM (mashr's iterates): the shipped prior is the one R would write
            protocol.ed_bovy(data=str(inp_path), output_prefix=prefix, cwd=tmp, log=log,
                             ed_accelerate=False)
            for name in (f"{prefix}.EE.V_simple.rds", f"{prefix}.EE.prior.rds"):
                shutil.copyfile(Path(tmp) / name, out_dir / name)
                written.append(out_dir / name)
        log(f"wrote {written[2]} and {written[3]}")
    return written


def main(argv=None) -> int:
    """Command line: ``python -m mashlib.protocol.simulate protocol-example --out input/mash``."""
    ap = argparse.ArgumentParser(prog="python -m mashlib.protocol.simulate",
                                 description="Generate the synthetic MASH protocol example input.")
    sub = ap.add_subparsers(dest="what", required=True)
    pe = sub.add_parser("protocol-example", help="34-tissue mashr input + matching V/prior/mash input")
    pe.add_argument("--out", default="input/mash", help="output folder (default input/mash)")
    pe.add_argument("--prefix", default="protocol_example", help="file prefix")
    pe.add_argument("--seed", type=int, default=20240, help="numpy Generator seed")
    pe.add_argument("--n-strong", type=int, default=100)
    pe.add_argument("--n-random", type=int, default=500)
    pe.add_argument("--n-null", type=int, default=500)
    pe.add_argument("--no-derived", action="store_true", help="skip the V_simple/prior files (no engine run)")
    a = ap.parse_args(argv)
    try:
        write_protocol_example(a.out, a.prefix, derived=not a.no_derived, seed=a.seed,
                               n_strong=a.n_strong, n_random=a.n_random, n_null=a.n_null)
    except MashInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
