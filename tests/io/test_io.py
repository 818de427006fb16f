"""RDS reading/writing and the mashr input object (mashlib.io)."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mashlib import MashInputError
from mashlib.io import (RArray, RList, read_mashr_input, read_rds, serialize_rds, write_rds,
                        preprocess_matrices, mashr_input_from_dict)

REF = Path(__file__).parents[1] / "data" / "reference"
FIXTURE = REF / "golden" / "mashr_input_fixture.rds"
CONDS = ["ALL", "Ast", "End", "Exc", "Inh", "Mic", "OPC", "Oli"]


def test_read_fixture_matches_json_export():
    x = read_rds(FIXTURE)
    assert list(x) == ["strong.b", "strong.s", "random.b", "random.s", "null.b", "null.s",
                       "strong.z", "random.z", "null.z"]
    ref = json.loads((REF / "golden" / "fixture_mashr_input.json").read_text())
    sb = x["strong.b"]
    assert isinstance(sb, pd.DataFrame) and sb.shape == (17, 8)
    assert list(sb.columns) == CONDS
    assert isinstance(sb.index, pd.RangeIndex)  # R rownames are NULL
    assert ref["strong.b"]["colnames"] == CONDS
    np.testing.assert_allclose(sb.to_numpy(), np.array(ref["strong.b"]["values"]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(x["null.s"].to_numpy(), np.array(ref["null.s"]["values"]), rtol=0, atol=1e-12)


def test_read_mashr_input_and_preprocess():
    m = read_mashr_input(FIXTURE)
    assert m.conditions == CONDS
    assert (m.strong.n, m.random.n, m.null.n) == (17, 50, 50)
    assert m.XtX is None
    p = m.preprocess()
    assert p.strong.b.index[0] == "mash::mash::var1"
    assert p.null.s.index[-1] == "mash::mash::var50"
    np.testing.assert_array_equal(p.random.b.to_numpy(), m.random.b.to_numpy())


def test_preprocess_na_and_nonpositive_shat():
    b = pd.DataFrame([[np.nan, 1.0], [2.0, 3.0]], index=["rs1", "rs2"], columns=["a", "b"])
    s = pd.DataFrame([[1.0, np.nan], [0.0, -1.0]], index=["rs1", "rs2"], columns=["a", "b"])
    b2, s2 = preprocess_matrices(b, s)
    assert list(b2.index) == ["mash::mash::rs1", "mash::mash::rs2"]
    np.testing.assert_array_equal(b2.to_numpy(), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(s2.to_numpy(), [[1, 1000], [1000, 1000]])


def test_preprocess_duplicate_ids_last_wins_first_position():
    b = pd.DataFrame([[1.0], [2.0], [3.0]], index=["x", "y", "x"], columns=["c"])
    b2, s2 = preprocess_matrices(b, b.abs() + 1)
    assert list(b2.index) == ["mash::mash::x", "mash::mash::y"]
    assert b2.to_numpy().ravel().tolist() == [3.0, 2.0]


def test_mashr_input_errors_name_file_and_element(tmp_path):
    d = read_rds(FIXTURE)
    bad = dict(d)
    del bad["null.s"]
    with pytest.raises(MashInputError, match=r"bad\.rds.*'null\.s' is missing"):
        mashr_input_from_dict(bad, "bad.rds")
    bad = dict(d, extra=1.0)
    with pytest.raises(MashInputError, match=r"unknown element\(s\) \['extra'\]"):
        mashr_input_from_dict(bad, "bad.rds")
    bad = dict(d)
    bad["random.s"] = d["random.s"].iloc[:10]
    with pytest.raises(MashInputError, match=r"'random\.s' has shape \(10, 8\)"):
        mashr_input_from_dict(bad, "bad.rds")
    bad = dict(d)
    bad["null.b"] = d["null.b"].rename(columns={"ALL": "all"})
    bad["null.s"] = d["null.s"].rename(columns={"ALL": "all"})
    with pytest.raises(MashInputError, match="same columns"):
        mashr_input_from_dict(bad, "bad.rds")
    with pytest.raises(MashInputError, match="file not found"):
        read_mashr_input(tmp_path / "nope.rds")
    (tmp_path / "junk.rds").write_bytes(b"not an rds")
    with pytest.raises(MashInputError, match="not a readable R .rds"):
        read_rds(tmp_path / "junk.rds")


def _example_obj():
    rng = np.random.default_rng(1)
    U = pd.DataFrame(rng.normal(size=(3, 3)), index=list("abc"), columns=list("abc"))
    cov = RArray(rng.normal(size=(3, 3, 4)), [list("abc"), list("abc"), [f"v{i}" for i in range(4)]])
    return {
        "U": {"PCA_1": U, "identity": np.eye(3)},
        "w": pd.Series([0.5, 0.25, 0.25], index=["null", "PCA_1", "identity"]),
        "loglik": None,
        "file": "output/x.rds",
        "n": 3,
        "flag": True,
        "vec": np.array([1.0, np.nan, 3.0]),
        "ivec": np.array([1, 2, 3]),
        "cov": cov,
        "nocolnames": pd.DataFrame(rng.normal(size=(2, 2))),
        "unnamed": [1.5, "x"],
        "empty": {},
    }


def test_write_read_roundtrip(tmp_path):
    obj = _example_obj()
    p = write_rds(tmp_path / "o.rds", obj)
    back = read_rds(p)
    assert list(back) == list(obj)
    pd.testing.assert_frame_equal(back["U"]["PCA_1"], obj["U"]["PCA_1"])
    np.testing.assert_array_equal(back["U"]["identity"], np.eye(3))
    pd.testing.assert_series_equal(back["w"], obj["w"])
    assert back["loglik"] is None and back["file"] == "output/x.rds"
    assert back["n"] == 3 and back["flag"] is True
    np.testing.assert_array_equal(back["vec"], obj["vec"])
    assert back["ivec"].dtype.kind == "i"
    assert isinstance(back["cov"], RArray)
    np.testing.assert_array_equal(back["cov"].values, obj["cov"].values)
    assert back["cov"].dimnames == obj["cov"].dimnames
    assert isinstance(back["nocolnames"], np.ndarray)
    assert back["unnamed"] == [1.5, "x"]
    assert back["empty"] == {}


def test_written_file_readable_by_rdata_and_pyreadr(tmp_path):
    import pyreadr
    import rdata

    df = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["r1", "r2"], columns=["c1", "c2"])
    p = write_rds(tmp_path / "m.rds", df)
    r = pyreadr.read_r(str(p))[None]
    np.testing.assert_array_equal(np.asarray(r), df.to_numpy())
    conv = rdata.read_rds(p)
    np.testing.assert_array_equal(np.asarray(conv), df.to_numpy())
    assert list(conv.coords["dim_1"].values) == ["c1", "c2"]
    lst = rdata.read_rds(write_rds(tmp_path / "l.rds", {"a": 1.0, "b": "x"}))
    assert lst == {"a": [1.0], "b": ["x"]} or (float(lst["a"][0]) == 1.0 and lst["b"][0] == "x")


def test_bytes_are_r_xdr_v3(tmp_path):
    raw = serialize_rds(pd.Series([1.5], index=["x"]))
    assert raw[:2] == b"X\n"
    assert struct.unpack(">iii", raw[2:14]) == (3, 0x040203, 0x030500)
    assert raw[14:18 + 5] == struct.pack(">i", 5) + b"UTF-8"
    flags, n = struct.unpack(">ii", raw[23:31])
    assert flags & 0xFF == 14 and flags & (1 << 9)  # REALSXP with attributes
    assert n == 1 and struct.unpack(">d", raw[31:39])[0] == 1.5
    p = write_rds(tmp_path / "s.rds", {"a": 1.0})
    assert gzip.decompress(p.read_bytes())[:2] == b"X\n"
    # identical objects give identical files (mtime 0 in the gzip header)
    assert write_rds(tmp_path / "t.rds", {"a": 1.0}).read_bytes() == p.read_bytes()


def test_write_is_atomic_on_error(tmp_path):
    target = tmp_path / "x.rds"
    with pytest.raises(MashInputError, match="cannot write"):
        write_rds(target, {"a": object()})
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_read_other_references():
    x = read_rds(REF / "sim_protocol" / "mashr_input.rds")
    assert x["strong.b"].shape == (1500, 20)
    u = read_rds(REF / "udr_sim" / "input.rds")
    assert set(u) >= {"X", "V", "U", "w"}
    m = read_rds(REF / "sim_small" / "d_pca_ed_mash.rds")
    assert isinstance(m["m"], RList) and m["m"].r_class == ["mash"]


@pytest.mark.parametrize("rel", ["golden/mashr_input_fixture.rds", "udr_sim/input.rds",
                                 "sim_small/c_null_corr_simple.rds", "gtex_flash/gtex_colors.rds"])
def test_reserialisation_is_byte_identical_to_r(rel):
    """read -> serialize reproduces R's own XDR stream (after the R-version header word)."""
    import lzma
    import bz2
    blob = (REF / rel).read_bytes()
    for dec in (gzip.decompress, lzma.decompress, bz2.decompress, lambda b: b):
        try:
            raw = dec(blob)
            break
        except Exception:  # noqa: BLE001
            continue
    mine = serialize_rds(read_rds(REF / rel))
    assert mine[:6] == raw[:6] and mine[10:] == raw[10:]


