"""What the workflow notebooks' cells call besides the engines (map sections 1.1-1.15).

The protocol itself is defined in the notebooks (``mashlib/protocol/notebooks/``): one
section per workflow whose cell reads the inputs the protocol's way, calls the engine
(``ml.cov_pca``, ``ml.ed_bovy``, ``ml.mash``, ...) and saves the R object. This module
holds the input readers and the conversions to the R structures of the SoS pipeline, so
that those cells stay a few lines. Engines are imported inside the functions so that
``import mashlib.protocol`` stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .._validation import not_a_prior_message
from ..io import MashrInput, RArray, read_mashr_input, read_rds
from . import naming

__all__ = ["load_input", "make_data", "strong_data", "with_dimnames", "bare", "read_components",
           "read_prior_U", "read_vhat", "prior_vhat_file", "prior_file", "mash_model_file", "prior_object",
           "fitted_g_from_r", "read_fitted_g"]


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
    prefix = naming.prefix_of(p.data, p.output_prefix)
    comps: dict[str, Any] = {}
    for c in p.mixture_components:
        obj = read_rds(naming.component_file(p.cwd, prefix, c))
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


def prior_vhat_file(p: dict) -> Path:
    """The V the prior steps use: ``{prefix}.{EM}.V_<vhat>.rds``, V_simple when ``vhat = mle``
    (V_mle itself needs a prior: the dependency loop of map 1.7)."""
    v = naming.vhat_method(p.vhat)
    prefix = naming.prefix_of(p.data, p.output_prefix)
    return naming.vhat_file(p.cwd, prefix, p.effect_model, "simple" if v == "mle" else v)


def prior_file(p: dict) -> Path:
    """``{cwd}/{prefix}.{EM}.prior.rds``: the prior that ``ed_bovy``/``ud`` write."""
    return naming.prior_file(p.cwd, naming.prefix_of(p.data, p.output_prefix), p.effect_model)


def mash_model_file(p: dict) -> Path:
    """``{cwd}/{prefix}.{EM}.mash_model.rds``: the model that ``mash_1`` writes."""
    return naming.mash_model_file(p.cwd, naming.prefix_of(p.data, p.output_prefix), p.effect_model)


def strong_data(p: dict, V=None):
    """The strong set as the protocol reads it: ``(MashrInput, mash_set_data(strong.b, strong.s,
    alpha, V, zero_Bhat_Shat_reset=1000))`` with NA b -> 0 and NA s -> 1000 (map 1.0)."""
    inp = load_input(p.data, require=("strong",))
    return inp, make_data(inp.strong.b, inp.strong.s, naming.alpha_of(p.effect_model), V)


def with_dimnames(x, conditions: list[str]):
    """Condition names as dimnames, as the R scripts write them: a covariance list (dict of
    R x R) -> dict of DataFrames, one matrix -> DataFrame; ``None`` (no flash factor) -> ``{}``."""
    if x is None:
        return {}
    if isinstance(x, dict):
        return _labelled(x, conditions)
    return pd.DataFrame(_mat(x), index=conditions, columns=conditions)


def bare(U: dict) -> dict:
    """A covariance list as plain float ndarrays (what the engines take)."""
    return _bare(U)


def prior_object(res, U_raw: dict | None = None, conditions: list | None = None) -> dict:
    """An engine's result as the prior RDS ``list(U, w, loglik)`` of the SoS pipeline.

    ``U_raw``: components as read from the component files; they keep their dimnames.
    ``conditions``: the refined matrices not in ``U_raw`` (``ED_*``) get them as dimnames,
    as mashr's ``bovy_wrapper`` names them.
    """
    U = res["U"] if isinstance(res, dict) else res.U
    w = res["w"] if isinstance(res, dict) else res.w
    loglik = res.get("loglik") if isinstance(res, dict) else getattr(res, "loglik", None)
    if U_raw is not None:  # keep the raw components as read (with their dimnames)
        U = {k: (U_raw[k] if k in U_raw else _labelled({k: v}, conditions)[k] if conditions else _mat(v))
             for k, v in U.items()}
    else:
        U = {k: (v if isinstance(v, pd.DataFrame) else _mat(v)) for k, v in U.items()}
    if not isinstance(w, pd.Series):
        w = pd.Series(np.asarray(w, dtype=float), index=list(w.keys()) if isinstance(w, dict) else None)
    return {"U": U, "w": w.astype(float), "loglik": None if loglik is None else float(loglik)}


# --------------------------------------------------------------------------- mash_fit


def fitted_g_from_r(g: dict):
    """Rebuild a :class:`mashlib.FittedG` from its R list (``pi``, ``Ulist``, ``grid``,
    ``usepointmass``); see :func:`mashlib.fitted_g_from_r`."""
    from ..model import fitted_g_from_r as _from_r
    return _from_r(g)


def read_fitted_g(model_file, alpha: float):
    """``fitted_g`` of a ``mash_1`` output, checked against the effect model of this run."""
    saved = read_rds(model_file)
    model = saved.get("mash_model") if isinstance(saved, dict) else None
    if not isinstance(model, dict) or "fitted_g" not in model:
        raise MashInputError(f"{model_file}: not a mash model file (expected list(mash_model, vhat_file, prior_file))")
    if float(model.get("alpha", 0.0)) != float(alpha):
        em = "EZ" if alpha == 1 else "EE"
        raise MashInputError(
            f"{model_file}: the model was fitted with alpha={model.get('alpha')} but --effect-model "
            f"{em} gives alpha={alpha:g}; use the same effect model in both steps")
    return fitted_g_from_r(model["fitted_g"])
