"""Out-of-core row stores for the streaming posterior: a directory of ``.npy`` files.

Format choice
-------------
A store is a directory holding one NumPy ``.npy`` file per matrix (rows = effects,
C order) and a small ``manifest.json`` (condition names, row count, and for outputs
the chunk size, the chunks already written and whether the store is complete);
row ids, when there are any, are a fixed-width unicode ``row_ids.npy``.

Why ``.npy`` rather than HDF5, Zarr or Parquet:

* **no new dependency** -- NumPy reads and writes it; any other language with a
  NPY reader (R ``RcppCNPy``/``reticulate``, Julia ``NPZ``) can open it;
* **random row access**: the header gives a byte offset, so rows ``[a, b)`` are one
  ``seek`` + ``read`` (``np.load(path, mmap_mode="r")`` works too for users);
* **incremental, resumable writes**: output files are pre-allocated (sparse) and each
  chunk is written in place at its offset, then ``fsync``-ed; only *after* that is
  the chunk recorded in the manifest, which is replaced atomically
  (:func:`mashlib._atomic.atomic_path`). A crash therefore loses at most the chunk in
  flight, and a re-run resumes from the manifest;
* **bounded memory**: chunks are read and written with plain file I/O (no memory
  map stays open), so file pages never count against the process's resident set.

HDF5/Zarr add chunked compression but need h5py/zarr and (HDF5) careful locking for
concurrent writers; Parquet is columnar and poor at writing row blocks of a wide
matrix in place.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .._atomic import atomic_path
from .._errors import MashInputError
from ._guard import check_out_vs_inputs, input_paths, remove_output_store, unfinished_message

FORMAT = "mashlib-npy-store"
MANIFEST = "manifest.json"


class NpyRows:
    """Row-block reader/writer on one 2-D or 3-D C-order ``.npy`` file (no memory map)."""

    def __init__(self, path: str | os.PathLike, mode: str = "rb"):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self.offset = f.tell()
        if fortran and len(shape) > 1:
            raise MashInputError(f"{self.path}: Fortran-order .npy is not supported for row access; "
                                 "save it with np.save(np.ascontiguousarray(x)).")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_elems = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        self.row_bytes = self.row_elems * self.dtype.itemsize
        self._f = open(self.path, mode)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array."""
        self._f.seek(self.offset + start * self.row_bytes)
        arr = np.fromfile(self._f, dtype=self.dtype, count=(stop - start) * self.row_elems)
        return arr.reshape((stop - start,) + self.shape[1:])

    def write(self, start: int, arr: np.ndarray) -> None:
        """Write ``arr`` (rows ``start ...``) in place."""
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        self._f.seek(self.offset + start * self.row_bytes)
        self._f.write(memoryview(arr).cast("B"))

    def sync(self) -> None:
        """Flush to disk (called before a chunk is recorded as done)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of a store directory, or None when there is none."""
    p = Path(path) / MANIFEST
    if not p.exists():
        return None
    with open(p) as f:
        man = json.load(f)
    if man.get("format") != FORMAT:
        return None
    return man


def write_manifest(path: str | os.PathLike, man: dict) -> None:
    """Replace the manifest atomically."""
    with atomic_path(Path(path) / MANIFEST) as tmp:
        with open(tmp, "w") as f:
            json.dump(man, f, indent=1)
            f.flush()
            os.fsync(f.fileno())


