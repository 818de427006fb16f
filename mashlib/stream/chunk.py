"""One chunk of the streaming posterior: read rows, transform, run the kernel, sample.

:func:`run_chunk` is what every engine runs per row chunk: in process
(:mod:`mashlib.stream.engine`) or as a Dask task (:mod:`mashlib.stream.distributed`).
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError, MashlibError
from ._guard import chunk_digest
from .kernel import transform_chunk
from .sampling import sample_posterior_chunk
from .store import read_rows

__all__ = ["ChunkFailedError", "run_chunk"]


class ChunkFailedError(MashlibError, RuntimeError):
    """A chunk kept failing after its retries; the message names its row range."""



def _prepare_data(B, S, alpha, V):
    """mash_set_data on one chunk (the engine's when present, for identical validation)."""
    try:
        from ..model import mash_set_data
    except ImportError:
        return transform_chunk(B, S, alpha)
    d = mash_set_data(B, S, alpha=alpha, V=V)
    return d.Bhat, d.Shat, d.Shat_alpha


def run_chunk(payload: dict, start: int, stop: int, data=None) -> dict:
    """Compute one chunk: read rows, transform, posterior kernel, optional samples.

    ``payload`` holds the model and options (it is what Dask scatters to workers);
    ``data`` is ``(Bhat, Shat)`` for in-memory input, else rows are read from the store.
    """
    if data is None:
        data = read_rows(payload["source"], start, stop)
    digest = chunk_digest(data) if payload.get("digest") else None   # of the rows as read
    idx = payload["col_idx"]
    if not payload["identity_cols"]:
        data = tuple(x if np.ndim(x) == 0 else x[:, idx] for x in data)
    if len(data) == 3:                                  # MashData rows: already transformed
        Bt, St, Sa = data
    else:
        try:
            Bt, St, Sa = _prepare_data(data[0], data[1], payload["alpha"], payload["V"])
        except MashInputError as e:
            raise MashInputError(f"{e} [row numbers are within the chunk of rows "
                                 f"{start}-{stop - 1}]") from None
    model = payload["model"]
    kernel = payload["kernel"]
    # EZ fast path: with one transformed Shat for all rows, only Shat_alpha varies by row and
    # it enters as a positive per-cell scale: PM and PSD scale by it, lfsr/lfdr/NegativeProb
    # do not change. Run the kernel on the common-covariance scale and rescale (exact math).
    rescale = (payload["fast_ez"] and payload["A"] is None and Bt.shape[0] > 1
               and bool(np.all(St == St[0])) and not bool(np.all(Sa == Sa[0])))
    res = kernel(Bt, St, np.ones_like(Sa) if rescale else Sa, payload["V"], model.U, model.pi,
                 A=payload["A"], output_posterior_cov=payload["posterior_cov"],
                 **payload["kernel_extras"])
    out = {k: np.asarray(res[k]) for k in payload["outputs"] if k != "PosteriorSamples"}
    if rescale:
        out["PosteriorMean"] = out["PosteriorMean"] * Sa
        out["PosteriorSD"] = out["PosteriorSD"] * Sa
        if "PosteriorCov" in out:
            out["PosteriorCov"] = out["PosteriorCov"] * (Sa[:, :, None] * Sa[:, None, :])
    if "PosteriorCov" in out and out["PosteriorCov"].shape[0] != stop - start:
        out["PosteriorCov"] = np.moveaxis(out["PosteriorCov"], -1, 0)   # R's Q x Q x J layout
    if payload["samples"]:
        rng = np.random.default_rng(np.random.SeedSequence(payload["seed"], spawn_key=(start,)))
        out["PosteriorSamples"] = sample_posterior_chunk(Bt, St, Sa, payload["V"], model.U, model.pi,
                                                         payload["samples"], rng, A=payload["A"])
    if digest is not None:
        out["_input_digest"] = digest
    return out


