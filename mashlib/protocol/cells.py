"""What a workflow notebook's cells call: :func:`prepare` (the setup cell) and :func:`step`.

A section of a workflow notebook computes one step in a few lines::

    s = protocol.step("pca", p)              # outputs, skip-if-up-to-date, producers
    if s.needed:
        inp, data = protocol.strong_data(p)  # the strong set, read the protocol's way
        U = ml.cov_pca(data, p.npc)       # the engine call
        s.save(protocol.with_dimnames(U, inp.conditions))   # RDS + sidecar, atomically

The library keeps file naming, sidecars and chaining (:mod:`mashlib.protocol.chain`):
:func:`step` resolves the outputs, runs a missing producer first, decides whether the
step is up to date (and says why it reruns), and prints one line when the step starts
and one when it ends, with the elapsed time. :meth:`StepRun.progress` forwards the
engine's iteration lines (ED / udr iterations with their log-likelihood, mash phases,
flash factors) at most one every two seconds.

Notebook defaults (``data`` empty) run the shipped example: outputs go to
``<checkout>/output/<notebook>``, ``mash_fit`` uses the prior of the last
``mixture_prior`` run there (or the shipped one), and when those folders hold results
made with other inputs or parameters the run writes to ``output/scratch/<notebook>``
instead of overwriting them.
"""
from __future__ import annotations

import contextlib
import io
import linecache
import sys
import time
from pathlib import Path
from typing import Callable

from .._errors import MashInputError
from . import naming
from .chain import (STEPS, check_inputs, code_digest, missing_message, plan_resolved, why_rerun, workflow_steps,
                    write_sidecar)
from .params import PARAMS

__all__ = ["Params", "StepRun", "prepare", "step", "as_params", "example_params", "run_step", "run_workflow"]

#: the shipped example (a source checkout's input/mash) that empty ``data`` stands for
EXAMPLE = {
    "mixture_prior": {"data": "protocol_example.mashr_input.rds", "output_prefix": "protocol_example"},
    "mash_fit": {"data": "protocol_example.EE.mash.rds", "vhat_data": "protocol_example.{EM}.V_simple.rds",
                 "prior_data": "protocol_example.{EM}.prior.rds", "output_prefix": "protocol_example_mash"},
}


