"""Planning a streaming run: the memory budget, chunk size and the up-front estimate.

``estimate_memory`` sizes chunks so that the predicted peak resident memory,
``RSS_now + fixed + a + b n``, stays below 90% of ``max_memory``; ``calibrate`` measures
the per-chunk intercept ``a`` and per-row slope ``b`` of the actual kernel on two small
chunks with ``tracemalloc`` (NumPy reports its buffers to it) and the rows/s on a
third, so the printed estimate of time and memory is of this machine and this model.
"""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass

import numpy as np

from .._errors import MashInputError
from .kernel import OUTPUT_NAMES, StreamModel, bytes_per_row

# ----------------------------------------------------------------------------- memory
CHUNK_BYTES = 256e6      # working memory aimed at per chunk
ROW_ALIGN = 64           # planned chunks are a multiple of this many rows
HEADROOM = 0.9           # plan the peak at 90% of max_memory
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(x) -> int:
    """Bytes from ``"2GB"``, ``"512MiB"``, ``"1.5 G"`` or a number of bytes."""
    if isinstance(x, (int, float, np.integer, np.floating)) and x > 0:
        return int(x)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(x))
    if not m or m.group(2).upper() not in _UNITS or float(m.group(1)) <= 0:
        raise MashInputError(f"max_memory: cannot read {x!r}; give bytes or a string such as "
                             "'2GB', '500MB' or '1.5GiB'.")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux ``/proc``; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _fmt_bytes(b: float) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.0f} MB"


