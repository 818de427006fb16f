"""Reading and writing R data: RDS files (``rds``) and the mashr input list (``mashr_input``).

``read_rds`` / ``write_rds`` turn R objects into Python ones and back (named list -> dict,
matrix with dimnames -> DataFrame); ``read_mashr_input`` reads the protocol's
``strong/random/null`` input (map §1.0).
"""
from .mashr_input import (EffectSet, MashrInput, mashr_input_from_dict, preprocess_matrices,
                          read_mashr_input, write_mashr_input)
from .mashr_input import __all__ as _mashr_all
from .rds import RArray, RList, read_rds, serialize_rds, write_rds
from .rds import __all__ as _rds_all

__all__ = [*_rds_all, *_mashr_all]
