"""The fitted mash model applied to many analysis units (xqtl-protocol ``mash_posterior``).

One unit is one RDS file (a gene, a region) holding a variants x conditions ``Bhat`` and
``Shat`` (under ``bhat_key``/``shat_key``, optionally inside the list element
``data_table_name``).  For each unit this module

1. reads the two matrices, aligns their columns **by name** to the model's conditions,
   drops ``exclude`` conditions (names, or 1-based column numbers of the unit as
   pecotmr's ``mash_posterior.R``), and with ``slice_method`` the all-NA columns and the
   rows with a NA (the SoS ``slice_method``); a model condition the unit lacks is an
   error naming it unless it is excluded or sliced;
2. preprocesses as pecotmr (NA Bhat -> 0, NA, non-positive or infinite Shat -> 1000, rows
   ``mash::mash::<id>``) and restricts the model and V to the kept conditions
   (:func:`mashlib.update_mash_model_cov`);
3. computes ``mash_compute_posterior_matrices(model, mash_set_data(Bhat, Shat, alpha, V,
   zero_Bhat_Shat_reset = 1000), output_posterior_cov)`` and returns it as the R list the
   R script saves (``PosteriorMean``, ``PosteriorSD``, ``lfdr``, ``NegativeProb``,
   ``lfsr``, ``PosteriorCov``).

:func:`run_units` runs a per-unit function over all units, in this process, in a pool
of processes (the model is sent once per worker) or on a Dask client, skipping units
whose output is up to date (its sidecar records the unit file's sha256 and the
signature of the model, V and options), and collects every unit's failure without
stopping the others.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import MashInputError

__all__ = ["Unit", "UnitModel", "UnitOptions", "UnitResult", "read_units_file", "load_unit_model",
           "read_vhat_file", "read_unit_matrices", "prepare_unit", "unit_posterior", "run_units",
           "write_rds_fast", "sha256_file"]


# --------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class Unit:
    """One analysis unit: its id (file name without ``.rds``) and file."""

    unit_id: str
    path: Path


def _unit_id(path: Path) -> str:
    name = path.name
    for ext in (".rds", ".RDS", ".Rds"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def read_units_file(path) -> list[Unit]:
    """The ``--analysis-units`` file: one unit RDS path per line, the first column only
    (further columns, blank lines, ``#`` comments and double quotes are ignored, as the
    SoS step).  Relative paths are taken from the current directory, else from the
    list's own folder.

    Raises
    ------
    MashInputError
        Missing or empty list; two units with the same id (file name).
    """
    p = Path(path)
    if not p.is_file():
        raise MashInputError(f"--analysis-units {p}: file not found; it lists one unit RDS path per line")
    units: list[Unit] = []
    seen: dict[str, Path] = {}
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        line = line.replace('"', "").strip()
        if not line or line.startswith("#"):
            continue
        f = Path(line.split()[0])
        if not f.is_absolute() and not f.exists() and (p.parent / f).exists():
            f = p.parent / f
        u = Unit(_unit_id(f), f)
        if u.unit_id in seen and seen[u.unit_id] != f:
            raise MashInputError(f"--analysis-units {p}, line {n}: unit id {u.unit_id!r} ({f}) is also the id of "
                                 f"{seen[u.unit_id]}; unit files need distinct names (outputs are named by them)")
        if u.unit_id not in seen:
            seen[u.unit_id] = f
            units.append(u)
    if not units:
        raise MashInputError(f"--analysis-units {p}: lists no unit file")
    return units


def sha256_file(path) -> str:
    """Content hash of a file (the provenance signature of inputs)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass
class UnitModel:
    """What every unit needs from the model, loaded once per process."""

    g: Any                       # FittedG
    alpha: float
    conditions: Optional[list]   # the model's condition names (None: unknown, positional)
    labelled: frozenset          # Ulist names carrying dimnames in the R file
    vhat_file: Optional[str]     # the V recorded in the protocol's model list

    @property
    def n_conditions(self) -> int:
        return int(next(iter(self.g.Ulist.values())).shape[0])


