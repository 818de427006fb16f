"""Shared input validators (lowest layer: imports only ``_errors``).

Every function here raises :class:`mashlib._errors.MashInputError` with a one-line
message naming the argument, the offending element and the remedy, so that each
public function validates a given kind of argument the same way.

* :func:`check_subset` -- row indices / boolean masks (``subset=`` arguments);
* :func:`match_conditions` -- map new data's condition names onto a fitted model's;
* :func:`check_writable_dir` -- an output folder that exists-or-can-be-created and is
  writable (``--cwd``, ``out=``);
* :func:`check_effect_model` -- ``"EE"``/``"EZ"`` (any case), nothing else;
* :func:`check_choice` -- one of a fixed set of strings, with a "did you mean" hint;
* :func:`check_square` -- a finite, non-empty square numeric matrix (optionally R x R).
"""
from __future__ import annotations

import difflib
import errno
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ._errors import MashInputError

__all__ = ["check_subset", "match_conditions", "check_writable_dir", "check_effect_model",
           "is_default_names", "not_a_prior_message", "check_choice", "check_square", "did_you_mean"]


def did_you_mean(value, valid: Sequence[str], cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid string, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(value, choices: Sequence[str], name: str, what: str = "value") -> str:
    """``value`` if it is one of ``choices``; else a one-line error listing them, with a hint.

    Parameters
    ----------
    value : object
    choices : sequence of str
    name : str
        How the caller names the argument in the message (``"ebnm: prior_family"``).
    what : str
        What a choice is (``"prior family"``), for the message.
    """
    if isinstance(value, str) and value in choices:
        return value
    raise MashInputError(f"{name}={value!r} is not a known {what}{did_you_mean(value, choices)}; "
                         f"valid: {list(choices)}")


def check_square(x, name: str, R: int | None = None, finite: bool = True):
    """A float copy of a square matrix and its column labels (``None`` unless a DataFrame).

    Raises a one-line :class:`MashInputError` naming ``name`` when ``x`` is not numeric, not
    a non-empty square matrix, not ``R x R`` (when ``R`` is given) or (``finite``) has a
    missing or infinite entry (its 1-based row and column named).
    """
    labels = None
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):
        labels = list(x.columns)
        x = x.to_numpy()
    try:
        a = np.array(x, dtype=float, copy=True)
    except (TypeError, ValueError):
        raise MashInputError(f"{name} must be a numeric square matrix; got an object of type "
                             f"{type(x).__name__}. Pass a 2-D numpy array or DataFrame.") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise MashInputError(f"{name} must be a non-empty square matrix; got shape {a.shape}.")
    if R is not None and a.shape[0] != R:
        raise MashInputError(f"{name} is {a.shape[0]} x {a.shape[1]} but the data have R = {R} "
                             "conditions; build it from the same data.")
    if finite and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise MashInputError(f"{name} has a missing or infinite entry at row {bad[0] + 1}, column "
                             f"{bad[1] + 1}; remove or impute the missing values first.")
    return a, labels


def check_subset(subset, n_rows: int, name: str = "subset", min_rows: int = 1,
                 what: str = "") -> np.ndarray:
    """Validate a row selection and return it as sorted-as-given 0-based integer indices.

    Parameters
    ----------
    subset : None, sequence of int, or boolean mask
        None selects every row. Integers are 0-based row positions (negative ones count
        from the end, as NumPy); a boolean mask must have exactly ``n_rows`` entries.
    n_rows : int
        Number of rows J of the data the subset indexes.
    name : str
        Argument name used in messages.
    min_rows : int
        Fewest rows the caller can work with.
    what : str
        The caller's name, for the "needs at least" message.

    Returns
    -------
    ndarray of int64
        Row positions in ``0 .. n_rows - 1`` (negative ones resolved), in the given order.

    Raises
    ------
    MashInputError
        Non-integer values, an index outside ``-n_rows .. n_rows - 1`` (the first offending
        one and the row count are named), a mask of the wrong length, or fewer than
        ``min_rows`` selected rows.
    """
    n_rows = int(n_rows)
    if subset is None:
        idx = np.arange(n_rows)
    else:
        arr = np.asarray(subset)
        if arr.dtype == bool:
            if arr.ndim != 1 or arr.size != n_rows:
                raise MashInputError(
                    f"{name}: a boolean mask must have one entry per row ({n_rows}), got "
                    f"{arr.size}; pass a mask of length {n_rows} or 0-based row indices.")
            idx = np.flatnonzero(arr)
        else:
            arr = arr.ravel()
            if arr.size and not (np.issubdtype(arr.dtype, np.integer)
                                 or (np.issubdtype(arr.dtype, np.floating)
                                     and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))):
                raise MashInputError(
                    f"{name}: must be 0-based integer row indices or a boolean mask, got values of "
                    f"type {arr.dtype}.")
            idx = arr.astype(np.int64)
            bad = np.flatnonzero((idx < -n_rows) | (idx >= n_rows))
            if bad.size:
                i = int(bad[0])
                raise MashInputError(
                    f"{name}: index {int(idx[i])} (position {i} of {name}) is out of range for "
                    f"{n_rows} rows; indices are 0-based and must lie in 0..{n_rows - 1}.")
            idx = np.where(idx < 0, idx + n_rows, idx)
    if idx.size < min_rows:
        raise MashInputError(
            f"{name}: selects {idx.size} row(s); {what or 'this function'} needs at least {min_rows}.")
    return idx


