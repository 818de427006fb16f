"""Dask engine for the streaming posterior (optional dependency: ``pip install mashlib[dask]``).

Each row chunk is one ``client.submit`` task running :func:`mashlib.stream.chunk.run_chunk`
with the model broadcast once to every worker (``client.scatter``). Workers read
their rows from the input store themselves when the input is a store (only a path
and a row range travel), otherwise the chunk's rows are sent with the task. The
client receives results as they complete and is the single writer of the output
store and its manifest, so the resume logic is the same as in-process. At most
``2 x workers`` tasks are in flight, which bounds the memory held by results.

The chunk boundaries, the kernel and the per-chunk random streams are those of
the in-process engine, so the results are identical.
"""
from __future__ import annotations

import os

import numpy as np

from .._errors import MashInputError


def _require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MashInputError("engine='dask': dask.distributed is not installed; "
                             "pip install mashlib[dask] (or use engine='inprocess').") from None
    import distributed
    return distributed


def _client(client, n_workers):
    distributed = _require_dask()
    if client is not None:
        return client, None
    n = n_workers or max(1, os.cpu_count() or 1)
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    return distributed.Client(cluster), cluster


def open_client(client=None, n_workers=None):
    """``(client, cluster)``: the given client (cluster None) or a new LocalCluster's."""
    return _client(client, n_workers)


def close_client(client, cluster) -> None:
    """Close a client and cluster that :func:`open_client` created (not a user's client)."""
    if cluster is not None:
        client.close()
        cluster.close()


def _warm_rss():
    import mashlib.stream.chunk  # noqa: F401 - import what a task imports, then measure
    try:
        import mashlib.model.posterior  # noqa: F401
    except ImportError:
        pass
    from mashlib.stream.plan import current_rss
    return current_rss()


def worker_baseline(client) -> tuple[int, float]:
    """``(n_workers, max RSS)`` of the workers once they have imported mashlib."""
    rss = client.run(_warm_rss)
    return max(1, len(rss)), float(max(rss.values())) if rss else 0.0


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Undo the Dask nanny's ``MALLOC_TRIM_THRESHOLD_`` for chunk work (glibc only).

    That variable pins glibc's mmap threshold at 128 KiB, so every chunk temporary is a
    fresh ``mmap`` whose pages are faulted in and zeroed again: the same chunk then runs
    about 1.5x slower than in a plain process. Restoring glibc's default ceilings (mmap
    above 32 MiB, trim above 64 MiB) lets repeated same-sized chunk buffers be reused.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)       # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 2**20)       # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _chunk_task(payload, start, stop, data):
    from .chunk import run_chunk
    from .kernel import blas_threads
    _tune_malloc()
    with blas_threads(payload.get("blas_threads")):
        return run_chunk(payload, start, stop, data)


def run_chunks_dask(payload, source, todo, chunk_rows, J, on_result, *, client=None,
                    n_workers=None, retries=2):
    """Run the chunks ``todo`` as Dask tasks; call ``on_result(ci, res)`` in completion order."""
    from .chunk import ChunkFailedError
    distributed = _require_dask()
    client, cluster = _client(client, n_workers)
    try:
        nw = max(1, len(client.scheduler_info().get("workers", {})) or (n_workers or 1))
        # scatter a one-element list: a dict would be scattered value by value under its own
        # keys ("model", ...), which collide with the previous call's keys being released
        # ("lost dependencies"); a list gets fresh random keys
        (pf,) = client.scatter([payload], broadcast=True, hash=False)
        queue = list(todo)
        attempts = {}
        ac = distributed.as_completed()
        meta = {}

        def submit(ci):
            start, stop = ci * chunk_rows, min(J, (ci + 1) * chunk_rows)
            data = None if source.store is not None else source.read(start, stop)
            fut = client.submit(_chunk_task, pf, start, stop, data, pure=False, retries=0)
            meta[fut.key] = ci
            ac.add(fut)

        for _ in range(min(len(queue), 2 * nw)):
            submit(queue.pop(0))
        for fut in ac:
            ci = meta.pop(fut.key)
            if fut.status == "error":
                exc = fut.exception()
                if isinstance(exc, MashInputError):
                    raise exc
                attempts[ci] = attempts.get(ci, 0) + 1
                if attempts[ci] > retries:
                    start, stop = ci * chunk_rows, min(J, (ci + 1) * chunk_rows)
                    n_chunks = -(-J // chunk_rows)
                    raise ChunkFailedError(
                        f"chunk {ci + 1}/{n_chunks} (rows {start}-{stop - 1}) failed after "
                        f"{retries + 1} attempts on Dask: {type(exc).__name__}: {exc}. Chunks written "
                        "before it are kept; fix the cause and re-run the same call to resume.") from exc
                submit(ci)
                continue
            res = fut.result()
            fut.release()
            on_result(ci, res)
            if queue:
                submit(queue.pop(0))
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _lik_task(data_chunk, Ulist):
    from ..model import calc_relative_lik_matrix
    return calc_relative_lik_matrix(data_chunk, Ulist)


def calc_relative_lik_matrix_dask(data, Ulist, *, client=None, n_workers=None, chunk_rows=10_000):
    """The relative likelihood matrix of a fit, computed over row chunks as Dask tasks.

    Parameters
    ----------
    data : MashData
        The data (a per-row V is subset with the rows).
    Ulist : dict
        Expanded covariance list (as passed to ``calc_relative_lik_matrix``).
    client : distributed.Client, optional
        Default: a LocalCluster with ``n_workers`` single-threaded workers.
    chunk_rows : int
        Rows per task.

    Returns
    -------
    dict with ``loglik_matrix`` (J x P) and ``lfactors`` (J,), as
    ``mashlib.calc_relative_lik_matrix``: the row maximum is per row, so
    chunking changes nothing.
    """
    client, cluster = _client(client, n_workers)
    try:
        (Uf,) = client.scatter([Ulist], broadcast=True, hash=False)  # fresh keys (see above)
        futs = []
        for a in range(0, data.n_effects, chunk_rows):
            b = min(data.n_effects, a + chunk_rows)
            futs.append(client.submit(_lik_task, data.subset(np.arange(a, b)), Uf, pure=False))
        parts = client.gather(futs)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    return np.concatenate(parts)
