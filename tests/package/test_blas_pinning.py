"""BLAS thread pinning (issue 13): reference counted across threads and nesting; the exported
numeric functions run single-threaded."""
import numpy as np
import pytest

import mashlib as ml


def _sim(J=40, R=3, seed=3):
    rng = np.random.default_rng(seed)
    return ml.mash_set_data(rng.normal(size=(J, R)) * 2, rng.uniform(0.8, 1.5, size=(J, R)))

def test_blas_threads_reference_counted_across_threads():
    """Concurrent and nested pinning leaves the pool as it found it."""
    import threading
    from mashlib import _blas
    ctl = _blas._controls()
    if not ctl:
        pytest.skip("no OpenBLAS / MKL found in this process (needs Linux /proc/self/maps)")
    before = [g() for _, g in ctl]
    barrier = threading.Barrier(4)

    def work():
        with _blas.blas_threads(1):
            barrier.wait()
            with _blas.blas_threads(2):
                pass
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [g() for _, g in ctl] == before and _blas._ACTIVE == []
    with _blas.blas_threads(1):
        assert all(g() == 1 for _, g in ctl)
        with _blas.blas_threads(3):
            assert all(g() == 3 for _, g in ctl)
        assert all(g() == 1 for _, g in ctl)
    assert [g() for _, g in ctl] == before


def test_exported_numeric_functions_pin_blas(monkeypatch):
    """calc_lik_matrix, compute_posterior_matrices, ED, udr, flash run under blas_threads(1)."""
    import importlib
    _blas = importlib.import_module("mashlib._blas")
    seen = []
    orig = _blas.blas_threads.__enter__

    def spy(self):
        seen.append(self.n)
        return orig(self)
    monkeypatch.setattr(_blas.blas_threads, "__enter__", spy)
    d = _sim()
    U = ml.expand_cov(ml.cov_canonical(d), [0.5, 1.0])
    for f in (lambda: ml.calc_lik_matrix(d, U), lambda: ml.calc_relative_lik_matrix(d, U),
              lambda: ml.compute_posterior_matrices(d, np.stack(list(U.values()))[1:4],
                                                    np.full(3, 1 / 3)),
              lambda: ml.extreme_deconvolution(d.Bhat, d.Shat ** 2, [1.0], None, [np.eye(3)],
                                               maxiter=2)):
        seen.clear()
        f()
        assert seen and seen[0] == 1