def is_default_names(names: Sequence[str] | None) -> bool:
    """True for None or the placeholder names ``"1".."R"`` given to unnamed conditions."""
    if names is None:
        return True
    return [str(c) for c in names] == [str(i + 1) for i in range(len(names))]


def match_conditions(model_conditions: Sequence[str] | None, data_conditions: Sequence[str] | None,
                     *, data_named: bool = True, what: str = "data") -> np.ndarray | None:
    """Positions of the model's conditions among the data's columns, by name.

    Parameters
    ----------
    model_conditions : list of str or None
        Conditions of the fitted model, in its order (None: unknown).
    data_conditions : list of str or None
        Column names of the new data.
    data_named : bool
        False when the data's names are placeholders (no names were given).
    what : str
        Argument name for messages.

    Returns
    -------
    ndarray of int or None
        ``perm`` with ``data_columns[perm] == model_conditions``, or None when the data are
        already in the model's order or either side has no names (then the columns are
        taken by position, as mashr does).

    Raises
    ------
    MashInputError
        When both sides are named and the names differ (missing and extra names listed),
        or when the counts differ.
    """
    if model_conditions is None or data_conditions is None or not data_named:
        if model_conditions is not None and data_conditions is not None \
                and len(model_conditions) != len(data_conditions):
            raise MashInputError(
                f"{what}: has {len(data_conditions)} conditions but the model has "
                f"{len(model_conditions)}; give data with the model's conditions.")
        return None
    m = [str(c) for c in model_conditions]
    d = [str(c) for c in data_conditions]
    if m == d:
        return None
    missing = [c for c in m if c not in d]
    extra = [c for c in d if c not in m]
    if missing or extra or len(set(d)) != len(d):
        dup = sorted({c for c in d if d.count(c) > 1})
        raise MashInputError(
            f"{what}: condition names differ from the fitted model's. In the model but not the "
            f"data: {missing or 'none'}; in the data but not the model: {extra or 'none'}"
            + (f"; repeated in the data: {dup}" if dup else "")
            + ". Give data with exactly the model's conditions (any order).")
    pos = {c: i for i, c in enumerate(d)}
    return np.asarray([pos[c] for c in m], dtype=np.int64)


def check_effect_model(value, name: str = "--effect-model") -> str:
    """``"EE"`` or ``"EZ"`` (case-insensitive, surrounding blanks ignored); anything else raises."""
    em = str(value).strip().upper()
    if em not in ("EE", "EZ"):
        raise MashInputError(
            f"{name}: {value!r} is not an effect model; use EE (exchangeable effects, alpha 0) "
            "or EZ (exchangeable z-scores, alpha 1).")
    return em


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_writable_dir(path, name: str = "--cwd") -> Path:
    """Check that ``path`` is, or can be created as, a writable folder; return it.

    Creates nothing: probes the folder (or, when it does not exist yet, its nearest existing
    parent) by creating and removing a temporary file, so read-only mounts, missing
    permissions and files in the way are all caught before any work starts.

    Raises
    ------
    MashInputError
        Naming the path that cannot be written and why (a regular file in the way, read-only
        file system, permission denied).
    """
    path = Path(path)
    probe = _nearest_existing(path)
    if not probe.is_dir():
        if probe == path:
            raise MashInputError(f"{name} {path}: is a regular file, not a folder; choose a folder "
                                 "(it is created when missing).")
        raise MashInputError(f"{name} {path}: cannot be created because {probe} is a regular file, "
                             "not a folder; choose another path.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mashlib-write-test.", dir=probe)
    except OSError as e:
        why = {errno.EROFS: "it is on a read-only file system",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.ENOSPC: "no space left on the device"}.get(e.errno, e.strerror or str(e))
        where = f"{path}" if probe == path else f"{path} (its parent {probe})"
        raise MashInputError(f"{name} {where}: cannot write there: {why}; choose a writable "
                             "folder.") from None
    os.close(fd)
    os.unlink(tmp)
    return path


def not_a_prior_message(path, obj) -> str:
    """One line: ``path`` is not a prior file, what it holds instead, what a prior must have."""
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        held = f"a list of {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"
        if {"strong.b", "random.b", "strong", "random"} & set(keys):
            held += " (a mashr input, the --data of mixture_prior's workflows)"
    else:
        held = f"a {type(obj).__name__}"
    return (f"{path}: is not a prior; it holds {held}. A prior file must have U (a named list of "
            "R x R covariance matrices) and w (their weights), as written by `mashlib run "
            "mixture_prior ed_bovy` (or ud).")
