"""Safety of streaming output stores: what may be deleted, what a resume trusts.

Guarantees (also stated in the README, "Output store guarantees"):

* **Inputs are never touched.** An output folder ``out`` that is an input store,
  contains one, or lies inside one (or holds a memory-mapped input file) is refused
  before anything is created or deleted (:func:`check_out_vs_inputs`).
* **overwrite deletes only mashlib's own output stores.** Output stores carry
  ``"owner": "mashlib-posterior-store"`` in their manifest. ``overwrite=True`` removes
  only a folder with that mark, and only the files that manifest lists (arrays,
  row ids, long-table parts, the manifest itself and mashlib's own temporaries); a
  folder with any other file in it is refused, listing the files
  (:func:`remove_output_store`).
* **A resume trusts nothing it has not checked.** The manifest records, per written
  chunk, a BLAKE2b digest of that chunk's input rows (Bhat, Shat -- or the transformed
  rows of a MashData) and of its output rows, plus a fingerprint of the model (U, pi),
  V, A, alpha, the condition mapping and every option. A resume requires the same
  fingerprint and row ids, then re-hashes every finished chunk's input and output rows:
  a chunk whose input changed or whose output bytes differ from what was written is
  recomputed, and a log line names its row range (:func:`verify_chunks`).
* **An unfinished store does not open as if it were finished.** ``open_store`` refuses
  it, naming the finished row ranges; ``partial=True`` opens it with the unwritten rows
  NaN and a warning (:func:`unfinished_message`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .._errors import MashInputError

log = logging.getLogger("mashlib")

OWNER = "mashlib-posterior-store"
DIGEST_BYTES = 16

__all__ = ["OWNER", "check_out_vs_inputs", "remove_output_store", "chunk_digest", "output_digest",
           "verify_chunks", "row_ranges", "unfinished_message", "ids_digest"]


# ----------------------------------------------------------------------------- paths
def _memmap_file(x):
    """The file behind a memory-mapped array (following views), or None."""
    seen = 0
    while x is not None and seen < 32:
        fn = getattr(x, "filename", None)
        if isinstance(x, np.memmap) and fn:
            return Path(fn)
        x = getattr(x, "base", None)
        seen += 1
    return None


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies below it."""
    return a == b or b in a.parents


def check_out_vs_inputs(out, input_paths) -> None:
    """Refuse an output folder that is, contains, or lies inside an input.

    Parameters
    ----------
    out : path
        The output store folder.
    input_paths : iterable of (label, path)
        Input store folders and memory-mapped input files.

    Raises
    ------
    MashInputError
        Before anything is created or deleted.
    """
    o = Path(os.path.realpath(out))
    for label, p in input_paths:
        if p is None:
            continue
        q = Path(os.path.realpath(p))
        if _inside(o, q) or _inside(q, o):
            rel = "is" if o == q else ("contains" if _inside(q, o) else "is inside")
            raise MashInputError(
                f"out: {out} {rel} the input {label} {p}; writing there could destroy the input. "
                "Choose an output folder outside every input store.")


def input_paths(source, Bhat, Shat):
    """``(label, path)`` of every on-disk input: the input store and memory-mapped arrays."""
    paths = []
    if getattr(source, "store", None) is not None:
        paths.append(("store", source.store))
    for label, x in (("Bhat", Bhat), ("Shat", Shat)):
        f = _memmap_file(x)
        if f is not None:
            paths.append((f"{label} memory-mapped file", f))
    return paths


def _owned_files(path: Path, man: dict) -> set:
    names = {"manifest.json"}
    names.update(str(v) for v in man.get("arrays", {}).values())
    if man.get("long_table"):
        names.add(str(man["long_table"]))
    return names


def remove_output_store(path: Path, man: dict | None) -> None:
    """Delete an output store that mashlib wrote, and only its own files.

    Raises
    ------
    MashInputError
        When the folder is not marked as a mashlib output store (an input store, another
        program's folder, or a store of an older mashlib without the mark), or holds files
        that are not the store's; nothing is deleted then.
    """
    path = Path(path)
    if man is None or man.get("owner") != OWNER or man.get("kind") != "posterior":
        what = ("not empty and is not a mashlib store" if man is None
                else "a mashlib input store" if man.get("kind") == "input"
                else "not marked as a mashlib output store")
        raise MashInputError(
            f"out: {path} is {what}; overwrite=True only replaces output stores that mashlib wrote "
            "(manifest owner 'mashlib-posterior-store'). Nothing was deleted; choose another "
            "folder or remove it yourself.")
    owned = _owned_files(path, man)
    foreign = []
    for p in path.iterdir():
        n = p.name
        if n in owned or (n.startswith(".") and n.endswith(".tmp")):
            continue
        if n == "long_parts" and p.is_dir() and all(
                q.name.startswith("part-") or q.name.endswith(".tmp") for q in p.iterdir()):
            continue
        foreign.append(n)
    if foreign:
        raise MashInputError(
            f"out: {path} is a mashlib output store but also holds files it did not write "
            f"({', '.join(sorted(foreign)[:5])}{', ...' if len(foreign) > 5 else ''}); nothing was "
            "deleted. Move those files away or choose another folder.")
    for p in path.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name != "manifest.json":
            p.unlink()
    (path / "manifest.json").unlink(missing_ok=True)   # last: a crash leaves a marked store
    path.rmdir()


