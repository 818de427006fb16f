"""The workflow notebooks as code: their sections, cell selection and in-process execution.

A workflow notebook (``mashlib/protocol/notebooks/<notebook>.ipynb``) is laid out as the
SoS notebook it ports: a description, the ``parameters`` cell, a ``setup`` cell (imports
and :func:`mashlib.protocol.prepare`), then one section per step. Every cell of a
section carries the tag ``section:<step>``; the cell that computes the step also carries
``compute``. Cells without a section tag are common to every workflow.

* :func:`select` keeps the common cells and the sections of a plan, in the plan's
  (dependency) order: what ``mashlib run NOTEBOOK WORKFLOW`` hands to papermill, so the
  executed notebook holds only the chosen workflow and the steps it depends on.
* :func:`exec_step` runs one section's ``compute`` cell in-process (the setup cell's
  imports, then the cell): what :func:`mashlib.protocol.run_workflow`, ``--no-notebook``
  and a JupyterLab cell that needs a missing producer run. The notebook is therefore the
  single definition of each step, for papermill, JupyterLab and the Python API.

Notebooks are read as JSON (no nbformat needed to run in-process).
"""
from __future__ import annotations

import ast
import copy
import json
import linecache
from pathlib import Path

from .._errors import MashInputError

__all__ = ["TAG_SETUP", "TAG_COMPUTE", "SECTION", "load", "section_of", "source", "compute_source",
           "import_source", "select", "exec_step"]

TAG_SETUP = "setup"
TAG_COMPUTE = "compute"
SECTION = "section:"

_CACHE: dict[tuple[str, int], dict] = {}


def load(notebook: str) -> dict:
    """The notebook as a JSON dict (cached per file and modification time)."""
    from .locate import notebook_path
    path = notebook_path(notebook)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = json.loads(Path(path).read_text(encoding="utf-8"))
    return _CACHE[key]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def source(cell) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def section_of(cell) -> str | None:
    """The step whose section ``cell`` belongs to, or None for a common cell."""
    return next((t[len(SECTION):] for t in _tags(cell) if t.startswith(SECTION)), None)


def compute_source(notebook: str, step: str) -> str:
    """Source of the cell that computes ``step`` (tags ``section:<step>`` and ``compute``)."""
    for cell in load(notebook)["cells"]:
        if section_of(cell) == step and TAG_COMPUTE in _tags(cell):
            return source(cell)
    raise MashInputError(f"notebook {notebook}: no cell tagged '{SECTION}{step}' and '{TAG_COMPUTE}'")


def import_source(notebook: str) -> str:
    """The import statements of the ``setup`` cell (what the compute cells need)."""
    cell = next((c for c in load(notebook)["cells"] if TAG_SETUP in _tags(c)), None)
    if cell is None:
        raise MashInputError(f"notebook {notebook}: no cell tagged '{TAG_SETUP}'")
    src = source(cell)
    nodes = [n for n in ast.parse(src).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(ast.get_source_segment(src, n) for n in nodes)


def select(nb, plan: list[str]):
    """A copy of ``nb`` with the common cells and the sections of ``plan`` in plan order.

    Common cells before the first section stay in front, those after the last section
    stay at the end.
    """
    cells = nb["cells"]
    first = next((i for i, c in enumerate(cells) if section_of(c)), len(cells))
    last = max((i for i, c in enumerate(cells) if section_of(c)), default=len(cells) - 1)
    known = {section_of(c) for c in cells} - {None}
    unknown = [s for s in plan if s not in known]
    if unknown:
        raise MashInputError(f"the notebook has no section for step(s) {unknown}")
    head = [c for c in cells[:first] if not section_of(c)]
    tail = [c for c in cells[last + 1:] if not section_of(c)]
    body = [c for step in plan for c in cells if section_of(c) == step]
    out = copy.deepcopy(nb)
    out["cells"] = copy.deepcopy(head + body + tail)
    return out


def exec_step(notebook: str, step: str, p) -> dict:
    """Run the compute cell of ``step`` in-process with ``p`` (a :class:`~mashlib.protocol.cells.Params`).

    The cell is registered in :mod:`linecache` under a readable name, so tracebacks show
    its lines and :func:`mashlib.protocol.step` can take the digest of its code. Returns
    the namespace the cell ran in.
    """
    ns: dict = {"__name__": f"mashlib.protocol.notebooks.{notebook}"}
    exec(compile(import_source(notebook), f"<{notebook} setup>", "exec"), ns)
    ns["p"] = p
    src = compute_source(notebook, step)
    fname = f"<{notebook} notebook, section {step}>"
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
    exec(compile(src, fname, "exec"), ns)
    return ns