class Params(dict):
    """The resolved parameters of one run and its state.

    The values are those of the notebook's frozen :class:`~mashlib.protocol.params.Options`
    (from :func:`~mashlib.protocol.resolve_params`), readable as attributes (``p.npc``) or
    items; the attributes below are the run's own state.

    Attributes
    ----------
    notebook, workflow : str
    plan : list of str
        The steps of the workflow, producers first.
    log : callable
        Receives the progress lines (``print`` by default).
    example : bool
        The notebook defaults (``data`` empty) chose the shipped example.
    checked : set of str
        Steps already run or found up to date in this run.
    """

    def __init__(self, values: dict, notebook: str, workflow: str | None, plan: list[str],
                 log: Callable[[str], None] | None = print, example: bool = False,
                 interactive: bool = False):
        super().__init__(values)
        self.notebook, self.workflow, self.plan = notebook, workflow, list(plan)
        self.log = log or print
        self.example, self.interactive = example, interactive
        self.checked: set[str] = set()

    def __getattr__(self, name):
        # the parameters read as attributes, as on the resolved Options (p.effect_model)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no parameter or attribute {name!r}") from None

    @property
    def alpha(self) -> float:
        """0 for EE, 1 for EZ."""
        return naming.alpha_of(self["effect_model"])

    @property
    def memory_bytes(self) -> int:
        """Working-block budget of the likelihood / posterior computations: a quarter of
        ``mem`` (at least 16 MB), the library default 256 MiB when ``mem`` is empty."""
        from ..model import DEFAULT_MEMORY_BYTES
        if not self.get("mem"):
            return DEFAULT_MEMORY_BYTES
        from ..stream import parse_memory
        return max(16 * 2 ** 20, parse_memory(self["mem"]) // 4)

    def threads(self):
        """Context: BLAS threads = ``numThreads`` (0 leaves them as they are)."""
        from .._blas import blas_threads
        n = int(self.get("numThreads") or 0)
        return blas_threads(n if n > 0 else None)


def as_params(notebook: str, p, log=None) -> Params:
    """``p`` if it is a :class:`Params`, else a Params around the dict ``p`` (no plan yet)."""
    if isinstance(p, Params):
        if log is not None:
            p.log = log
        return p
    return Params(p, notebook, None, [], log=log or print)


# --------------------------------------------------------------------------- the setup cell


def example_params(notebook: str, given: dict) -> tuple[dict, list[str]]:
    """Fill the shipped example for empty ``data``; returns (params, notes on what was chosen)."""
    from .locate import repo_root
    root = repo_root()
    ex = root / "input" / "mash"
    if not (ex / EXAMPLE[notebook]["data"]).is_file():
        raise MashInputError(f"data is empty and there is no shipped example here ({ex} holds it in a "
                             "source checkout); set data = '<your mashr input RDS>'")
    em = naming.effect_model(given.get("effect_model", "EE"))
    out = dict(given)
    notes = []
    out["data"] = str(ex / EXAMPLE[notebook]["data"])
    notes.append("data: the shipped example (input/mash)")
    if not out.get("output_prefix"):
        out["output_prefix"] = EXAMPLE[notebook]["output_prefix"]
    default_cwd = next(s.default for s in PARAMS[notebook] if s.name == "cwd")
    if out.get("cwd", default_cwd) == default_cwd:
        out["cwd"] = str(root / "output" / notebook)
    if notebook == "mash_fit":
        if not out.get("vhat_data"):
            out["vhat_data"] = str(ex / EXAMPLE[notebook]["vhat_data"].format(EM=em))
            notes.append("V: the shipped example's V_simple")
        if not out.get("prior_data"):
            last = root / "output" / "mixture_prior" / f"protocol_example.{em}.prior.rds"
            if last.is_file():
                out["prior_data"] = str(last)
                made = time.strftime("%Y-%m-%d %H:%M", time.localtime(last.stat().st_mtime))
                notes.append(f"prior: the last mixture_prior run (output/mixture_prior, {made})")
            else:
                out["prior_data"] = str(ex / EXAMPLE[notebook]["prior_data"].format(EM=em))
                notes.append("prior: the shipped example prior (no mixture_prior run in output/ yet)")
    return out, notes


def _conflicts(P: Params) -> list[tuple[str, str]]:
    """Steps of the plan whose existing outputs were made with other inputs/parameters/code."""
    from .nbcode import compute_source
    found = []
    for name in P.plan:
        st = STEPS[name]
        outs = st.outputs(P)
        if not all(o.is_file() for o in outs) or not naming.sidecar_of(outs[0]).is_file():
            continue
        ins = [path for path, _ in st.inputs(P)]
        if not all(i.is_file() for i in ins):
            continue
        why = why_rerun(st, P, ins, code_digest(compute_source(st.notebook, name)))
        if why:
            found.append((name, why))
    return found


def prepare(notebook: str, workflow: str, namespace: dict, log: Callable[[str], None] = print) -> Params:
    """The setup cell: collect the parameters from the notebook's namespace, resolve and check
    them, plan the steps of ``workflow``, and print what the run uses.

    With ``data`` empty (the notebook's defaults) the shipped example is used; its outputs
    never overwrite results made with other inputs or parameters (the run moves to
    ``output/scratch/<notebook>`` and says so).

    Returns
    -------
    Params
        The resolved parameters (a dict) with the plan; pass it to :func:`step`.
    """
    from .._version import __version__
    from .locate import repo_root
    names = [s.name for s in PARAMS[notebook]]
    given = {k: namespace[k] for k in names if k in namespace}
    example = not given.get("analysis_units" if notebook == "mash_posterior" else "data")
    notes: list[str] = []
    if example and notebook == "mash_posterior":   # a small model and four units from input/mash
        from .posterior_workflow import resolve_example
        given, notes = resolve_example(given), ["units: a small example built from the shipped input"]
    elif example:
        given, notes = example_params(notebook, given)
    p = check_inputs(notebook, workflow, given)
    # the steps: the workflow's plan, or the sections papermill was given (mashlib run injects
    # the plan it selected the cells for as ``_steps``)
    steps = list(namespace.get("_steps") or plan_resolved(notebook, workflow, p))
    bad = [s for s in steps if s not in STEPS or STEPS[s].notebook != notebook]
    if bad:
        raise MashInputError(f"_steps: {bad} are not steps of {notebook}")
    P = Params(p, notebook, workflow, steps, log=log, example=example,
               interactive=bool(namespace.get("interactive", False)))
    if example:
        clash = _conflicts(P)
        if clash:
            scratch = repo_root() / "output" / "scratch" / notebook
            name, why = clash[0]
            log(f"{P['cwd']} holds results made otherwise ({name}: {why}); the notebook defaults never "
                f"overwrite them, so this run writes to {scratch} (set cwd to choose the folder)")
            P["cwd"] = str(scratch)
    P.threads().__enter__()          # numThreads for the rest of this kernel / process
    log(f"mashlib {__version__} ({Path(__file__).resolve().parents[1]}) | {notebook} {workflow}: "
        + " -> ".join(P.plan))
    if notebook == "mash_posterior":
        log(f"units: {P['analysis_units']}" + (" (the example)" if example else ""))
        log(f"model: {P['mash_model']}")
    else:
        log(f"data: {P['data']}" + (" (the shipped example)" if example else ""))
    if notebook == "mash_fit":
        src = {n.split(":")[0]: n.split(": ", 1)[1] for n in notes if ":" in n}
        log(f"prior: {P['prior_data']}" + (f" ({src['prior']})" if "prior" in src else ""))
        log(f"V: {P['vhat_data']}" + (f" ({src['V']})" if "V" in src else ""))
    log(f"cwd: {P['cwd']}")
    if int(P.get("numThreads") or 0) > 0:
        log(f"BLAS threads: {int(P['numThreads'])}")
    return P


# --------------------------------------------------------------------------- a step


class _Throttle(io.TextIOBase):
    """A stdout that forwards complete lines, at most one every ``every`` seconds (and the last)."""

    def __init__(self, emit: Callable[[str], None], every: float):
        self.emit, self.every = emit, every
        self.buf, self.pending, self.t_last = "", None, -1e9

    def writable(self):
        return True

    def write(self, s: str) -> int:
        self.buf += s
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if not line.strip():
                continue
            now = time.perf_counter()
            if now - self.t_last >= self.every:
                self.emit(line.strip())
                self.t_last, self.pending = now, None
            else:
                self.pending = line.strip()
        return len(s)

    def finish(self):
        if self.buf.strip():
            self.pending = self.buf.strip()
        if self.pending:
            self.emit(self.pending)
        self.pending, self.buf = None, ""


class StepRun:
    """One step of a run, as :func:`step` returns it.

    Attributes
    ----------
    name : str
    needed : bool
        The step has to run (its reason in ``reason``); False when up to date or not part
        of the workflow (``skipped``).
    output, outputs : pathlib.Path, list of pathlib.Path
        Where the step writes (absolute paths, named as the SoS pipeline).
    inputs : list of pathlib.Path
    """

    def __init__(self, name: str, p: Params, code: str | None = None):
        if name not in STEPS:
            raise MashInputError(f"unknown step {name!r}; valid: {', '.join(STEPS)}")
        self.name, self.p, self.code = name, p, code
        spec = STEPS[name]
        self.spec = spec
        self.outputs = spec.outputs(p)
        self.output = self.outputs[0]
        self.needed = self.skipped = False
        self.reason: str | None = None
        self.inputs: list[Path] = []
        self._t0 = time.perf_counter()
        if p.plan and name not in p.plan:
            self.skipped = True
            p.log(f"[{name}] skipped: not a step of workflow {p.workflow} (set workflow = {name!r} to run it)")
            return
        for path, producer in spec.inputs(p):
            if producer is not None and producer not in p.checked:
                run_step(producer, p)          # its notebook cell, in-process (skips if up to date)
            if not path.is_file():
                raise MashInputError(missing_message(path, spec, p))
            self.inputs.append(path)
        self.reason = why_rerun(spec, p, self.inputs, code)
        p.checked.add(name)
        if self.reason is None:
            p.log(f"[{name}] up to date: {', '.join(str(o) for o in self.outputs)}")
            return
        self.needed = True
        if self.reason != "no output yet" and self.outputs[0].is_file():
            self.reason += "; overwrites the previous output"
        ins = ", ".join(i.name for i in self.inputs)
        p.log(f"[{name}] start ({self.reason}): {ins} -> {', '.join(o.name for o in self.outputs)}")
        self._t0 = time.perf_counter()

    def announce(self, text: str) -> None:
        """One progress line of this step (e.g. the size of a long computation before it starts)."""
        self.p.log(f"[{self.name}] {text}")

    @contextlib.contextmanager
    def progress(self, every: float = 2.0):
        """Forward what the engines print inside (``verbose=True``) as ``[step] ...`` lines,
        at most one every ``every`` seconds plus the last one.

        In a live JupyterLab (``interactive``) the lines drive a ``tqdm.auto`` bar instead:
        its counter follows the iteration number the engines print (ED, udr) and its text
        shows the latest line (the log-likelihood).
        """
        real = sys.stdout
        bar = None
        if self.p.interactive:
            try:
                from tqdm.auto import tqdm
                bar = tqdm(desc=f"[{self.name}]", unit=" it", file=real, leave=True)
            except Exception:  # pragma: no cover - no tqdm or no widgets: plain lines
                bar = None

        def emit(line):
            with contextlib.redirect_stdout(real):
                self.p.log(f"[{self.name}] {line}")

        def to_bar(line):
            import re
            m = re.search(r"(?:iteration|^)\s*(\d+)\b", line)
            if m:
                bar.n = int(m.group(1))
            bar.set_postfix_str(line[:90], refresh=True)
        t = _Throttle(emit if bar is None else to_bar, every if bar is None else 0.2)
        try:
            with contextlib.redirect_stdout(t):
                yield t
        finally:
            t.finish()
            if bar is not None:
                bar.close()

    def save(self, obj=None) -> list[Path]:
        """Write ``obj`` to the step's RDS output (atomically; an engine that wrote its own file,
        such as plot_U's PDF, passes nothing), then the sidecar; print the end line."""
        if not self.needed:
            raise MashInputError(f"[{self.name}] save() on a step that does not run (guard it with `if s.needed:`)")
        if self.output.suffix == ".rds":
            from ..io import write_rds
            Path(self.p.cwd).mkdir(parents=True, exist_ok=True)
            write_rds(self.output, obj)
        elif not self.output.is_file():
            raise MashInputError(f"[{self.name}] did not write {self.output}")
        dt = time.perf_counter() - self._t0
        write_sidecar(self.spec, self.p, self.inputs, self.outputs, dt, self.code)
        self.p.log(f"[{self.name}] wrote {', '.join(str(o) for o in self.outputs)} in {dt:.1f} s")
        self.needed = False
        return self.outputs


def _caller_code(depth: int = 2) -> str | None:
    """Source of the calling cell: IPython and :func:`~mashlib.protocol.nbcode.exec_step`
    register cells in :mod:`linecache`."""
    try:
        fname = sys._getframe(depth).f_code.co_filename
    except ValueError:  # pragma: no cover
        return None
    lines = linecache.getlines(fname)
    return "".join(lines) if lines else None


def step(name: str, p: Params) -> StepRun:
    """Start step ``name`` of the run ``p`` (see :class:`StepRun`): resolve its outputs, run a
    missing producer first, and decide whether it runs (``.needed``) or is up to date.

    The digest of the calling cell's code is part of the step's signature, so editing the
    cell in JupyterLab reruns the step (and says so).
    """
    if not isinstance(p, Params):
        raise MashInputError("step(name, p): p must be the Params returned by protocol.prepare(...)")
    return StepRun(name, p, code_digest(_caller_code()))


# --------------------------------------------------------------------------- running


def run_step(name: str, p, notebook: str | None = None, log: Callable[[str], None] | None = None):
    """Run step ``name`` in-process: the code cell of its notebook section, which skips the
    step when it is up to date (and runs missing producers first). Returns its outputs."""
    from .nbcode import exec_step
    step = STEPS[name]
    p = as_params(step.notebook if notebook is None else notebook, p, log=log)
    if name not in p.plan:
        p.plan.append(name)
    exec_step(step.notebook, name, p)
    return step.outputs(p)


def run_workflow(notebook: str, workflow: str, log: Callable[[str], None] = print, **params) -> list[Path]:
    """Run a protocol workflow in-process: ``run_workflow("mixture_prior", "ed_bovy", data=..., cwd=...)``.

    Executes, in dependency order, the code cells of the workflow's sections of the
    notebook (the same code ``mashlib run`` executes with papermill), skipping steps
    that are up to date.

    Parameters
    ----------
    notebook : {"mixture_prior", "mash_fit"}
    workflow : str
        One of :data:`mashlib.protocol.params.WORKFLOWS` ``[notebook]``.
    log : callable
        Receives the progress lines: one when a step starts (with the reason it runs)
        and one when it ends (with the elapsed time), or one ``up to date`` line.
    **params
        Notebook parameters (see :mod:`mashlib.protocol.params`); missing ones take the
        protocol defaults.

    Returns
    -------
    list of pathlib.Path
        The outputs of the workflow's own steps (not of the producers it ran).
    """
    from .nbcode import exec_step
    p = check_inputs(notebook, workflow, params)
    P = Params(p, notebook, workflow, plan_resolved(notebook, workflow, p), log=log)
    with P.threads():
        for name in P.plan:
            if name not in P.checked:
                exec_step(STEPS[name].notebook, name, P)
    outs: list[Path] = []
    for name in workflow_steps(notebook, workflow, p):
        outs += STEPS[name].outputs(p)
    return outs
