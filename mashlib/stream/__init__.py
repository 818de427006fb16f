"""Streaming, out-of-core and Dask posteriors for millions of rows under a memory budget.

``engine`` (``compute_posterior_streaming`` = ``plan_stream`` -> ``run_stream`` -> ``collect_stream``
with a ``StreamOptions`` dataclass), ``chunk`` (the work of
one row chunk), ``kernel`` (the per-chunk posterior kernel, pluggable), ``plan`` (memory and time
estimates), ``store`` (``.npy`` row stores with a manifest), ``sampling`` (posterior samples and
the sharing computed from them), ``distributed`` (Dask).
"""
from .chunk import ChunkFailedError
from .engine import (StreamOptions, StreamResult, calc_relative_lik_matrix_dask, collect_stream,
                     compute_posterior_streaming, plan_stream, run_stream)
from .kernel import StreamModel, prepare_model
from .plan import MemoryEstimate, estimate_memory, parse_memory
from .sampling import get_pairwise_sharing_from_samples
from .store import open_store, save_npy_store

__all__ = ["compute_posterior_streaming", "save_npy_store", "open_store", "estimate_memory",
           "get_pairwise_sharing_from_samples", "calc_relative_lik_matrix_dask", "StreamResult",
           "MemoryEstimate", "ChunkFailedError", "parse_memory", "prepare_model", "StreamModel",
           "StreamOptions", "plan_stream", "run_stream", "collect_stream"]
