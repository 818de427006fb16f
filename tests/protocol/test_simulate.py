"""The shipped example input (input/mash) and its generator (mashlib.protocol.simulate)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mashlib.io import read_mashr_input, read_rds
from mashlib.protocol.simulate import GROUPS, TISSUES, residual_correlation, simulate_protocol_example, write_protocol_example

INPUT = Path(__file__).resolve().parents[2] / "input" / "mash"
PFX = "protocol_example"


def _assert_same_values(new, old, what):
    """Same names, row/column labels and NA pattern; floats within 1e-12 of the matrix scale.

    ``XtX`` is a BLAS product (t(Z) Z / n): its last bits, and so the gzip bytes of the
    file, depend on the numpy/BLAS build, so the files are compared value for value.
    """
    assert list(new) == list(old), what
    for k in old:
        a, b = new[k], old[k]
        assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns), f"{what} {k}"
        a, b = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what} {k}: NA pattern")
        scale = np.nanmax(np.abs(b))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, equal_nan=True, err_msg=f"{what} {k}")


def test_regenerates_shipped_input(tmp_path):
    written = write_protocol_example(tmp_path, PFX, derived=False, log=lambda s: None)
    assert [p.name for p in written] == [f"{PFX}.mashr_input.rds", f"{PFX}.EE.mash.rds"]
    for p in written:
        _assert_same_values(read_rds(p), read_rds(INPUT / p.name), p.name)


def test_value_comparison_fails_on_a_changed_value(tmp_path):
    """The comparison above is not vacuous: one changed cell (1e-9 relative) is caught."""
    old = read_rds(INPUT / f"{PFX}.mashr_input.rds")
    new = {k: v.copy() for k, v in old.items()}
    new["XtX"].iloc[3, 5] *= 1 + 1e-9
    with pytest.raises(AssertionError, match="XtX"):
        _assert_same_values(new, old, "x")
    new = {k: v.copy() for k, v in old.items()}
    new["XtX"].iloc[3, 5] *= 1 + 1e-15          # a last-bit BLAS difference passes
    _assert_same_values(new, old, "x")


def test_input_structure():
    raw = read_rds(INPUT / f"{PFX}.mashr_input.rds")
    assert list(raw) == ["strong.b", "strong.s", "strong.z", "random.b", "random.s", "random.z",
                         "null.b", "null.s", "null.z", "XtX"]
    m = read_mashr_input(INPUT / f"{PFX}.mashr_input.rds")
    assert len(m.conditions) == 34 and m.conditions == TISSUES
    assert (m.strong.n, m.random.n, m.null.n) == (100, 500, 500)
    z = m.strong.b / m.strong.s
    np.testing.assert_allclose(m.strong.z.to_numpy(), z.to_numpy(), equal_nan=True)
    # strong = max |z| > 4 (before a few cells were made NA)
    assert np.mean(np.nanmax(np.abs(z.to_numpy()), axis=1) > 4) > 0.98
    assert m.strong.b.isna().to_numpy().any()                       # some missing cells, as real data
    assert m.strong.b.index[0].startswith("chr") and m.strong.b.index.is_unique
    np.testing.assert_allclose(m.XtX.to_numpy(), m.XtX.to_numpy().T)


def test_mash_input_is_the_preprocessed_input():
    m = read_mashr_input(INPUT / f"{PFX}.mashr_input.rds").preprocess()
    e = read_rds(INPUT / f"{PFX}.EE.mash.rds")
    assert "XtX" not in e and e["strong.b"].index[0].startswith("mash::mash::chr")
    for k in ("strong", "random", "null"):
        np.testing.assert_array_equal(e[f"{k}.b"].to_numpy(), getattr(m, k).b.to_numpy())
        assert not np.isnan(e[f"{k}.s"].to_numpy()).any() and (e[f"{k}.s"].to_numpy() > 0).all()
    assert (e["strong.s"].to_numpy() == 1000).any()  # NA Shat -> 1000


def test_sharing_and_residual_correlation_are_real():
    sim = simulate_protocol_example(n_strong=50, n_random=50, n_null=2000, seed=3)
    z = np.nan_to_num(sim["null.z"].to_numpy())
    C = np.corrcoef(z.T)
    brain = [TISSUES.index(t) for t in GROUPS["brain"]]
    other = [i for i in range(34) if i not in brain]
    V = residual_correlation()
    assert np.all(np.linalg.eigvalsh(V) > 0)
    assert C[np.ix_(brain, brain)][np.triu_indices(10, 1)].mean() == pytest.approx(0.4, abs=0.05)
    assert C[np.ix_(other, other)][np.triu_indices(24, 1)].mean() == pytest.approx(0.15, abs=0.05)
    # the same seed gives the same values; another seed does not
    again = simulate_protocol_example(n_strong=50, n_random=50, n_null=2000, seed=3)
    np.testing.assert_array_equal(again["strong.b"].to_numpy(), sim["strong.b"].to_numpy())
    other_seed = simulate_protocol_example(n_strong=50, n_random=50, n_null=2000, seed=4)
    assert not np.allclose(np.nan_to_num(other_seed["strong.b"].to_numpy()), np.nan_to_num(sim["strong.b"].to_numpy()))


def test_derived_files_match_the_pipeline():
    """V_simple regenerates value for value; the prior has the ed_bovy structure."""
    from mashlib.protocol import steps
    from mashlib.vhat import vhat_simple
    m = steps.load_input(INPUT / f"{PFX}.mashr_input.rds")
    V = read_rds(INPUT / f"{PFX}.EE.V_simple.rds")
    np.testing.assert_allclose(V.to_numpy(), np.asarray(vhat_simple(m.null.b, m.null.s)), atol=1e-14)
    prior = read_rds(INPUT / f"{PFX}.EE.prior.rds")
    assert list(prior) == ["U", "w", "loglik"]
    names = list(prior["U"])
    assert "PCA_1" in names and "equal_effects" in names and f"ED_{names[0]}" in names
    assert list(prior["w"].index) == ["null"] + names
    assert prior["w"].sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_shipped_prior_regenerates(tmp_path):
    from mashlib import protocol
    (out,) = protocol.ed_bovy(data=str(INPUT / f"{PFX}.mashr_input.rds"), output_prefix=PFX, cwd=str(tmp_path),
                              log=lambda s: None, ed_accelerate=False)  # shipped prior: plain EM
    new, old = read_rds(out), read_rds(INPUT / f"{PFX}.EE.prior.rds")
    assert list(new["U"]) == list(old["U"])
    np.testing.assert_allclose(new["w"].to_numpy(), old["w"].to_numpy(), atol=1e-6)
    for k in old["U"]:
        np.testing.assert_allclose(np.asarray(new["U"][k]), np.asarray(old["U"][k]), atol=1e-6)
