"""The computations of each protocol step (map sections 1.1-1.15), one function per step.

Each ``compute_<step>(p)`` takes the resolved parameter dict of its notebook (see
:mod:`mashlib.protocol.params`), reads its inputs, calls the engine and returns
``{output path: R object}``; :mod:`mashlib.protocol.chain` decides whether a step
runs, writes the outputs atomically and records provenance.  Engines are imported
inside the functions so that ``import mashlib.protocol`` stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .._validation import not_a_prior_message
from ..io import MashrInput, RArray, RList, read_mashr_input, read_rds
from . import naming

__all__ = ["load_input", "make_data", "read_components", "read_prior_U", "read_vhat",
           "mash_result_to_r", "fitted_g_from_r", "STEP_COMPUTE"]


# --------------------------------------------------------------------------- helpers


def load_input(path, require=("strong", "random", "null")) -> MashrInput:
    """Read, validate and preprocess (NA -> 0 / 1000, row names) a mashr input RDS."""
    return read_mashr_input(path, require=require).preprocess()


def make_data(b: pd.DataFrame, s: pd.DataFrame, alpha: float, V=None):
    """``mash_set_data(b, Shat=s, alpha, V=V, zero_Bhat_Shat_reset=1000)`` (map 1.0 step 6)."""
    from ..model import mash_set_data
    return mash_set_data(b, Shat=s, alpha=alpha, V=None if V is None else _mat(V),
                         zero_Bhat_Shat_reset=1000)


def _mat(x) -> np.ndarray:
    if isinstance(x, dict) and "mat" in x:  # udr's list(mat=...) structure
        x = x["mat"]
    return np.asarray(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=float)


def _labelled(U: dict, conditions: list[str]) -> dict:
    """Covariance list with dimnames = conditions (as cov_pca/cov_flash outputs in R)."""
    return {k: pd.DataFrame(_mat(v), index=conditions, columns=conditions) for k, v in U.items()}


def _bare(U: dict) -> dict:
    return {k: _mat(v) for k, v in U.items()}


def read_components(p: dict) -> dict:
    """Concatenate the component files in ``mixture_components`` order (R's ``do.call(c, ...)``)."""
    prefix = naming.prefix_of(p["data"], p["output_prefix"])
    comps: dict[str, Any] = {}
    for c in p["mixture_components"]:
        obj = read_rds(naming.component_file(p["cwd"], prefix, c))
        if isinstance(obj, list) and not obj:  # R's empty list()
            obj = {}
        if not isinstance(obj, dict):
            raise MashInputError(f"{naming.component_file(p['cwd'], prefix, c)}: expected a named "
                                 "list of covariance matrices; rerun the step that writes it")
        comps.update(obj)
    if not comps:
        raise MashInputError(
            f"mixture components {list(p['mixture_components'])} gave no covariance matrix "
            "(flash finds no factor on small data); add pca and/or canonical to --mixture-components")
    return comps


def read_vhat(path) -> np.ndarray:
    """A residual correlation RDS (R x R matrix) as an ndarray."""
    V = read_rds(path)
    if isinstance(V, RArray) or not hasattr(V, "shape") or len(V.shape) != 2 or V.shape[0] != V.shape[1]:
        raise MashInputError(f"{path}: expected an R x R residual correlation matrix (a vhat_* output)")
    return _mat(V)


def read_prior_U(path) -> tuple[dict, Any]:
    """``prior$U`` and ``prior$w`` (as the SoS ``readRDS(prior)$U``); anything else is refused."""
    prior = read_rds(path)
    if not (isinstance(prior, dict) and "U" in prior):
        raise MashInputError(not_a_prior_message(path, prior))
    U, w = prior["U"], prior.get("w")
    if not isinstance(U, dict) or not U:
        raise MashInputError(f"{path}: prior U must be a non-empty named list of covariance matrices")
    bad = [k for k, v in U.items() if len(np.shape(v)) != 2 or np.shape(v)[0] != np.shape(v)[1]]
    if bad:
        raise MashInputError(f"{path}: is not a prior; U[{bad[0]!r}] is not a square covariance "
                             f"matrix (shape {np.shape(U[bad[0]])}).")
    return U, w


def _vhat_for_prior(p: dict, prefix: str) -> Path:
    """The V the prior steps use: V_simple when --vhat mle (the dependency loop of map 1.7)."""
    v = naming.vhat_method(p["vhat"])
    return naming.vhat_file(p["cwd"], prefix, p["effect_model"], "simple" if v == "mle" else v)


# --------------------------------------------------------------------------- components


def _strong_data(p: dict, V=None):
    inp = load_input(p["data"], require=("strong",))
    return inp, make_data(inp.strong.b, inp.strong.s, naming.alpha_of(p["effect_model"]), V)


def compute_flash(p: dict, out: Path, factors: str = "default") -> dict:
    """``cov_flash(strong data, factors)`` -> ``tFLASH_<tag>``, ``FLASH_<tag>_k`` (map 1.1/1.2)."""
    from ..prior import cov_flash
    inp, data = _strong_data(p)
    U = cov_flash(data, factors=factors) or {}
    return {out: _labelled(U, inp.conditions)}


def compute_flash_nonneg(p: dict, out: Path) -> dict:
    return compute_flash(p, out, factors="nonneg")


def compute_pca(p: dict, out: Path) -> dict:
    """``cov_pca(strong data, npc)`` -> ``PCA_1..PCA_npc``, ``tPCA`` with dimnames (map 1.3)."""
    from ..model import cov_pca
    inp, data = _strong_data(p)
    npc = int(p["npc"])
    R = len(inp.conditions)
    if not 1 < npc <= R:
        raise MashInputError(f"--npc {npc}: must satisfy 1 < npc <= {R} (the number of conditions)")
    return {out: _labelled(cov_pca(data, npc), inp.conditions)}


def compute_canonical(p: dict, out: Path) -> dict:
    """``cov_canonical(strong data)``: identity, singletons, equal_effects, simple_het_1..3 (map 1.4)."""
    from ..model import cov_canonical
    _, data = _strong_data(p)
    return {out: _bare(cov_canonical(data))}


# --------------------------------------------------------------------------- residual correlation


def compute_vhat_identity(p: dict, out: Path) -> dict:
    """``diag(R)`` without dimnames (map 1.5)."""
    inp = read_mashr_input(p["data"], require=())
    return {out: np.eye(len(inp.conditions))}


def compute_vhat_simple(p: dict, out: Path) -> dict:
    """``estimate_null_correlation_simple`` on the null set, ``z_thresh=2`` (map 1.6)."""
    from ..vhat import vhat_simple
    inp = load_input(p["data"], require=("null",))
    V = vhat_simple(inp.null.b, inp.null.s, alpha=naming.alpha_of(p["effect_model"]))
    return {out: pd.DataFrame(_mat(V), index=inp.conditions, columns=inp.conditions)}


def compute_vhat_mle(p: dict, out: Path) -> dict:
    """``mash_estimate_corr_em`` on (a seeded subset of) the random set, given the prior (map 1.7)."""
    from ..vhat import vhat_mle
    prefix = naming.prefix_of(p["data"], p["output_prefix"])
    U, _ = read_prior_U(naming.prior_file(p["cwd"], prefix, p["effect_model"]))
    inp = load_input(p["data"], require=("random",))
    V = vhat_mle(inp.random.b, inp.random.s, _bare(U), alpha=naming.alpha_of(p["effect_model"]),
                 n_subset=int(p["n_subset"]), max_iter=int(p["max_iter"]), seed=int(p["seed"]))
    return {out: pd.DataFrame(_mat(V), index=inp.conditions, columns=inp.conditions)}


def _null_z(p: dict) -> tuple[pd.DataFrame, list[str]]:
    inp = load_input(p["data"], require=("null",))
    return inp.null.b / inp.null.s, inp.conditions


def compute_vhat_corshrink_xcondition(p: dict, out: Path) -> dict:
    """CorShrink of the null z-scores (halfuniform ash; map 1.8)."""
    from ..vhat import vhat_corshrink
    z, cond = _null_z(p)
    V = vhat_corshrink(z)
    return {out: pd.DataFrame(_mat(V), index=cond, columns=cond)}


def compute_vhat_simple_specific(p: dict, out: Path) -> dict:
    """``nearPD(cov(null z), corr=TRUE, conv.tol=1e-6)`` (map 1.9)."""
    from ..vhat import vhat_simple_specific
    z, cond = _null_z(p)
    V = vhat_simple_specific(z)
    return {out: pd.DataFrame(_mat(V), index=cond, columns=cond)}


# --------------------------------------------------------------------------- priors


def _prior_inputs(p: dict):
    prefix = naming.prefix_of(p["data"], p["output_prefix"])
    comps = read_components(p)
    V = read_vhat(_vhat_for_prior(p, prefix))
    inp, data = _strong_data(p, V)
    return inp, data, comps


def _prior_object(res, U_raw: dict | None = None) -> dict:
    U = res["U"] if isinstance(res, dict) else res.U
    w = res["w"] if isinstance(res, dict) else res.w
    loglik = res.get("loglik") if isinstance(res, dict) else getattr(res, "loglik", None)
    if U_raw is not None:  # keep the raw components as read (with their dimnames)
        U = {k: (U_raw[k] if k in U_raw else _mat(v)) for k, v in U.items()}
    else:
        U = {k: (v if isinstance(v, pd.DataFrame) else _mat(v)) for k, v in U.items()}
    if not isinstance(w, pd.Series):
        w = pd.Series(np.asarray(w, dtype=float), index=list(w.keys()) if isinstance(w, dict) else None)
    return {"U": U, "w": w.astype(float), "loglik": None if loglik is None else float(loglik)}


def compute_ed_bovy(p: dict, out: Path) -> dict:
    """U = c(components, ED_components); w = mash(strong, U) pi with "null" (map 1.12)."""
    from ..prior import ed_bovy
    _, data, comps = _prior_inputs(p)
    return {out: _prior_object(ed_bovy(data, _bare(comps)), comps)}


def _ud(p: dict, out: Path, engine: str) -> dict:
    from .. import prior as prior_mod
    _, data, comps = _prior_inputs(p)  # validated but ignored, as pecotmr version A (map 1.10)
    fn = getattr(prior_mod, engine)
    return {out: _prior_object(fn(data, _bare(comps), seed=int(p["seed"])))}


def compute_ud(p: dict, out: Path) -> dict:
    """udr ``ud_init`` (canonical + 50 Wishart draws) + ``ud_fit`` with ED updates (map 1.10)."""
    return _ud(p, out, "ud")


def compute_ud_unconstrained(p: dict, out: Path) -> dict:
    """As ``ud`` with TED updates; the engine refuses non-i.i.d. (EE) data clearly (map 1.11)."""
    return _ud(p, out, "ud_unconstrained")


def compute_plot_U(p: dict, out: Path) -> dict:
    """Heatmaps of the prior in ``data`` (map 1.13); returns the figures for the notebook."""
    from ..plots import plot_U
    try:
        figs = plot_U(str(p["data"]), max_comp=int(p["max_comp"]), to_cor=bool(p["to_cor"]),
                      tol=float(p["tol"]), remove_label=bool(p["remove_label"]), name=p["name"] or "",
                      output=out, png=True)
    except MashInputError as exc:
        if "tol" in str(exc) and "none of the" in str(exc):
            raise MashInputError(f"{exc} On the command line: --tol 0") from None
        raise
    return {out: figs}


# --------------------------------------------------------------------------- mash_fit


def _to_frame(x, rows, cols) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    return pd.DataFrame(np.asarray(x, dtype=float), index=rows, columns=cols)


def _get(obj, key, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _fitted_g_to_r(g) -> dict:
    pi = _get(g, "pi")
    if not isinstance(pi, pd.Series):
        names = g.component_names() if hasattr(g, "component_names") else None
        pi = pd.Series(np.asarray(pi, dtype=float), index=names)
    return {"pi": pi.astype(float), "Ulist": {k: _mat(v) for k, v in _get(g, "Ulist").items()},
            "grid": np.asarray(_get(g, "grid"), dtype=float), "usepointmass": bool(_get(g, "usepointmass"))}


def fitted_g_from_r(g: dict):
    """Rebuild a :class:`mashlib.FittedG` from its R list (``pi``, ``Ulist``, ``grid``, ``usepointmass``)."""
    from ..model import FittedG
    try:
        pi = g["pi"]
        return FittedG(pi=np.asarray(pi, dtype=float).ravel(),
                       Ulist={k: _mat(v) for k, v in g["Ulist"].items()},
                       grid=np.atleast_1d(np.asarray(g["grid"], dtype=float)),
                       usepointmass=bool(g["usepointmass"]))
    except (KeyError, TypeError) as exc:
        raise MashInputError(f"mash model: fitted_g lacks {exc}; expected list(pi, Ulist, grid, usepointmass)") from None


def _posterior_to_r(res, rows: list[str], conds: list[str], with_cov: bool) -> dict:
    out = {}
    for key in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"):
        x = _get(res, key)
        if x is not None:
            out[key] = _to_frame(x, rows, conds)
    cov = _get(res, "PosteriorCov")
    if with_cov and cov is not None:
        # mashlib keeps (J, Q, Q); R stores Q x Q x J
        arr = cov.values if isinstance(cov, RArray) else np.moveaxis(np.asarray(cov, dtype=float), 0, -1)
        out["PosteriorCov"] = RArray(arr, [conds, conds, rows])
    return out


def mash_result_to_r(m, rows: list[str], conds: list[str]) -> RList:
    """A :class:`~mashlib.MashResult` as mashr's ``"mash"`` list (map 1.14)."""
    if hasattr(m, "to_r"):
        return m.to_r()
    res = _posterior_to_r(_get(m, "result") or {}, rows, conds, with_cov=True)
    res.pop("lfdr", None)  # mash() drops lfdr unless output_lfdr
    out = RList(r_class="mash")
    out["result"] = res
    out["loglik"] = float(_get(m, "loglik"))
    for key in ("vloglik", "null_loglik", "alt_loglik"):
        x = _get(m, key)
        if x is not None:
            out[key] = np.asarray(x, dtype=float).reshape(len(rows), -1) if key != "null_loglik" \
                else np.asarray(x, dtype=float).ravel()
    out["fitted_g"] = _fitted_g_to_r(_get(m, "fitted_g"))
    pw = _get(m, "posterior_weights")
    if pw is not None:
        pw = pw if isinstance(pw, pd.DataFrame) else pd.DataFrame(np.asarray(pw, dtype=float))
        pw.index = rows
        out["posterior_weights"] = pw
    out["alpha"] = float(_get(m, "alpha", 0.0))
    lm = _get(m, "lm")
    if lm is not None:
        out["lm"] = {"loglik_matrix": np.asarray(_get(lm, "loglik_matrix"), dtype=float),
                     "lfactors": np.asarray(_get(lm, "lfactors"), dtype=float).ravel()}
    return out


def compute_mash_1(p: dict, out: Path) -> dict:
    """Fit mash on the random set with the prior's U (map 1.14)."""
    from ..model import mash
    U, _ = read_prior_U(p["prior_data"])
    V = read_vhat(p["vhat_data"])
    inp = load_input(p["data"], require=("random",))
    data = make_data(inp.random.b, inp.random.s, naming.alpha_of(p["effect_model"]), V)
    m = mash(data, _bare(U), outputlevel=int(p["output_level"]))
    model = mash_result_to_r(m, list(inp.random.b.index), inp.conditions)
    return {out: {"mash_model": model, "vhat_file": str(p["vhat_data"]), "prior_file": str(p["prior_data"])}}


def compute_mash_2(p: dict, out: Path, model_file: Path) -> dict:
    """Posterior matrices for the strong set under the fitted model (map 1.15)."""
    from ..model import mash_compute_posterior_matrices
    saved = read_rds(model_file)
    model = saved.get("mash_model") if isinstance(saved, dict) else None
    if not isinstance(model, dict) or "fitted_g" not in model:
        raise MashInputError(f"{model_file}: not a mash model file (expected list(mash_model, vhat_file, prior_file))")
    V = read_vhat(p["vhat_data"])
    alpha = naming.alpha_of(p["effect_model"])
    if float(model.get("alpha", 0.0)) != alpha:
        raise MashInputError(
            f"{model_file}: the model was fitted with alpha={model.get('alpha')} but --effect-model "
            f"{p['effect_model']} gives alpha={alpha:g}; use the same effect model in both steps")
    inp = load_input(p["data"], require=("strong",))
    data = make_data(inp.strong.b, inp.strong.s, alpha, V)
    g = fitted_g_from_r(model["fitted_g"])
    res = mash_compute_posterior_matrices(g, data, output_posterior_cov=True)
    post = _posterior_to_r(res, list(inp.strong.b.index), inp.conditions, with_cov=True)
    if "lfdr" not in post:
        raise MashInputError("posterior engine returned no lfdr")  # pragma: no cover
    return {out: post}


STEP_COMPUTE = {
    "flash": compute_flash,
    "flash_nonneg": compute_flash_nonneg,
    "pca": compute_pca,
    "canonical": compute_canonical,
    "vhat_identity": compute_vhat_identity,
    "vhat_simple": compute_vhat_simple,
    "vhat_mle": compute_vhat_mle,
    "vhat_corshrink_xcondition": compute_vhat_corshrink_xcondition,
    "vhat_simple_specific": compute_vhat_simple_specific,
    "ud": compute_ud,
    "ud_unconstrained": compute_ud_unconstrained,
    "ed_bovy": compute_ed_bovy,
    "plot_U": compute_plot_U,
    "mash_1": compute_mash_1,
}
