"""Read and write R's RDS files, and the mashr input list of the MASH protocol.

Reading goes through the ``rdata`` parser (any compression R writes: gzip, bzip2,
xz); the parsed tree is converted here with a small, predictable mapping:

=====================================  =============================================
R                                      Python
=====================================  =============================================
named list                             ``dict`` (an :class:`RList` when it has a class)
unnamed list                           ``list``
numeric/integer/logical matrix         ``pandas.DataFrame`` when it has dimnames
                                       (a missing side gets a ``RangeIndex``),
                                       else ``numpy.ndarray``
array of rank >= 3                     :class:`RArray` (values + dimnames)
named atomic vector                    ``pandas.Series``
unnamed vector of length 1             Python scalar (``float``, ``int``, ``bool``, ``str``)
unnamed vector                         ``numpy.ndarray``
factor                                 ``pandas.Categorical``
data.frame (and tibble)                ``pandas.DataFrame`` with ``attrs["r_class"]`` (its R
                                       class), written back as a data.frame
NULL                                   ``None``
=====================================  =============================================

Writing (:func:`write_rds`) is the inverse mapping, serialised by hand in R's XDR
format version 3 and gzip-compressed, so R's ``readRDS`` returns the structures the
R protocol writes (named lists, numeric matrices with dimnames, named numeric
vectors, ``NULL``, character scalars and R x R x J arrays with dimnames).  A
DataFrame whose index (or columns) is a default ``RangeIndex`` is written without
row (or column) names, so a matrix read from R round-trips unchanged.

The mashr input (map section 1.0: :class:`MashrInput`, :func:`read_mashr_input`,
preprocessing) lives in :mod:`mashlib.io.mashr_input` and is re-exported here.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._errors import MashInputError

__all__ = [
    "RArray",
    "RList",
    "read_rds",
    "write_rds",
    "serialize_rds",
]

# --------------------------------------------------------------------------- containers


@dataclasses.dataclass
class RArray:
    """An R array of rank >= 3 with optional dimnames.

    Attributes
    ----------
    values : numpy.ndarray
        The data, indexed ``values[i, j, k]`` exactly as R's ``x[i, j, k]``.
    dimnames : list of (list of str or None)
        One entry per dimension; ``None`` where R has no names.
    """

    values: np.ndarray
    dimnames: list | None = None

    def __post_init__(self):
        self.values = np.asarray(self.values)
        if self.dimnames is None:
            self.dimnames = [None] * self.values.ndim
        if len(self.dimnames) != self.values.ndim:
            raise MashInputError(
                f"RArray: dimnames has {len(self.dimnames)} entries for an array of rank "
                f"{self.values.ndim}; give one (or None) per dimension")
        for k, nm in enumerate(self.dimnames):
            if nm is not None and len(nm) != self.values.shape[k]:
                raise MashInputError(
                    f"RArray: dimnames[{k}] has {len(nm)} names for extent {self.values.shape[k]}")

    @property
    def shape(self):
        return self.values.shape


class RList(dict):
    """A named R list that carries a ``class`` attribute (e.g. ``"mash"``).

    Behaves as a ``dict``; ``r_class`` is written back as the class attribute.
    """

    def __init__(self, *args, r_class: list[str] | str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(r_class, str):
            r_class = [r_class]
        self.r_class = list(r_class) if r_class else []


# --------------------------------------------------------------------------- reading


def _rdata_types():
    from rdata.parser import RObjectType
    return RObjectType


def _char(obj) -> str | None:
    v = obj.value
    if v is None:
        return None
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _pairlist(obj, T) -> list[tuple[str | None, Any]]:
    """Flatten an R pairlist (attributes) into (tag, RObject) pairs."""
    out = []
    while obj is not None and obj.info.type == T.LIST:
        car, cdr = obj.value
        tag = None
        if obj.tag is not None:
            t = obj.tag.referenced_object if obj.tag.info.type == T.REF else obj.tag
            tag = _char(t.value) if t.info.type == T.SYM else None
        out.append((tag, car))
        obj = cdr
    return out


def _attrs(obj, T) -> dict[str, Any]:
    if obj.attributes is None:
        return {}
    return {k: v for k, v in _pairlist(obj.attributes, T)}


def _strvec(obj, T) -> list[str | None] | None:
    obj = _deref(obj, T)
    if obj is None or obj.info.type == T.NILVALUE:
        return None
    if obj.info.type == T.STR:
        return [_char(c) for c in obj.value]
    # integer row names (compact form c(NA, -n)) or numeric names
    return [str(x) for x in np.asarray(obj.value).tolist()]


def _deref(obj, T):
    while obj is not None and obj.info.type == T.REF:
        obj = obj.referenced_object
    return obj


def _atomic_values(obj, T) -> np.ndarray:
    t = obj.info.type
    v = obj.value
    if t == T.STR:
        return np.array([_char(c) for c in v], dtype=object)
    if isinstance(v, np.ma.MaskedArray):
        if t == T.LGL:
            data = np.asarray(v.data, dtype=float)
        else:
            data = np.asarray(v.data, dtype=float)
        data[np.ma.getmaskarray(v)] = np.nan
        return data
    arr = np.asarray(v)
    if t == T.INT:
        return arr.astype(np.int64)
    if t == T.LGL:
        return arr.astype(bool)
    return arr.astype(np.float64) if t == T.REAL else arr


def _convert(obj, T) -> Any:
    obj = _deref(obj, T)
    t = obj.info.type
    if t == T.NILVALUE:
        return None
    attrs = _attrs(obj, T)
    cls = _strvec(attrs["class"], T) if "class" in attrs else []
    names = _strvec(attrs["names"], T) if "names" in attrs else None

    if t in (T.VEC, T.EXPR):
        items = [_convert(x, T) for x in obj.value]
        if "data.frame" in cls:
            rn = _strvec(attrs.get("row.names"), T)
            df = pd.DataFrame({n: (np.asarray(x) if not isinstance(x, pd.Categorical) else x)
                               for n, x in zip(names, items)})
            if rn is not None and not (len(rn) == 2 and rn[0] in ("nan", "-2147483648")):
                df.index = rn
            df.attrs["r_class"] = list(cls)  # written back as a data.frame (tibble) by write_rds
            return df
        if names is None:
            return items
        d = RList(zip(names, items), r_class=cls) if cls else dict(zip(names, items))
        return d
    if t in (T.REAL, T.INT, T.LGL, T.STR, T.CPLX):
        vals = _atomic_values(obj, T)
        if "factor" in cls and t == T.INT:
            levels = _strvec(attrs["levels"], T)
            codes = np.where(np.isnan(vals.astype(float)), -1, vals - 1).astype(int)
            return pd.Categorical.from_codes(codes, categories=levels)
        if "dim" in attrs:
            dim = [int(x) for x in np.asarray(_deref(attrs["dim"], T).value)]
            arr = np.reshape(vals, dim, order="F")
            dn_obj = attrs.get("dimnames")
            dimnames = None
            if dn_obj is not None:
                dn_obj = _deref(dn_obj, T)
                dimnames = [_strvec(x, T) for x in dn_obj.value]
            if len(dim) == 2:
                if dimnames is None or all(x is None for x in dimnames):
                    return arr
                return pd.DataFrame(arr, index=dimnames[0], columns=dimnames[1])
            return RArray(arr, dimnames)
        if names is not None:
            return pd.Series(vals, index=names)
        if vals.shape == (1,):
            x = vals[0]
            return x.item() if hasattr(x, "item") else x
        return vals
    if t == T.SYM:
        return _char(obj.value)
    if t == T.LIST:
        pl = _pairlist(obj, T)
        return {k: _convert(v, T) for k, v in pl}
    return obj  # functions, environments ... : the raw rdata object


def read_rds(path: str | os.PathLike) -> Any:
    """Read an R ``.rds`` file into Python objects.

    Parameters
    ----------
    path : str or path-like
        The file (gzip, bzip2, xz or uncompressed; XDR format 2 or 3).

    Returns
    -------
    object
        See the module docstring for the mapping (named list -> dict, matrix with
        dimnames -> DataFrame, named vector -> Series, NULL -> None, ...).

    Raises
    ------
    MashInputError
        If the file is missing or is not an RDS file.
    """
    import rdata

    path = Path(path)
    if not path.is_file():
        raise MashInputError(f"{path}: file not found; check the path (it is read as an R .rds file)")
    try:
        parsed = rdata.parser.parse_file(path, extension=".rds")
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise MashInputError(f"{path}: not a readable R .rds file ({type(exc).__name__}: {exc})") from None
    return _convert(parsed.object, _rdata_types())


# --------------------------------------------------------------------------- writing

_NILSXP, _SYMSXP, _LISTSXP, _CHARSXP = 254, 1, 2, 9
_LGLSXP, _INTSXP, _REALSXP, _STRSXP, _VECSXP = 10, 13, 14, 16, 19
_IS_OBJECT, _HAS_ATTR, _HAS_TAG = 1 << 8, 1 << 9, 1 << 10
_NA_INT = -(2 ** 31)
_NA_REAL = struct.pack(">Q", 0x7FF00000000007A2)


class _Writer:
    def __init__(self):
        self.parts: list[bytes] = []
        self.symbols: dict[str, int] = {}  # R's reference table (symbols only)

    def int(self, x: int):
        self.parts.append(struct.pack(">i", x))

    def flags(self, t: int, attr: bool = False, obj: bool = False, tag: bool = False, gp: int = 0):
        self.int(t | (_IS_OBJECT if obj else 0) | (_HAS_ATTR if attr else 0)
                 | (_HAS_TAG if tag else 0) | (gp << 12))

    def charsxp(self, s: str | None):
        if s is None:
            self.flags(_CHARSXP)
            self.int(-1)
            return
        b = s.encode("utf-8")
        gp = 64 if s.isascii() else 8  # ASCII_MASK / UTF8_MASK
        self.flags(_CHARSXP, gp=gp)
        self.int(len(b))
        self.parts.append(b)

    def symbol(self, name: str):
        ref = self.symbols.get(name)
        if ref is not None:  # REFSXP with the index packed in the flags, as R does
            self.int((ref << 8) | 255)
            return
        self.symbols[name] = len(self.symbols) + 1
        self.flags(_SYMSXP)
        self.charsxp(name)

    def null(self):
        self.int(_NILSXP)

    def attributes(self, attrs: list[tuple[str, Any]]):
        for name, value in attrs:
            self.flags(_LISTSXP, tag=True)
            self.symbol(name)
            self.obj(value)
        self.null()

    def strvec(self, values, attrs=()):
        attrs = list(attrs)
        self.flags(_STRSXP, attr=bool(attrs))
        self.int(len(values))
        for s in values:
            self.charsxp(None if s is None else str(s))
        if attrs:
            self.attributes(attrs)

    def atomic(self, arr: np.ndarray, attrs: list[tuple[str, Any]], obj: bool = False):
        flat = np.asarray(arr).ravel(order="F")
        kind = flat.dtype.kind
        if kind in "OUS":
            self.strvec([None if (x is None or (isinstance(x, float) and np.isnan(x))) else str(x)
                         for x in flat], attrs)
            return
        if kind == "b":
            t, payload = _LGLSXP, flat.astype(">i4").tobytes()
        elif kind in "iu":
            if flat.size and (flat.max() >= 2 ** 31 or flat.min() <= _NA_INT):
                t, payload = _REALSXP, flat.astype(">f8").tobytes()
            else:
                t, payload = _INTSXP, flat.astype(">i4").tobytes()
        elif kind == "f":
            t = _REALSXP
            f = flat.astype(">f8")
            nan = np.isnan(f)
            if nan.any():  # missing values are R's NA_real_ (not NaN), as R writes them
                f = f.view(">u8").copy()
                f[nan] = 0x7FF00000000007A2
            payload = f.tobytes()
        else:
            raise MashInputError(f"write_rds: cannot write numpy dtype {flat.dtype} to R")
        self.flags(t, attr=bool(attrs), obj=obj)
        self.int(flat.size)
        self.parts.append(payload)
        if attrs:
            self.attributes(attrs)

    @staticmethod
    def _names(index) -> list[str] | None:
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            return None
        return [str(x) for x in index]

    def obj(self, x: Any):  # noqa: C901 - one dispatch table
        if x is None:
            self.null()
        elif isinstance(x, RList) or isinstance(x, dict):
            names = [str(k) for k in x]
            attrs: list[tuple[str, Any]] = [("names", np.array(names, dtype=object))]
            cls = getattr(x, "r_class", None)
            if cls:
                attrs.append(("class", np.array(cls, dtype=object)))
            self.flags(_VECSXP, attr=True, obj=bool(cls))
            self.int(len(x))
            for v in x.values():
                self.obj(v)
            self.attributes(attrs)
        elif isinstance(x, (list, tuple)):
            self.flags(_VECSXP)
            self.int(len(x))
            for v in x:
                self.obj(v)
        elif isinstance(x, pd.DataFrame) and "data.frame" in (x.attrs.get("r_class") or ()):
            self.data_frame(x)
        elif isinstance(x, pd.DataFrame):
            vals = x.to_numpy()
            if vals.dtype == object:
                try:
                    vals = vals.astype(float)
                except (TypeError, ValueError):
                    raise MashInputError(
                        "write_rds: a DataFrame is written as an R matrix and must be all numeric "
                        f"(columns {list(x.columns)[:5]}...)") from None
            dimnames = [self._names(x.index), self._names(x.columns)]
            self.atomic(vals, self._dim_attrs(vals.shape, dimnames))
        elif isinstance(x, pd.Series):
            self.atomic(x.to_numpy(), [("names", np.array([str(i) for i in x.index], dtype=object))])
        elif isinstance(x, pd.Categorical):
            codes = np.asarray(x.codes, dtype=np.int64) + 1
            self.flags(_INTSXP, attr=True, obj=True)
            self.int(codes.size)
            self.parts.append(np.where(codes == 0, _NA_INT, codes).astype(">i4").tobytes())
            self.attributes([("levels", np.array([str(c) for c in x.categories], dtype=object)),
                             ("class", np.array(["factor"], dtype=object))])
        elif isinstance(x, RArray):
            self.atomic(x.values, self._dim_attrs(x.values.shape, x.dimnames))
        elif isinstance(x, np.ndarray):
            attrs = self._dim_attrs(x.shape, None) if x.ndim >= 2 else []
            self.atomic(x, attrs)
        elif isinstance(x, (bool, np.bool_)):
            self.atomic(np.array([bool(x)]), [])
        elif isinstance(x, (int, np.integer)):
            self.atomic(np.array([int(x)]), [])
        elif isinstance(x, (float, np.floating)):
            self.atomic(np.array([float(x)]), [])
        elif isinstance(x, (str, os.PathLike)):
            self.strvec([str(x)])
        else:
            raise MashInputError(f"write_rds: cannot write a Python {type(x).__name__} to R; "
                                 "use dict, list, DataFrame, Series, ndarray, RArray, scalars or None")

    def data_frame(self, x: pd.DataFrame):
        """An R data.frame (class from ``x.attrs["r_class"]``): one vector per column."""
        self.flags(_VECSXP, attr=True, obj=True)
        self.int(x.shape[1])
        for name in x.columns:
            col = x[name].to_numpy()
            if col.dtype.kind not in "biufOUS":
                col = col.astype(object)
            self.atomic(col, [])
        rn = self._names(x.index)
        self.flags(_LISTSXP, tag=True)
        self.symbol("names")
        self.strvec([str(c) for c in x.columns])
        self.flags(_LISTSXP, tag=True)
        self.symbol("row.names")
        if rn is not None:
            self.strvec(rn)
        else:  # R's compact form c(NA_integer_, -n)
            self.flags(_INTSXP)
            self.int(2)
            self.int(_NA_INT)
            self.int(-x.shape[0])
        self.flags(_LISTSXP, tag=True)
        self.symbol("class")
        self.strvec(list(x.attrs["r_class"]))
        self.null()

    @staticmethod
    def _dim_attrs(shape, dimnames) -> list[tuple[str, Any]]:
        attrs: list[tuple[str, Any]] = [("dim", np.array(shape, dtype=np.int64))]
        if dimnames is not None and any(d is not None for d in dimnames):
            attrs.append(("dimnames", [None if d is None else np.array([str(s) for s in d], dtype=object)
                                       for d in dimnames]))
        return attrs


def serialize_rds(obj: Any) -> bytes:
    """Serialise ``obj`` to uncompressed R XDR (format 3) bytes, as ``serialize()`` does.

    Parameters
    ----------
    obj : object
        See :func:`write_rds`.

    Returns
    -------
    bytes
    """
    w = _Writer()
    w.parts.append(b"X\n")
    w.int(3)
    w.int(0x040203)  # written by "R 4.2.3"
    w.int(0x030500)  # readable by R >= 3.5.0
    w.int(5)
    w.parts.append(b"UTF-8")
    w.obj(obj)
    return b"".join(w.parts)


def write_rds(path: str | os.PathLike, obj: Any, compress: bool = True) -> Path:
    """Write ``obj`` as an R-readable ``.rds`` file, atomically (temp file + rename).

    Parameters
    ----------
    path : str or path-like
        Target file; its folder is created when missing.
    obj : object
        ``dict`` (named list; an :class:`RList` adds its class), ``list``/``tuple``
        (unnamed list), ``pandas.DataFrame`` (numeric matrix with dimnames; a default
        ``RangeIndex`` side has no names; a DataFrame whose ``attrs["r_class"]`` holds
        ``"data.frame"`` is written as an R data.frame of that class, one column each), ``pandas.Series`` (named vector),
        ``numpy.ndarray`` (vector, or matrix/array without dimnames), :class:`RArray`
        (array with dimnames), ``pandas.Categorical`` (factor), Python scalars
        (length-1 vectors), ``str`` (character scalar), ``None`` (NULL).
    compress : bool
        gzip the stream (R's default for ``saveRDS``).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    data = serialize_rds(obj)
    with atomic_path(path) as tmp:
        if compress:
            # no name, mtime=0: identical objects give identical bytes
            with open(tmp, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as gz:
                gz.write(data)
        else:
            tmp.write_bytes(data)
    return path