def _fmt_time(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


@dataclass
class MemoryEstimate:
    """The plan for a streaming run: chunk size and the predicted peak memory and time.

    ``peak_bytes = baseline_bytes + fixed_bytes + per_chunk_bytes + chunk_rows * bytes_per_row``.
    """

    chunk_rows: int
    n_chunks: int
    n_rows: int
    bytes_per_row: float
    per_chunk_bytes: float
    fixed_bytes: float
    baseline_bytes: float
    budget_bytes: int
    seconds_per_row: float | None = None
    source: str = "analytic"

    @property
    def peak_bytes(self) -> float:
        return (self.baseline_bytes + self.fixed_bytes + self.per_chunk_bytes
                + self.chunk_rows * self.bytes_per_row)

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_row is None else self.seconds_per_row * self.n_rows

    def __str__(self) -> str:
        t = "" if self.seconds is None else (
            f"; estimated time {_fmt_time(self.seconds)} "
            f"({1 / max(self.seconds_per_row, 1e-12):,.0f} rows/s on this machine)")
        return (f"{self.n_rows:,} rows in {self.n_chunks} chunk(s) of {self.chunk_rows:,}; estimated "
                f"peak memory {_fmt_bytes(self.peak_bytes)} (budget {_fmt_bytes(self.budget_bytes)}, "
                f"{self.source}){t}")


def estimate_memory(model: StreamModel, n_rows: int, *, max_memory="2GB", Q=None, common=False,
                    posterior_cov=False, samples=0, long_table=False, in_memory_outputs=True,
                    baseline_bytes=None, bytes_per_row_=None, per_chunk_bytes=0.0,
                    chunk_bytes=CHUNK_BYTES, min_chunks: int = 1,
                    mapped_bytes_per_row: float = 0.0) -> MemoryEstimate:
    """Chunk size that keeps the peak resident memory under ``max_memory``.

    Parameters
    ----------
    model : StreamModel
        Gives K (kept components) and R.
    n_rows : int
        J, rows to process.
    max_memory : str or int
        Budget for the whole process (or per Dask worker).
    Q, common, posterior_cov, samples, long_table
        Output width and options that change the per-row cost (:func:`bytes_per_row`).
    in_memory_outputs : bool
        Outputs held in memory (``out=None``) cost ``J * Q * 8`` bytes per output up front.
    baseline_bytes : float, optional
        Memory already in use (default: this process's current RSS).
    bytes_per_row_, per_chunk_bytes : float, optional
        Measured per-row slope and per-chunk intercept (from calibration).
    chunk_bytes : float
        Working memory aimed at per chunk (default 256 MB): larger chunks are not faster
        (the kernel is vectorised already; fresh large allocations cost page faults), so
        the budget is an upper bound, not a target.
    min_chunks : int
        At least this many chunks (e.g. 4 per Dask worker, for load balance).
    mapped_bytes_per_row : float
        Resident bytes per row that neither the kernel estimate nor ``tracemalloc`` sees:
        for memory-mapped inputs, each chunk's file pages and the copy read from them
        (``2 x 8 R`` bytes per mapped matrix; the pages are released after each chunk).

    Notes
    -----
    The chunk is the largest n with ``peak(n) <= 0.9 * max_memory`` (10% headroom for
    allocator slack), capped by ``chunk_bytes`` and ``min_chunks``, and rounded down to a
    multiple of ``ROW_ALIGN`` (64) rows. NumPy's SIMD loops treat the last few elements of
    an array in a scalar tail (no FMA), so a row's last bits can depend on where it sits in
    its chunk; with every chunk starting on a multiple of 64 rows, each row is computed
    identically whatever the chunk size, and the in-process and Dask engines (which size
    chunks differently) agree bit for bit. An explicit ``chunk_size`` that is a multiple of
    8 has the same property.

    Returns
    -------
    MemoryEstimate

    Raises
    ------
    MashInputError
        When even a one-row chunk does not fit in the budget.
    """
    budget = parse_memory(max_memory)
    K, R = model.n_components, model.n_conditions
    Q = R if Q is None else Q
    per_row = bytes_per_row_ if bytes_per_row_ is not None else bytes_per_row(
        K, R, Q, common=common, posterior_cov=posterior_cov, samples=samples, long_table=long_table)
    per_row = per_row + float(mapped_bytes_per_row)
    base = current_rss() if baseline_bytes is None else baseline_bytes
    fixed = 8.0 * 4 * K * R * R                                  # model copies and per-comp factors
    if in_memory_outputs:
        fixed += 8.0 * n_rows * Q * (len(OUTPUT_NAMES) + (Q if posterior_cov else 0) + samples)
    room = HEADROOM * budget - base - fixed - per_chunk_bytes
    if room < per_row:
        raise MashInputError(
            f"max_memory={max_memory!r}: too small; {_fmt_bytes(base)} is already in use, the model "
            f"and outputs need {_fmt_bytes(fixed)} and one row {_fmt_bytes(per_row)}. Raise max_memory"
            + (", or write the outputs to disk with out=..." if in_memory_outputs else "."))
    rows = int(max(1, min(n_rows, room // per_row, max(64, chunk_bytes // per_row),
                          math.ceil(n_rows / max(1, min_chunks)))))
    if ROW_ALIGN <= rows < n_rows:
        rows -= rows % ROW_ALIGN          # chunk starts on a multiple of ROW_ALIGN (see below)
    return MemoryEstimate(rows, max(1, math.ceil(n_rows / rows)), n_rows, float(per_row),
                          float(per_chunk_bytes), fixed, float(base), budget)



def calibrate(payload, source, est, max_memory, Q, in_mem, cov, samples, long_table,
               timing_only=False, min_chunks=1, baseline_bytes=None, mapped_bytes_per_row=0.0):
    """Measure bytes/row (tracemalloc peak at two sizes) and rows/s on the first rows.

    NumPy reports its buffers to ``tracemalloc``, so the traced peak of a chunk is the
    memory the chunk adds on top of what the process already holds; fitting
    ``peak(n) = a + b n`` at two sizes gives the per-row slope ``b`` and the per-chunk
    intercept ``a`` (e.g. the kernel's per-component tables).
    """
    import tracemalloc
    J = source.n_rows
    run_chunk = payload["run_chunk"]
    n2 = int(min(J, max(16, est.chunk_rows // 8), 2048))
    n1 = max(4, n2 // 4)
    if not timing_only:
        peaks = []
        for n in (n1, n2):
            data = None if source.store is not None else source.read(0, n)
            tracemalloc.start()
            run_chunk(payload, 0, n, data)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            del data
        slope = max((peaks[1] - peaks[0]) / (n2 - n1), 8.0 * Q)
        icpt = max(peaks[0] - slope * n1, 0.0)
        est = estimate_memory(payload["model"], J, max_memory=max_memory, Q=Q, posterior_cov=cov,
                              samples=samples, long_table=long_table, in_memory_outputs=in_mem,
                              bytes_per_row_=slope + (400.0 * Q if long_table else 0.0),
                              per_chunk_bytes=icpt, min_chunks=min_chunks,
                              baseline_bytes=baseline_bytes, mapped_bytes_per_row=mapped_bytes_per_row)
        est.source = "calibrated"
    n2 = int(min(J, max(n2, min(est.chunk_rows, 2048))))
    data = None if source.store is not None else source.read(0, n2)
    times = []
    for _ in range(2):               # the first run after tracing pays page faults: keep the best
        t = time.perf_counter()
        run_chunk(payload, 0, n2, data)
        times.append(time.perf_counter() - t)
    est.seconds_per_row = min(times) / n2
    return est
