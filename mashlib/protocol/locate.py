"""Where the notebooks are: the workflow notebooks in the package, the documents in a checkout."""
from __future__ import annotations

import os
from pathlib import Path

from .._errors import MashInputError
from .params import PARAMS

__all__ = ["repo_root", "CHECKOUT_NOTEBOOKS", "notebook_dir", "notebook_path"]


def repo_root() -> Path:
    """The source checkout holding ``notebooks/`` and ``input/`` (when mashlib is installed editable)."""
    return Path(__file__).resolve().parents[2]


#: notebooks that live in a source checkout only (documents, not protocol steps)
CHECKOUT_NOTEBOOKS = ("mash_protocol", "multivariate_mixture_vignette")


def notebook_dir() -> Path:
    """Folder of the workflow notebooks ``mashlib run`` executes.

    ``$MASHLIB_NOTEBOOKS`` when set, else the package data ``mashlib/protocol/notebooks``
    (found with :mod:`importlib.resources`, so an installed wheel finds them too).
    """
    if os.environ.get("MASHLIB_NOTEBOOKS"):
        return Path(os.environ["MASHLIB_NOTEBOOKS"])
    from importlib.resources import files
    return Path(str(files("mashlib.protocol") / "notebooks"))


def notebook_path(name: str) -> Path:
    """``mixture_prior``, ``pipeline/mixture_prior.ipynb`` or a path -> the notebook file.

    The workflow notebooks are package data; the driver ``mash_protocol`` and the vignette
    are documents of a source checkout (``<repo>/notebooks``).
    """
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p
    stem = p.stem if p.suffix == ".ipynb" else p.name
    folder = repo_root() / "notebooks" if stem in CHECKOUT_NOTEBOOKS else notebook_dir()
    cand = folder / f"{stem}.ipynb"
    if not cand.is_file():
        where = ("it is a document of the source checkout (notebooks/); clone the repository"
                 if stem in CHECKOUT_NOTEBOOKS else f"valid: {', '.join(PARAMS)}")
        raise MashInputError(f"notebook {name!r} not found (looked for {cand}); {where}")
    return cand