def save_npy_store(directory, Bhat, Shat=None, conditions: Sequence[str] | None = None,
                   row_ids: Sequence[str] | None = None, *, overwrite: bool = False,
                   chunk_rows: int = 100_000) -> Path:
    """Create an input store (``Bhat.npy``, ``Shat.npy``, ``row_ids.npy``, ``manifest.json``).

    Parameters
    ----------
    directory : path
        Store directory (created).
    Bhat, Shat : array_like or DataFrame, shape (J, R)
        Effects and standard errors (``Shat`` None means z-scores, not stored). DataFrame
        columns/index supply ``conditions``/``row_ids`` when those are not given.
        ``np.memmap`` inputs are copied in blocks of ``chunk_rows`` rows.
    conditions : list of str, optional
        Condition names (default ``"1".."R"``).
    row_ids : list of str, optional
        Effect ids (e.g. ``"chr1:12345_A_G|ENSG..."``).
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    Path of the store.
    """
    directory = Path(directory)
    if conditions is None and hasattr(Bhat, "columns"):
        conditions = [str(c) for c in Bhat.columns]
    if row_ids is None and hasattr(Bhat, "index") and not _default_index(Bhat.index):
        row_ids = [str(i) for i in Bhat.index]
    B = np.asarray(Bhat)
    if B.ndim != 2:
        raise MashInputError(f"Bhat: must be a J x R matrix, got shape {B.shape}.")
    J, R = B.shape
    conditions = [str(i + 1) for i in range(R)] if conditions is None else [str(c) for c in conditions]
    if len(conditions) != R:
        raise MashInputError(f"conditions: {len(conditions)} names for {R} columns of Bhat.")
    S = None
    if Shat is not None:
        S = np.asarray(Shat)
        if S.ndim == 0:
            S = None if float(S) == 1.0 else np.full((J, R), float(S))
        elif S.shape != (J, R):
            raise MashInputError(f"Shat: shape {S.shape} does not match Bhat {B.shape}.")
    check_out_vs_inputs(directory, input_paths(None, Bhat, Shat))
    prepare_store_dir(directory, overwrite, what="input store")
    arrays = {"Bhat": "Bhat.npy"}
    _write_blocks(directory / "Bhat.npy", B, chunk_rows)
    if S is not None:
        arrays["Shat"] = "Shat.npy"
        _write_blocks(directory / "Shat.npy", S, chunk_rows)
    if row_ids is not None:
        ids = np.asarray([str(r) for r in row_ids])
        if ids.shape[0] != J:
            raise MashInputError(f"row_ids: {ids.shape[0]} ids for {J} rows of Bhat.")
        with atomic_path(directory / "row_ids.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, ids)
        arrays["row_ids"] = "row_ids.npy"
    write_manifest(directory, {"format": FORMAT, "version": 1, "kind": "input", "n_rows": J,
                               "conditions": conditions, "arrays": arrays,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return directory


def _default_index(index) -> bool:
    import pandas as pd
    return isinstance(index, pd.RangeIndex)


def _write_blocks(path: Path, X, chunk_rows: int) -> None:
    with atomic_path(path) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=X.shape)
        del mm
        w = NpyRows(tmp, "r+b")
        for a in range(0, X.shape[0], chunk_rows):
            w.write(a, np.asarray(X[a:a + chunk_rows], dtype=np.float64))
        w.sync()
        w.close()


def prepare_store_dir(directory: Path, overwrite: bool, what: str = "output store") -> None:
    """Create an empty store directory; refuse an existing one unless ``overwrite``.

    With ``overwrite`` only a store of the same kind that mashlib wrote is removed, and
    only its own files (see :func:`mashlib.stream._guard.remove_output_store`): an input
    store is never deleted to make room for an output store, and a folder holding other
    files is refused, so a typo in ``out`` cannot delete unrelated data.
    """
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise MashInputError(f"out: {directory} exists and is not a directory; choose another path.")
        empty = not any(directory.iterdir())
        if not empty:
            if not overwrite:
                raise MashInputError(
                    f"out: the {what} {directory} already exists; pass overwrite=True to replace it "
                    "or choose another directory.")
            man = read_manifest(directory)
            if what == "input store":
                if man is None or man.get("kind") != "input":
                    raise MashInputError(
                        f"out: {directory} is not a mashlib input store; refusing to delete it even "
                        "with overwrite=True. Choose an empty or new directory.")
                _remove_input_store(directory, man)
            else:
                remove_output_store(directory, man)
    directory.mkdir(parents=True, exist_ok=True)


def _remove_input_store(directory: Path, man: dict) -> None:
    owned = {"manifest.json"} | {str(v) for v in man.get("arrays", {}).values()}
    foreign = [p.name for p in directory.iterdir()
               if p.name not in owned and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    if foreign:
        raise MashInputError(
            f"out: the input store {directory} also holds files it did not write "
            f"({', '.join(sorted(foreign)[:5])}); nothing was deleted. Move them or choose another "
            "directory.")
    for p in directory.iterdir():
        if p.name != "manifest.json":
            p.unlink()
    (directory / "manifest.json").unlink(missing_ok=True)


def open_store(path, partial: bool = False) -> dict:
    """Open a store read-only: ``{name: np.memmap}`` plus ``conditions``/``row_ids``/``manifest``.

    Row ids are loaded as a NumPy string array (memory-mapped).

    Parameters
    ----------
    path : path
        Store folder.
    partial : bool
        An unfinished output store (a streaming run that stopped before its last chunk)
        is refused by default, naming the finished row ranges and how to resume. With
        ``partial=True`` it opens with every unwritten row NaN (copy-on-write maps: the
        file is not changed, only the unwritten rows take memory) and a warning.

    Raises
    ------
    MashInputError
        No manifest, or an unfinished output store without ``partial=True``.
    """
    import warnings
    path = Path(path)
    man = read_manifest(path)
    if man is None:
        raise MashInputError(f"{path}: no mashlib manifest.json; create an input store with "
                             "save_npy_store() first.")
    unfinished = man.get("kind") == "posterior" and not man.get("complete", False)
    if unfinished and not partial:
        raise MashInputError(unfinished_message(path, man))
    out = {"manifest": man, "conditions": man["conditions"]}
    if unfinished:
        from ._guard import row_ranges
        done = np.zeros(int(man["n_rows"]), dtype=bool)
        for a, b in row_ranges(man):
            done[a:b] = True
        todo = np.flatnonzero(~done)
        warnings.warn(f"{unfinished_message(path, man).split('. Resume')[0]}; the "
                      f"{todo.size} unwritten rows are NaN.", UserWarning, stacklevel=2)
    for name, fn in man["arrays"].items():
        if unfinished and name != "row_ids":
            arr = np.load(path / fn, mmap_mode="c")
            if todo.size:
                # contiguous runs of unwritten rows: slice assignment, no per-row loop
                cuts = np.flatnonzero(np.diff(todo) != 1)
                for a, b in zip(np.r_[todo[0], todo[cuts + 1]], np.r_[todo[cuts], todo[-1]] + 1):
                    arr[a:b] = np.nan
            out[name] = arr
        else:
            out[name] = np.load(path / fn, mmap_mode="r")
    return out


class InputSource:
    """Row blocks of (Bhat, Shat) from arrays in memory or from an input store."""

    def __init__(self, Bhat, Shat=None):
        self.store = None
        self.row_ids = None
        self.Sa = None
        self.V = None
        if hasattr(Bhat, "Shat_alpha") and hasattr(Bhat, "Bhat"):      # a MashData
            if Shat is not None:
                raise MashInputError("Shat: must be None when Bhat is a MashData (it holds Shat).")
            if getattr(Bhat, "L", None) is not None:
                raise MashInputError("data: contrast data (mash_update_data(ref=...)) are not supported "
                                     "by the streaming posterior; use mash_compute_posterior_matrices.")
            if not getattr(Bhat, "commonV", True):
                raise MashInputError("data: a per-row V (R x R x J) is not supported by the streaming "
                                     "posterior; use mash_compute_posterior_matrices for it.")
            named = getattr(Bhat, "conditions_named", True)
            self.conditions = [str(c) for c in Bhat.conditions] if named else None
            self.row_ids = None if Bhat.row_ids is None else np.asarray([str(r) for r in Bhat.row_ids])
            self.B, self.S, self.Sa = Bhat.Bhat, Bhat.Shat, Bhat.Shat_alpha
            self.V = np.asarray(Bhat.V, dtype=float)
            self.n_rows = self.B.shape[0]
            return
        if isinstance(Bhat, (str, os.PathLike)):
            self.store = Path(Bhat)
            man = read_manifest(self.store)
            if man is None or man.get("kind") != "input":
                raise MashInputError(f"Bhat: {self.store} is not a mashlib input store (no manifest); "
                                     "create one with save_npy_store().")
            if Shat is not None:
                raise MashInputError("Shat: must be None when Bhat is an input store (the store holds Shat).")
            self.conditions = list(man["conditions"])
            self.n_rows = int(man["n_rows"])
            self._files = {k: self.store / v for k, v in man["arrays"].items()}
            if "row_ids" in self._files:
                self.row_ids = np.load(self._files["row_ids"], mmap_mode="r")
            self._readers = None
            self.B = self.S = None
            return
        self.conditions = [str(c) for c in Bhat.columns] if hasattr(Bhat, "columns") else None
        if hasattr(Bhat, "index") and not _default_index(Bhat.index):
            self.row_ids = np.asarray([str(i) for i in Bhat.index])
        B = np.asarray(Bhat, dtype=float)
        if B.ndim != 2:
            raise MashInputError(f"Bhat: must be a J x R matrix, got shape {B.shape}.")
        self.n_rows = B.shape[0]
        self.B = B
        if Shat is None:
            self.S = None
        else:
            scols = getattr(Shat, "columns", None)
            if scols is not None and self.conditions is not None \
                    and [str(c) for c in scols] != self.conditions:
                raise MashInputError("Shat: its columns are not those of Bhat, in the same order; "
                                     "reorder Shat as Bhat (Shat = Shat[Bhat.columns]).")
            S = np.asarray(Shat, dtype=float)
            if S.ndim != 0 and S.shape != B.shape:
                raise MashInputError(f"Shat: shape {S.shape} does not match Bhat {B.shape}; "
                                     "give a J x R matrix or a scalar.")
            self.S = S

    @property
    def n_cols(self) -> int:
        if self.store is not None:
            r = NpyRows(self._files["Bhat"])
            r.close()
            return r.shape[1]
        return self.B.shape[1]

    @property
    def transformed(self) -> bool:
        """True for a MashData: rows are already on the transformed scale."""
        return self.Sa is not None

    def spec(self):
        """A picklable description that :func:`read_rows` accepts in another process."""
        if self.store is not None:
            return ("store", {k: str(v) for k, v in self._files.items()})
        return None

    def read(self, start: int, stop: int):
        """``(Bhat, Shat)`` rows ``[start, stop)`` (Shat may be a scalar 1), or
        ``(Bhat, Shat, Shat_alpha)`` transformed rows for a MashData."""
        if self.store is not None:
            return read_rows(self.spec(), start, stop)
        if self.Sa is not None:
            return self.B[start:stop], self.S[start:stop], self.Sa[start:stop]
        S = 1.0 if self.S is None else (self.S if self.S.ndim == 0 else _rows(self.S, start, stop))
        return _rows(self.B, start, stop), S

    @property
    def mapped_inputs(self) -> int:
        """How many of Bhat/Shat are memory-mapped arrays (their pages are read per chunk)."""
        return sum(_mmap_of(x) is not None for x in (self.B, self.S) if x is not None)


def _mmap_of(x):
    """The read-only ``np.memmap`` behind ``x`` (following views), or None."""
    for _ in range(32):
        if x is None:
            return None
        if isinstance(x, np.memmap) and getattr(x, "_mmap", None) is not None:
            return x if x.mode in ("r", "readonly") else None
        x = getattr(x, "base", None)
    return None


def _rows(x, start: int, stop: int):
    """Rows ``[start, stop)`` of ``x``; for a read-only memory map, a copy, and the mapped
    pages are dropped from this process's resident set afterwards (``MADV_DONTNEED``; the
    data stay in the file and the page cache), so streaming a memory-mapped input does not
    grow the RSS by the whole file and the memory budget holds."""
    mm = _mmap_of(x)
    if mm is None:
        return x[start:stop]
    rows = np.array(x[start:stop])
    try:
        import mmap
        # the whole map, not just this block: the kernel's fault-around and read-ahead map
        # pages beside the block too (a walk of the page tables; no I/O)
        mm._mmap.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, ValueError, OSError):  # no madvise on this platform
        pass
    return rows


def read_rows(spec, start: int, stop: int):
    """Read rows from a store spec (see :meth:`InputSource.spec`)."""
    files = spec[1]
    rb = NpyRows(files["Bhat"])
    B = rb.read(start, stop)
    rb.close()
    if "Shat" in files:
        rs = NpyRows(files["Shat"])
        S = rs.read(start, stop)
        rs.close()
    else:
        S = 1.0
    return B, S


def write_long_part(path: Path, ids, conditions, res: dict) -> None:
    """Write one chunk of the tidy long table (gzip CSV member, no header), atomically."""
    import pandas as pd
    n, Q = res["PosteriorMean"].shape
    frame = pd.DataFrame({
        "variant": np.repeat(np.asarray(ids), Q),
        "condition": np.tile(np.asarray(conditions, dtype=object), n),
        "pm": res["PosteriorMean"].ravel(), "psd": res["PosteriorSD"].ravel(),
        "lfsr": res["lfsr"].ravel(), "lfdr": res["lfdr"].ravel(),
        "negprob": res["NegativeProb"].ravel()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1,
                                                   mtime=0) as f:
            frame.to_csv(f, header=False, index=False)


LONG_HEADER = "variant,condition,pm,psd,lfsr,lfdr,negprob\n"


def assemble_long_table(parts: Sequence[Path], target: Path) -> None:
    """Concatenate gzip members (header first) into ``target`` atomically, then drop the parts.

    Concatenated gzip members form a valid gzip stream (RFC 1952), readable by
    ``pandas.read_csv``, ``zcat`` and R's ``read.csv``.
    """
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            out.write(gzip.compress(LONG_HEADER.encode(), compresslevel=1, mtime=0))
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
    for p in parts:
        p.unlink()