def load_unit_model(path) -> UnitModel:
    """Read a mash model RDS: ``saveRDS(mash(...))`` or the protocol's ``list(mash_model, ...)``."""
    from ..io import read_rds
    from ..model import mash_from_r
    obj = read_rds(path)
    if not isinstance(obj, dict):
        raise MashInputError(f"--mash-model {path}: not a mash model (expected list(mash_model, vhat_file, "
                             "prior_file) from mash_fit, or saveRDS(mash(...)))")
    vhat_file = obj.get("vhat_file") if "mash_model" in obj else None
    m = mash_from_r(obj if "fitted_g" in obj or "mash_model" in obj else {"fitted_g": obj})
    r = obj.get("mash_model", obj)
    Ul = (r.get("fitted_g") or {}).get("Ulist") or {}
    labelled = frozenset(k for k, v in Ul.items() if isinstance(v, pd.DataFrame))
    return UnitModel(g=m.fitted_g, alpha=float(m.alpha), conditions=list(m.conditions) or None,
                     labelled=labelled, vhat_file=str(vhat_file) if isinstance(vhat_file, str) else None)


def read_vhat_file(path, model: UnitModel) -> np.ndarray:
    """A residual correlation RDS as an R x R array in the model's condition order.

    ``"identity"`` gives the identity.  A matrix with dimnames is reordered by name
    (it must name every model condition); one without is taken in the model's order.
    """
    R = model.n_conditions
    if str(path) == "identity":
        return np.eye(R)
    from ..io import read_rds
    V = read_rds(path)
    if isinstance(V, dict) and "mat" in V:
        V = V["mat"]
    arr = np.asarray(V.to_numpy() if isinstance(V, pd.DataFrame) else V, dtype=float) \
        if hasattr(V, "shape") else None
    if arr is None or arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise MashInputError(f"V file {path}: expected an R x R residual correlation matrix")
    if isinstance(V, pd.DataFrame) and not isinstance(V.columns, pd.RangeIndex) and model.conditions:
        names = [str(c) for c in V.columns]
        missing = [c for c in model.conditions if c not in names]
        if missing:
            raise MashInputError(f"V file {path}: lacks the model's conditions {missing}")
        ix = [names.index(c) for c in model.conditions]
        return arr[np.ix_(ix, ix)]
    if arr.shape != (R, R):
        raise MashInputError(f"V file {path}: is {arr.shape[0]} x {arr.shape[1]} but the model has {R} conditions")
    return arr


@dataclasses.dataclass(frozen=True)
class UnitOptions:
    """The per-unit settings of the ``posterior`` workflow."""

    bhat_key: str = "bhat"
    shat_key: str = "sbhat"
    data_table_name: str = ""
    exclude: tuple = ()
    posterior_cov: bool = True
    slice_method: bool = False
    subset_method: str = "marginal"
    alpha: float = 0.0
    compresslevel: int = 0


def _as_frame(x, key: str, where: str) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        df = x
    elif isinstance(x, np.ndarray) and x.ndim == 2:
        df = pd.DataFrame(x)
    else:
        raise MashInputError(f"{where}: element {key!r} is a {type(x).__name__}, not a variants x conditions matrix")
    try:
        return df.astype(float)
    except (TypeError, ValueError):
        raise MashInputError(f"{where}: element {key!r} is not numeric") from None


