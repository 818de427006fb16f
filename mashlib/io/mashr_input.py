"""The mashr input list of the MASH protocol (map section 1.0).

The mashr input is a named list of variants x conditions matrices ``strong.b``,
``strong.s``, ``strong.z``, ``random.*``, ``null.*`` and optionally ``XtX``;
:func:`read_mashr_input` validates it into a :class:`MashrInput` and
:meth:`MashrInput.preprocess` applies pecotmr's NA -> 0 / Shat <= 0 -> 1000 rule and
its ``mash::mash::<id>`` row names.

Everything here is re-exported by :mod:`mashlib.io` (``from mashlib.io import
read_mashr_input, MashrInput`` keeps working).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .rds import read_rds, write_rds

__all__ = [
    "EffectSet",
    "MashrInput",
    "read_mashr_input",
    "mashr_input_from_dict",
    "write_mashr_input",
    "preprocess_matrices",
]

_SETS = ("strong", "random", "null")
_REQUIRED = tuple(f"{s}.{k}" for s in _SETS for k in ("b", "s"))
_OPTIONAL = tuple(f"{s}.z" for s in _SETS) + ("XtX",)


@dataclasses.dataclass
class EffectSet:
    """One variant set of a mashr input: effects ``b``, standard errors ``s``, z-scores ``z``.

    Each is a variants x conditions ``DataFrame``; ``z`` may be ``None``.
    """

    b: pd.DataFrame
    s: pd.DataFrame
    z: pd.DataFrame | None = None

    @property
    def n(self) -> int:
        return self.b.shape[0]


@dataclasses.dataclass
class MashrInput:
    """The mashr input list of the MASH protocol (map section 1.0).

    Attributes
    ----------
    strong, random, null : EffectSet or None
        The three variant sets (``None`` when absent from the file).
    XtX : pandas.DataFrame or None
        Legacy R x R matrix, carried along but unused.
    conditions : list of str
        Condition (column) names, shared by every matrix.
    path : str or None
        The file it was read from (used in error messages).
    """

    strong: EffectSet | None
    random: EffectSet | None
    null: EffectSet | None
    conditions: list[str]
    XtX: pd.DataFrame | None = None
    path: str | None = None

    def get(self, name: str) -> EffectSet:
        """Return a set by name, with a clear error when the file lacks it."""
        es = getattr(self, name)
        if es is None:
            raise MashInputError(
                f"{self.path or 'mashr input'}: element '{name}.b'/'{name}.s' is missing; "
                f"this step needs the {name} set")
        return es

    def preprocess(self) -> MashrInput:
        """Apply pecotmr's matrix round trip (map section 1.0) to every set.

        NA Bhat -> 0, NA or non-positive Shat -> 1000, z recomputed as b/s, row names
        ``mash::mash::<id>`` (``<id>`` = the row name, or ``var<i>`` when the rows are
        unnamed; a duplicated id keeps its last row at the first position).

        Returns
        -------
        MashrInput
            A new object; ``self`` is unchanged.
        """
        sets = {}
        for name in _SETS:
            es = getattr(self, name)
            if es is None:
                sets[name] = None
                continue
            b, s = preprocess_matrices(es.b, es.s)
            sets[name] = EffectSet(b, s, b / s)
        return dataclasses.replace(self, **sets)

    def to_dict(self) -> dict[str, Any]:
        """The R list structure (``strong.b``, ``strong.s``, ``strong.z``, ..., ``XtX``)."""
        out: dict[str, Any] = {}
        for name in _SETS:
            es = getattr(self, name)
            if es is None:
                continue
            out[f"{name}.b"] = es.b
            out[f"{name}.s"] = es.s
            if es.z is not None:
                out[f"{name}.z"] = es.z
        if self.XtX is not None:
            out["XtX"] = self.XtX
        return out


def preprocess_matrices(b: pd.DataFrame, s: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pecotmr's ``.mashSumStatsToMatrices`` net effect on one (b, s) pair.

    Parameters
    ----------
    b, s : pandas.DataFrame
        Variants x conditions effects and standard errors (same shape).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        With NA b -> 0, NA or <= 0 s -> 1000 and row names ``mash::mash::<id>``.
    """
    b = pd.DataFrame(b).copy()
    s = pd.DataFrame(s).copy()
    if b.shape != s.shape:
        raise MashInputError(f"b has shape {b.shape} but s has shape {s.shape}; they must match")
    if isinstance(b.index, pd.RangeIndex):
        ids = [f"var{i + 1}" for i in range(b.shape[0])]
    else:
        ids = [str(x) for x in b.index]
    rn = [f"mash::mash::{i}" for i in ids]
    b.index = rn
    s.index = rn
    if len(set(rn)) != len(rn):  # first-seen order, last value wins
        keep_order = list(dict.fromkeys(rn))
        b = b.groupby(level=0, sort=False).last().reindex(keep_order)
        s = s.groupby(level=0, sort=False).last().reindex(keep_order)
    bv = b.to_numpy(dtype=float)
    sv = s.to_numpy(dtype=float)
    bv = np.where(np.isnan(bv), 0.0, bv)
    sv = np.where(np.isnan(sv) | (sv <= 0), 1000.0, sv)
    return (pd.DataFrame(bv, index=b.index, columns=b.columns),
            pd.DataFrame(sv, index=s.index, columns=s.columns))


