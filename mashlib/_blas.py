"""Limit the BLAS / LAPACK thread pool for a block of code.

mashlib's kernels work on stacks of small (R x R) matrices and on memory-bound
matrix-vector products. There a multi-threaded OpenBLAS spends its time spinning and
synchronising: measured 1.3x-7x slower on 2 cores (batched ``eigh``, mix-SQP), and far
worse when the cores are shared. Parallelism comes from running row chunks
concurrently instead (``mashlib.stream``), so the hot loops run under
``with blas_threads(1): ...``. Results then also do not depend on the machine's
thread count.

numpy and scipy each load their own OpenBLAS, so every loaded OpenBLAS / MKL is found
(through ``/proc/self/maps`` on Linux) and set; elsewhere this is a no-op.

The BLAS pool is process-wide, so nested and concurrent (threaded) uses are reference
counted under a lock: the first ``blas_threads`` entered saves the libraries' settings, the
innermost/latest request is in force, and the last one to exit restores the saved settings.

Exported numeric functions that pin the pool (``@single_blas_thread``): ``mash``,
``mash_compute_posterior_matrices``, ``mash_compute_vloglik``, ``calc_lik_matrix``,
``calc_relative_lik_matrix``, ``compute_posterior_matrices``, ``mixsqp`` (and ashr's
``mix_sqp``), ``extreme_deconvolution`` / ``cov_ed`` / ``ed_bovy``, ``ud_init``, ``ud_fit``,
``flash``, ``flash_greedy``, ``flash_backfit``, ``cov_flash``.  Not pinned, on purpose:
``posterior_chunk`` (the per-chunk kernel: its drivers set the pool, the streaming engine from
its ``blas_threads`` argument), ``compute_posterior_streaming`` (``blas_threads`` argument),
the ``ebnm_*`` / ``ash`` family (element-wise work; their mix-SQP is pinned), and the R x R
helpers (``cov_*`` builders, ``vhat_*``, ``near_pd``, ``corshrink_*``: one small
factorisation or one J x R product, no stacks of small matrices).
"""
from __future__ import annotations

import threading

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_64_",
            "openblas_set_num_threads64_", "MKL_Set_Num_Threads")
_GETTERS = tuple(n.replace("set_num_threads", "get_num_threads").replace(
    "MKL_Set_Num_Threads", "MKL_Get_Max_Threads") for n in _SETTERS)
_CONTROLS: list | None = None
_LOCK = threading.RLock()
_ACTIVE: list = []          # thread counts requested by the blas_threads currently entered
_SAVED: list = []           # the libraries' settings before the first of them


def _controls() -> list:
    """(setter, getter) of every OpenBLAS / MKL in the process, found once (cached)."""
    global _CONTROLS
    if _CONTROLS is None:
        import ctypes
        import re

        import numpy  # noqa: F401  (make sure both BLAS libraries are loaded before the scan)
        import scipy.linalg  # noqa: F401
        out = []
        try:
            with open("/proc/self/maps") as f:
                paths = sorted(set(re.findall(r"(/\S*(?:openblas|mkl_rt)\S*\.so\S*)", f.read())))
        except OSError:
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            s = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
            g = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
            if s is not None and g is not None:
                g.restype = ctypes.c_int
                out.append((s, g))
        _CONTROLS = out
    return _CONTROLS


class blas_threads:
    """Context manager: run BLAS / LAPACK with ``n`` threads inside, restore on exit.

    ``n=None`` does nothing.  Re-entrant and thread-safe (reference counted, see the module
    docstring).

    Examples
    --------
    >>> with blas_threads(1):          # doctest: +SKIP
    ...     m = mash(data, Ulist)
    """

    def __init__(self, n: int | None = 1):
        self.n = n
        self._entered = False

    def __enter__(self):
        if self.n is not None:
            with _LOCK:
                ctl = _controls()
                if not _ACTIVE:
                    _SAVED[:] = [g() for _, g in ctl]
                if not _ACTIVE or _ACTIVE[-1] != int(self.n):
                    for s, _ in ctl:
                        s(int(self.n))
                _ACTIVE.append(int(self.n))
            self._entered = True
        return self

    def __exit__(self, *exc):
        if getattr(self, "_entered", False):
            with _LOCK:
                ctl = _controls()
                # drop this request (the last one with this value: nesting is LIFO per thread)
                idx = len(_ACTIVE) - 1 - _ACTIVE[::-1].index(int(self.n))
                del _ACTIVE[idx]
                if _ACTIVE:
                    if _ACTIVE[-1] != int(self.n) or idx < len(_ACTIVE):
                        for s, _ in ctl:
                            s(_ACTIVE[-1])
                else:
                    for (s, _), old in zip(ctl, _SAVED):
                        s(int(old))
            self._entered = False
        return False


def single_blas_thread(func):
    """Decorator: run ``func`` under ``blas_threads(1)`` (see the module docstring)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with blas_threads(1):
            return func(*args, **kwargs)

    return wrapper