def read_unit_matrices(path, opts: UnitOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``Bhat`` and ``Shat`` of one unit file (see the module docstring).

    Raises
    ------
    MashInputError
        Missing file, missing keys (naming those present), shapes or columns that differ.
    """
    from ..io import read_rds
    p = Path(path)
    if not p.is_file():
        raise MashInputError(f"{p}: file not found")
    obj = read_rds(p)
    where = str(p)
    if opts.data_table_name:
        if not isinstance(obj, dict) or opts.data_table_name not in obj:
            have = list(obj) if isinstance(obj, dict) else type(obj).__name__
            raise MashInputError(f"{p}: has no element {opts.data_table_name!r} (--data-table-name); it has {have}")
        obj = obj[opts.data_table_name]
        where = f"{p}${opts.data_table_name}"
    if not isinstance(obj, dict):
        raise MashInputError(f"{where}: expected a named list holding {opts.bhat_key!r} and {opts.shat_key!r}, "
                             f"got {type(obj).__name__}")
    missing = [k for k in (opts.bhat_key, opts.shat_key) if k not in obj]
    if missing:
        raise MashInputError(f"{where}: lacks {' and '.join(repr(k) for k in missing)} (--bhat-key/--shat-key); "
                             f"it has {list(obj)}")
    B = _as_frame(obj[opts.bhat_key], opts.bhat_key, where)
    S = _as_frame(obj[opts.shat_key], opts.shat_key, where)
    if B.shape != S.shape:
        raise MashInputError(f"{where}: {opts.bhat_key!r} is {B.shape[0]} x {B.shape[1]} but {opts.shat_key!r} is "
                             f"{S.shape[0]} x {S.shape[1]}")
    if not isinstance(B.columns, pd.RangeIndex) and not isinstance(S.columns, pd.RangeIndex) \
            and [str(c) for c in B.columns] != [str(c) for c in S.columns]:
        raise MashInputError(f"{where}: {opts.bhat_key!r} and {opts.shat_key!r} have different column names")
    return B, S


def _exclusions(tokens: Sequence[str], unit_conds: list) -> set:
    """``--exclude-condition`` tokens -> this unit's condition names: digits are 1-based
    unit columns (out of range: ignored, as the R script); a name the unit lacks is nothing
    to drop here (the workflow warns once about names that are not model conditions)."""
    out = set()
    for tok in tokens:
        tok = str(tok).strip()
        if tok.isdigit():
            i = int(tok)
            if 1 <= i <= len(unit_conds):
                out.add(unit_conds[i - 1])
        elif tok:
            out.add(tok)
    return out


def prepare_unit(B: pd.DataFrame, S: pd.DataFrame, model: UnitModel, opts: UnitOptions, where: str):
    """Align, exclude, slice and preprocess one unit (steps 1-2 of the module docstring).

    Returns
    -------
    (Bhat, Shat, keep, conditions, notices)
        Preprocessed DataFrames in the kept conditions (model order), the kept condition
        names, the model's conditions (the unit's when the model carries none), and the
        notices to log (excluded/sliced conditions and rows).
    """
    from ..io import preprocess_matrices
    notices = []
    R = model.n_conditions
    named = not isinstance(B.columns, pd.RangeIndex)
    if model.conditions is None:
        if B.shape[1] != R:
            raise MashInputError(f"{where}: has {B.shape[1]} conditions but the model has {R}, and the model carries "
                                 "no condition names to align them; give units the model's columns")
        mconds = [str(c) for c in B.columns] if named else [str(i + 1) for i in range(R)]
    else:
        mconds = model.conditions
    if not named:
        if B.shape[1] != R:
            raise MashInputError(f"{where}: has {B.shape[1]} unnamed columns but the model has {R} conditions; "
                                 "name the columns so they can be aligned")
        B = B.set_axis(mconds, axis=1)
        S = S.set_axis(mconds, axis=1)
    uconds = [str(c) for c in B.columns]
    B = B.set_axis(uconds, axis=1)
    S = S.set_axis(uconds, axis=1)
    if len(set(uconds)) != len(uconds):
        dup = sorted({c for c in uconds if uconds.count(c) > 1})
        raise MashInputError(f"{where}: condition(s) {dup} appear twice")
    excl = _exclusions(opts.exclude, uconds)
    extra = [c for c in uconds if c not in mconds and c not in excl]
    if extra:
        raise MashInputError(f"{where}: condition(s) {extra} are not in the model ({len(mconds)} conditions: "
                             f"{', '.join(mconds[:6])}{', ...' if len(mconds) > 6 else ''}); rename the columns "
                             "or list them in --exclude-condition")
    if opts.slice_method:
        empty = [c for c in uconds if c not in excl and B[c].isna().all()]
        if empty:
            notices.append(f"conditions with no estimate dropped: {', '.join(empty)}")
            excl |= set(empty)
    lacking = [c for c in mconds if c not in uconds]
    uncovered = [c for c in lacking if c not in excl]
    if uncovered and not opts.slice_method:
        raise MashInputError(f"{where}: lacks the model's condition(s) {uncovered}; list them in "
                             "--exclude-condition, or pass --slice-method to drop the conditions a unit lacks")
    if lacking:
        notices.append(f"conditions the unit lacks excluded: {', '.join(lacking)}")
        excl |= set(lacking)
    keep = [c for c in mconds if c not in excl]
    if not keep:
        raise MashInputError(f"{where}: no condition left after --exclude-condition/--slice-method")
    B, S = B[keep], S[keep]
    if opts.slice_method:
        rows = B.isna().any(axis=1).to_numpy()
        if rows.any():
            notices.append(f"{int(rows.sum())} of {len(rows)} rows with a missing estimate dropped")
            B, S = B.loc[~rows], S.loc[~rows]
        if B.shape[0] == 0:
            raise MashInputError(f"{where}: no row left after dropping the rows with a missing estimate")
    S = S.mask(np.isinf(S.to_numpy()), np.nan)   # Inf Shat -> 1000, as the SoS step's NaN/Inf rule
    B, S = preprocess_matrices(B, S)
    return B, S, keep, list(mconds), notices


def unit_posterior(path, model: UnitModel, V: np.ndarray, opts: UnitOptions, where: str = "") -> tuple[dict, list]:
    """The posterior list of one unit (module docstring) and its notices.

    ``V`` is the R x R residual correlation in the model's condition order.
    """
    from ..model import mash_compute_posterior_matrices, posterior_to_r, update_mash_model_cov
    from .steps import make_data
    where = where or str(path)
    B, S = read_unit_matrices(path, opts)
    B, S, keep, mconds, notices = prepare_unit(B, S, model, opts, where)
    idx = [mconds.index(c) for c in keep]
    g = update_mash_model_cov(model.g, mconds, keep, method=opts.subset_method, labelled=model.labelled)
    Vk = np.asarray(V, dtype=float)[np.ix_(idx, idx)]
    try:
        data = make_data(B, S, opts.alpha, Vk)
        res = mash_compute_posterior_matrices(g, data, output_posterior_cov=opts.posterior_cov)
    except MashInputError as exc:
        raise MashInputError(f"{where}: {exc}") from None
    return posterior_to_r(res, list(B.index), keep, with_cov=opts.posterior_cov), notices


def write_rds_fast(path, obj, compresslevel: int = 0) -> Path:
    """``write_rds`` with a chosen gzip level; 0 writes the XDR stream uncompressed (R's
    ``readRDS`` reads either).  Posterior means, SDs and covariances are doubles that gzip
    shrinks by under 10 % at several times the cost of serialising them."""
    from ..io import serialize_rds
    data = serialize_rds(obj)
    with atomic_path(path) as tmp:
        if compresslevel <= 0:
            tmp.write_bytes(data)
        else:
            with open(tmp, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0,
                                                      compresslevel=compresslevel) as gz:
                gz.write(data)
    return Path(path)


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class UnitResult:
    """What happened to one unit: ``status`` is ``"done"``, ``"up to date"`` or ``"failed"``."""

    unit_id: str
    path: str
    output: str
    status: str
    seconds: float = 0.0
    error: str = ""
    notices: tuple = ()
    extra: dict = dataclasses.field(default_factory=dict)


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _up_to_date(out: Path, unit_sha: str, signature: str) -> Optional[dict]:
    """The sidecar record when ``out`` is up to date (same signature and input, output
    untouched), else None."""
    side = _sidecar(out)
    if not out.is_file() or not side.is_file():
        return None
    try:
        rec = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    st = out.stat()
    ok = (rec.get("signature") == signature and rec.get("input_sha256") == unit_sha
          and rec.get("output_size") == st.st_size and rec.get("output_mtime_ns") == st.st_mtime_ns)
    return rec if ok else None


def _write_sidecar(out: Path, unit: Unit, unit_sha: str, signature: str, step: str, seconds: float,
                   notices: list, extra: dict):
    from .._version import __version__
    st = out.stat()
    rec = {"mashlib_version": __version__, "step": step, "unit": unit.unit_id, "input": str(unit.path),
           "input_sha256": unit_sha, "signature": signature, "output_size": st.st_size,
           "output_mtime_ns": st.st_mtime_ns, "elapsed_s": round(seconds, 4), "notices": list(notices),
           "extra": extra}
    with atomic_path(_sidecar(out)) as tmp:
        tmp.write_text(json.dumps(rec, indent=1) + "\n")


# per-process state of the pool workers (set once by _init_worker)
_STATE: dict = {}


def _init_worker(state: dict):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _STATE.clear()
    _STATE.update(state)


def _do_unit(task: tuple, state: Optional[dict] = None) -> UnitResult:
    """Run one unit: skip when up to date, else compute, write atomically, write the sidecar."""
    unit, out, signature, step = task
    st = state if state is not None else _STATE
    t0 = time.perf_counter()
    out = Path(out)
    where = f"unit {unit.unit_id} ({unit.path})"
    try:
        if not Path(unit.path).is_file():
            raise MashInputError(f"{unit.path}: file not found")
        sha = sha256_file(unit.path)
        rec = _up_to_date(out, sha, signature)
        if rec is not None:
            return UnitResult(unit.unit_id, str(unit.path), str(out), "up to date", time.perf_counter() - t0,
                              extra=rec.get("extra") or {})
        obj, notices, *more = st["fn"](unit, st, where)
        extra = more[0] if more else {}
        write_rds_fast(out, obj, getattr(st.get("opts"), "compresslevel", 0))
        dt = time.perf_counter() - t0
        _write_sidecar(out, unit, sha, signature, step, dt, notices, extra)
        return UnitResult(unit.unit_id, str(unit.path), str(out), "done", dt, notices=tuple(notices), extra=extra)
    except MashInputError as exc:
        msg = str(exc)
        if str(unit.path) not in msg:
            msg = f"{unit.path}: {msg}"
        return UnitResult(unit.unit_id, str(unit.path), str(out), "failed", time.perf_counter() - t0, msg)
    except Exception as exc:  # noqa: BLE001 - one unit's failure must not stop the others
        return UnitResult(unit.unit_id, str(unit.path), str(out), "failed", time.perf_counter() - t0,
                          f"{unit.path}: {type(exc).__name__}: {exc}")


def _dask_unit(task, state):
    return _do_unit(task, state)


def run_units(tasks: Sequence[tuple], state: dict, workers: int = 1, client=None,
              log: Callable[[str], None] = print, label: str = "units",
              progress_every: float = 10.0) -> list[UnitResult]:
    """Run ``state["fn"]`` over ``tasks`` (``(Unit, output path, signature, step)``).

    Parameters
    ----------
    tasks : sequence of tuple
    state : dict
        Sent once to each worker: ``fn(unit, state, where) -> (R object, notices)`` (a
        module-level function, so that it pickles) and what it needs (model, V, options).
    workers : int
        1: in this process; more: a pool of that many processes (spawned).
    client : dask.distributed.Client, optional
        Run the units as Dask tasks instead (the state is scattered once).
    log : callable
        Progress lines (about every ``progress_every`` seconds) and the failures.

    Returns
    -------
    list of UnitResult
        In the order of ``tasks``.
    """
    n = len(tasks)
    results: list[Optional[UnitResult]] = [None] * n
    t0 = last = time.perf_counter()
    counts = {"done": 0, "up to date": 0, "failed": 0}

    def record(i, r):
        nonlocal last
        results[i] = r
        counts[r.status] += 1
        if r.status == "failed":
            log(f"[{label}] FAILED {r.unit_id}: {r.error}")
        elif r.notices:
            log(f"[{label}] {r.unit_id}: {'; '.join(r.notices)}")
        now = time.perf_counter()
        finished = sum(counts.values())
        if now - last >= progress_every or finished == n:
            last = now
            log(f"[{label}] {finished}/{n} ({counts['done']} computed, {counts['up to date']} up to date, "
                f"{counts['failed']} failed) {now - t0:.1f} s")

    if client is not None:
        from dask.distributed import as_completed as dask_completed
        st = client.scatter(state, broadcast=True, hash=False)
        futs = {client.submit(_dask_unit, t, st, pure=False): i for i, t in enumerate(tasks)}
        for fut in dask_completed(futs):
            record(futs[fut], fut.result())
    elif workers <= 1 or n <= 1:
        for i, t in enumerate(tasks):
            record(i, _do_unit(t, state))
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(state,)) as ex:
            futs = {ex.submit(_do_unit, t): i for i, t in enumerate(tasks)}
            for fut in as_completed(futs):
                record(futs[fut], fut.result())
    return [r for r in results if r is not None]


def posterior_unit_fn(unit: Unit, state: dict, where: str):
    """The ``posterior`` step of one unit (``fn`` of :func:`run_units`): ``state`` holds
    ``model`` (UnitModel), ``opts`` (UnitOptions) and ``vhat``: the R x R V, or a dict
    unit id -> V file (one V per unit, read here)."""
    V = state["vhat"]
    if isinstance(V, dict):
        V = read_vhat_file(V[unit.unit_id], state["model"])
    return unit_posterior(unit.path, state["model"], V, state["opts"], where)
