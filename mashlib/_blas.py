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
"""
from __future__ import annotations

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_64_",
            "openblas_set_num_threads64_", "MKL_Set_Num_Threads")
_GETTERS = tuple(n.replace("set_num_threads", "get_num_threads").replace(
    "MKL_Set_Num_Threads", "MKL_Get_Max_Threads") for n in _SETTERS)
_CONTROLS: list | None = None


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

    ``n=None`` does nothing.  Re-entrant (each level restores what it found).

    Examples
    --------
    >>> with blas_threads(1):          # doctest: +SKIP
    ...     m = mash(data, Ulist)
    """

    def __init__(self, n: int | None = 1):
        self.n = n
        self._restore: list = []

    def __enter__(self):
        if self.n is not None:
            for s, g in _controls():
                self._restore.append((s, g()))
                s(int(self.n))
        return self

    def __exit__(self, *exc):
        for s, old in reversed(self._restore):
            s(int(old))
        self._restore = []
        return False


def single_blas_thread(func):
    """Decorator: run ``func`` under ``blas_threads(1)`` (see the module docstring)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with blas_threads(1):
            return func(*args, **kwargs)

    return wrapper