# ----------------------------------------------------------------------------- digests
def _update(h, x) -> None:
    a = np.asarray(x)
    if a.ndim == 0:
        h.update(b"s")
        h.update(np.float64(a).tobytes())
        return
    a = np.ascontiguousarray(a, dtype=np.float64)
    h.update(repr(a.shape).encode())
    h.update(memoryview(a).cast("B"))


def chunk_digest(arrays) -> str:
    """BLAKE2b-128 of a chunk's input rows (raw float64 bytes and shapes, in order)."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for x in arrays:
        _update(h, x)
    return h.hexdigest()


def output_digest(res: dict, names) -> str:
    """BLAKE2b-128 of a chunk's output rows, in the order ``names`` (as written: float64, C order)."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for k in names:
        _update(h, res[k])
    return h.hexdigest()


def ids_digest(ids) -> str | None:
    """BLAKE2b-128 of the row ids (None when there are none), read in blocks."""
    if ids is None:
        return None
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    n = len(ids)
    step = 1 << 16
    for a in range(0, n, step):
        block = np.asarray(ids[a:a + step])
        h.update(np.ascontiguousarray(block.astype(str)).tobytes())
    h.update(str(n).encode())
    return h.hexdigest()


def verify_chunks(man: dict, out: Path, read_input, read_output, names, say) -> list[int]:
    """Re-check every finished chunk of ``man``; return the chunk numbers to recompute.

    Parameters
    ----------
    man : dict
        The store's manifest (``done_chunks``, ``chunk_rows``, ``n_rows``, ``chunks``).
    read_input : callable ``(start, stop) -> tuple of arrays``
        The current input rows, as :func:`chunk_digest` hashed them when written.
    read_output : callable ``(name, start, stop) -> ndarray``
        Output rows from the store.
    names : list of str
        Output names, in the order hashed.
    say : callable ``(str) -> None``
        Receives one line per chunk that must be recomputed.
    """
    cr, J = int(man["chunk_rows"]), int(man["n_rows"])
    recs = man.get("chunks", {})
    bad = []
    for ci in man["done_chunks"]:
        start, stop = ci * cr, min(J, (ci + 1) * cr)
        rec = recs.get(str(ci))
        if rec is None:
            why = "it has no checksum"
        elif chunk_digest(read_input(start, stop)) != rec.get("input"):
            why = "its input rows changed since it was written"
        elif output_digest({k: read_output(k, start, stop) for k in names}, names) != rec.get("output"):
            why = "its output rows on disk differ from what was written"
        else:
            continue
        bad.append(ci)
        say(f"mashlib: resume: recomputing chunk {ci + 1}/{man['n_chunks']} (rows {start}-{stop - 1}): "
            f"{why}")
    return bad


# ----------------------------------------------------------------------------- unfinished stores
def row_ranges(man: dict) -> list[tuple[int, int]]:
    """Finished rows of an output store as merged half-open ranges ``[(a, b), ...]``."""
    cr, J = int(man["chunk_rows"]), int(man["n_rows"])
    out: list[list[int]] = []
    for ci in sorted(man.get("done_chunks", [])):
        a, b = ci * cr, min(J, (ci + 1) * cr)
        if out and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _fmt_ranges(rr) -> str:
    if not rr:
        return "none"
    s = ", ".join(f"{a}-{b - 1}" for a, b in rr[:6])
    return s + (f", ... ({len(rr)} ranges)" if len(rr) > 6 else "")


def unfinished_message(path, man: dict) -> str:
    rr = row_ranges(man)
    n_done = sum(b - a for a, b in rr)
    return (f"{path}: the output store is unfinished: {n_done} of {man['n_rows']} rows written "
            f"(rows {_fmt_ranges(rr)}). Resume it by re-running the same "
            "compute_posterior_streaming(..., out=...) call, or pass open_store(path, partial=True) "
            "to read it with the unwritten rows as NaN.")