def _as_frame(x: Any, key: str, path: str) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        df = x
    elif isinstance(x, np.ndarray) and x.ndim == 2:
        df = pd.DataFrame(x)
    else:
        raise MashInputError(
            f"{path}: element '{key}' must be a numeric matrix (variants x conditions), "
            f"got {type(x).__name__}")
    try:
        return df.astype(float)
    except (TypeError, ValueError):
        raise MashInputError(f"{path}: element '{key}' is not numeric") from None


def mashr_input_from_dict(d: dict, path: str = "mashr input", require: tuple[str, ...] = ("strong", "random", "null")) -> MashrInput:
    """Validate a named list (as read from RDS) into a :class:`MashrInput`.

    Parameters
    ----------
    d : dict
        ``strong.b``, ``strong.s``, ``random.b``, ... (``*.z`` and ``XtX`` optional).
    path : str
        Name used in error messages.
    require : tuple of str
        The sets that must be present.

    Raises
    ------
    MashInputError
        Naming the file and the missing/unknown element or the shape mismatch.
    """
    if not isinstance(d, dict):
        raise MashInputError(
            f"{path}: expected a named list of matrices (strong.b, strong.s, ...), got {type(d).__name__}")
    unknown = [k for k in d if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise MashInputError(
            f"{path}: unknown element(s) {unknown}; a mashr input holds only "
            f"{', '.join(_REQUIRED + _OPTIONAL)}")
    sets: dict[str, EffectSet | None] = {}
    conditions: list[str] | None = None
    ref_key = None
    for name in _SETS:
        have = [k for k in (f"{name}.b", f"{name}.s") if k in d]
        if not have:
            if name in require:
                raise MashInputError(f"{path}: element '{name}.b' is missing (needed: "
                                     f"{', '.join(f'{n}.b, {n}.s' for n in require)})")
            sets[name] = None
            continue
        if len(have) == 1:
            missing = f"{name}.s" if have[0].endswith(".b") else f"{name}.b"
            raise MashInputError(f"{path}: element '{missing}' is missing (it pairs with '{have[0]}')")
        mats = {k: _as_frame(d[f"{name}.{k}"], f"{name}.{k}", path)
                for k in ("b", "s", "z") if f"{name}.{k}" in d and d[f"{name}.{k}"] is not None}
        for k, m in mats.items():
            if m.shape != mats["b"].shape:
                raise MashInputError(
                    f"{path}: element '{name}.{k}' has shape {m.shape} but '{name}.b' has "
                    f"{mats['b'].shape}; every matrix of a set must have the same shape")
        cols = mats["b"].columns
        cond = None if isinstance(cols, pd.RangeIndex) else [str(c) for c in cols]
        if conditions is None:
            conditions, ref_key = cond, f"{name}.b"
            ncol = mats["b"].shape[1]
        elif mats["b"].shape[1] != ncol or cond != conditions:
            raise MashInputError(
                f"{path}: element '{name}.b' has conditions {cond if cond else mats['b'].shape[1]} "
                f"but '{ref_key}' has {conditions if conditions else ncol}; all sets need the same columns")
        sets[name] = EffectSet(mats["b"], mats["s"], mats.get("z"))
    if conditions is None:
        conditions = [f"condition_{i + 1}" for i in range(ncol)]
        for es in sets.values():
            if es is not None:
                for df in (es.b, es.s, es.z):
                    if df is not None:
                        df.columns = conditions
    xtx = d.get("XtX")
    if xtx is not None:
        xtx = _as_frame(xtx, "XtX", path)
        if xtx.shape != (len(conditions), len(conditions)):
            raise MashInputError(f"{path}: element 'XtX' has shape {xtx.shape}; expected "
                                 f"{len(conditions)} x {len(conditions)} (conditions x conditions)")
    return MashrInput(sets["strong"], sets["random"], sets["null"], conditions, xtx, path)


def read_mashr_input(path: str | os.PathLike, require: tuple[str, ...] = ("strong", "random", "null")) -> MashrInput:
    """Read and validate a mashr input RDS (map section 1.0).

    Parameters
    ----------
    path : str or path-like
        RDS file holding a named list ``strong.b``, ``strong.s``, ``strong.z``,
        ``random.b``, ..., ``null.z`` and optionally ``XtX``.
    require : tuple of str
        Sets that must be present (a step that only needs ``null`` can pass ``("null",)``).

    Returns
    -------
    MashrInput
        Not yet preprocessed: call :meth:`MashrInput.preprocess`.
    """
    return mashr_input_from_dict(read_rds(path), str(path), require)


def write_mashr_input(path: str | os.PathLike, data: MashrInput) -> Path:
    """Write a :class:`MashrInput` as the R named list (atomic)."""
    return write_rds(path, data.to_dict())