def test_nan_is_written_as_r_na(tmp_path):
    raw = serialize_rds(np.array([1.0, np.nan]))
    assert raw.endswith(struct.pack(">d", 1.0) + bytes.fromhex("7ff00000000007a2"))
    back = read_rds(write_rds(tmp_path / "na.rds", np.array([1.0, np.nan])))
    assert back[0] == 1.0 and np.isnan(back[1])


def test_data_frame_and_tibble_written_as_r_data_frames(tmp_path):
    """A DataFrame with attrs["r_class"] is an R data.frame (one vector per column, compact or
    character row names, the class kept); librdata (pyreadr) reads it as a data.frame."""
    import pyreadr
    df = pd.DataFrame({"feature_id": ["a", None], "x": [1.5, np.nan], "n": [1, 2], "ok": [True, False]})
    df.attrs["r_class"] = ["tbl_df", "tbl", "data.frame"]
    p = write_rds(tmp_path / "t.rds", df)
    r = pyreadr.read_r(str(p))[None]
    assert list(r.columns) == ["feature_id", "x", "n", "ok"] and isinstance(r.index, pd.RangeIndex)
    assert r["feature_id"].iloc[0] == "a" and pd.isna(r["feature_id"].iloc[1])
    assert r["x"].iloc[0] == 1.5 and np.isnan(r["x"].iloc[1]) and r["n"].tolist() == [1, 2]
    assert r["ok"].tolist() == [True, False]
    back = read_rds(p)
    assert back.attrs["r_class"] == ["tbl_df", "tbl", "data.frame"] and isinstance(back.index, pd.RangeIndex)
    named = pd.DataFrame({"x": [1.0, 2.0]}, index=["r1", "r2"])
    named.attrs["r_class"] = ["data.frame"]
    r2 = pyreadr.read_r(str(write_rds(tmp_path / "d.rds", named)))[None]
    assert list(r2.index) == ["r1", "r2"] and r2["x"].tolist() == [1.0, 2.0]
    # an R-written data.frame reads with its class and round-trips through write_rds
    prog = read_rds(REF / "udr_sim" / "ud_fit_ed_maxiter20.rds")["progress"]
    assert prog.attrs["r_class"] == ["data.frame"] and prog.shape == (20, 7)
    again = read_rds(write_rds(tmp_path / "p.rds", prog))
    pd.testing.assert_frame_equal(again, prog)
