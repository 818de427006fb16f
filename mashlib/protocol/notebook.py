"""Where the notebooks are, their ``parameters`` cell, and papermill execution.

``mashlib run NOTEBOOK WORKFLOW`` hands papermill the workflow notebook cut down to the
sections the workflow needs (:func:`mashlib.protocol.nbcode.select`), streams the
kernel's output (one line per step start and end, the engines' progress) to the
terminal, runs the kernel with matplotlib's inline backend so the executed notebook
keeps its figures, and keeps the executed copy next to the outputs.
"""
from __future__ import annotations

import ast
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from .._atomic import atomic_path, clean_stale_temporaries
from .._errors import MashInputError
from .locate import CHECKOUT_NOTEBOOKS, notebook_dir, notebook_path, repo_root

__all__ = ["notebook_dir", "notebook_path", "read_parameters_cell", "execute_notebook", "run_notebook",
           "run_notebooks", "repo_root", "CHECKOUT_NOTEBOOKS"]


def read_parameters_cell(path) -> list[tuple[str, Any, str]]:
    """Parse the ``parameters`` cell: ``[(name, default, help text from the # comment)]``."""
    import json
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cell = next((c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise MashInputError(f"{path}: no cell tagged 'parameters'")
    out = []
    src = cell["source"]
    for line in ("".join(src) if isinstance(src, list) else src).splitlines():
        code, _, comment = line.partition("#")
        if "=" not in code or line.lstrip().startswith("#"):
            continue
        name, _, value = code.partition("=")
        try:
            default = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            default = value.strip()
        out.append((name.strip(), default, comment.strip()))
    return out


@contextlib.contextmanager
def _kernel_env(parameters: dict):
    """Environment the kernel starts with: matplotlib's inline backend (figures stay in the
    executed notebook, whatever ``MPLBACKEND`` the caller has) and, with ``numThreads``,
    that many BLAS threads from the first import of numpy on."""
    env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    n = int(parameters.get("numThreads") or 0)
    if n > 0:
        env.update({k: str(n) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def failed_copy(output_path) -> Path:
    """Where a run whose cell failed keeps its partly executed notebook:
    ``{prefix}.{workflow}.FAILED.ipynb`` beside ``output_path``."""
    output_path = Path(output_path)
    return output_path.with_name(f"{output_path.stem}.FAILED{output_path.suffix}")


@contextlib.contextmanager
def _kernel_stderr_captured():
    """Point file descriptor 2 at a temporary file while papermill runs.

    The kernel process inherits it: its log lines and, after a Ctrl-C, the tracebacks of a
    kernel whose parent went away (``ZMQError``, ``DeadKernelError``) do not reach the
    terminal. What was written is replayed on stderr when the run ends normally (success
    or a failed cell); after a Ctrl-C it is dropped, so the user sees one line.
    """
    import sys
    import tempfile
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):       # no real fd 2 (embedded interpreter)
        yield None
        return
    buf = tempfile.TemporaryFile()
    os.dup2(buf.fileno(), 2)
    interrupted = False
    # this process keeps streaming the cells' stderr (progress lines) to the real terminal
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield terminal
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        with contextlib.suppress(Exception):
            terminal.close()
        os.dup2(saved, 2)
        os.close(saved)
        if not interrupted:
            buf.seek(0)
            data = buf.read()
            if data:
                os.write(2, data)
        buf.close()


class _InternalParameterFilter:
    """Drops papermill's "Passed unknown parameter: _steps" warning: ``_steps`` (the plan a
    run selected the cells for) is injected on purpose and is not a user parameter."""

    def filter(self, record) -> bool:
        return "unknown parameter: _steps" not in record.getMessage()


def _quiet_internal_parameter() -> None:
    import logging
    pm_log = logging.getLogger("papermill")
    if not any(isinstance(f, _InternalParameterFilter) for f in pm_log.filters):
        pm_log.addFilter(_InternalParameterFilter())


def execute_notebook(notebook: str, parameters: dict, output_path, cwd=None, plan: list[str] | None = None,
                     quiet: bool = False, log_output=None) -> Path:
    """Run a notebook with papermill; keep the executed copy at ``output_path`` (atomically).

    Parameters
    ----------
    notebook : str
        Name or path of the notebook (see :func:`notebook_path`).
    parameters : dict
        Injected after the ``parameters`` cell.
    output_path : path
        Where the executed notebook is kept.
    cwd : path, optional
        Working folder of the kernel (default: the current one).
    plan : list of str, optional
        Keep only the common cells and these steps' sections (a workflow notebook run by
        ``mashlib run``); None runs every cell (the driver, the vignette).
    quiet : bool
        Do not stream the kernel's output (stdout/stderr) to this process's.
    log_output : ignored
        Kept for callers of older versions (the output is streamed unless ``quiet``).

    Temporaries of earlier runs of the same output that were killed are removed first
    (:func:`mashlib._atomic.clean_stale_temporaries`). When a cell fails, the partly
    executed notebook is kept as ``{prefix}.{workflow}.FAILED.ipynb`` (named in the error)
    so that one can see where it stopped; a later successful run removes it. The kernel's
    own stderr (log lines; after a Ctrl-C the tracebacks of a kernel whose parent went away)
    is held back and replayed only when the run ends normally, so Ctrl-C prints one line.

    Raises
    ------
    MashInputError
        With the notebook's own error message (one line) when a cell fails.
    """
    try:
        import nbformat
        import papermill as pm
    except ImportError:  # pragma: no cover - the notebooks extra is not installed
        raise MashInputError("papermill is not installed: pip install 'mashlib[notebooks]', "
                             "or run in-process with --no-notebook") from None
    src = notebook_path(notebook)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(output_path)
    failed = failed_copy(output_path)
    with atomic_path(output_path) as tmp:
        nb_tmp = tmp.with_suffix(".ipynb")
        src_tmp = tmp.with_suffix(".src.ipynb")
        try:
            if plan is not None:
                from .nbcode import select
                nbformat.write(nbformat.from_dict(select(nbformat.read(str(src), as_version=4), plan)),
                               str(src_tmp))
                src = src_tmp
                parameters = dict(parameters, _steps=list(plan))   # the kernel runs exactly these
                _quiet_internal_parameter()
            with _kernel_env(parameters), _kernel_stderr_captured() as terminal:
                pm.execute_notebook(str(src), str(nb_tmp), parameters=parameters, kernel_name="python3",
                                    cwd=str(cwd or os.getcwd()), progress_bar=False, log_output=False,
                                    stdout_file=None if quiet else sys.stdout,
                                    stderr_file=None if quiet else (terminal or sys.stderr),
                                    extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP warning
        except pm.PapermillExecutionError as exc:
            msg = str(exc.evalue).strip().splitlines()[0] if exc.evalue else exc.ename
            kept = ""
            if nb_tmp.is_file():
                os.replace(nb_tmp, failed)
                kept = f" (partly executed notebook: {failed})"
            raise MashInputError(f"{msg}{kept}") from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                nb_tmp.unlink()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                src_tmp.unlink()
        os.replace(nb_tmp, tmp)
    with contextlib.suppress(FileNotFoundError):
        failed.unlink()
    return output_path


def run_notebook(notebook: str, workflow: str, params: dict, quiet: bool = False) -> Path:
    """What ``mashlib run NOTEBOOK WORKFLOW`` does: check the parameters and inputs (one-line
    error, nothing written), plan the steps, and run the workflow notebook with papermill,
    keeping only the sections of those steps; the executed copy is kept at
    ``{cwd}/{prefix}.{workflow}.ipynb``. Returns that path."""
    from . import naming
    from .chain import check_inputs, plan_resolved
    p = check_inputs(notebook, workflow, params)
    steps = plan_resolved(notebook, workflow, p)
    out = naming.notebook_copy(p.cwd, p.output_prefix or notebook, workflow)
    Path(p.cwd).mkdir(parents=True, exist_ok=True)
    execute_notebook(notebook, dict(p, workflow=workflow, interactive=False), out, plan=steps, quiet=quiet)
    return out


# the child of run_notebooks: run_notebook in a fresh interpreter, result / error on its last line
_CHILD = """
import json, sys
from mashlib._errors import MashInputError
from mashlib.protocol.notebook import run_notebook
try:
    out = run_notebook(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), quiet=sys.argv[4] == "1")
except MashInputError as exc:
    print(f"\\x00error {exc}", flush=True)
    sys.exit(2)
print(f"\\x00done {out}", flush=True)
"""


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):     # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_notebooks(jobs, quiet: bool = False, parallel: int | None = None) -> list[tuple[Path, float]]:
    """Run independent workflow notebooks side by side, each as ``mashlib run`` would.

    Steps that do not read each other's outputs (the driver's ``mash`` fit and ``plot_U``
    both read the prior of ``ed_bovy``, not each other) need not wait for each other:
    each job runs :func:`run_notebook` in its own Python process (papermill and its
    kernel are per-process: the kernel's environment and file descriptors cannot be
    shared by two runs in one process), at most ``parallel`` at a time (default: the
    number of CPUs this process may use; 1 runs them one after the other in this
    process). Their output is streamed line by line as it comes, so the step lines of
    two jobs interleave.

    Parameters
    ----------
    jobs : list of (notebook, workflow, params)
        As for :func:`run_notebook`. Every job's parameters and inputs are checked before
        any job starts (one-line error, nothing run).
    quiet : bool
        Do not stream the notebooks' output.
    parallel : int, optional
        Most jobs at a time.

    Returns
    -------
    list of (Path, float)
        Per job, in the order given: the executed notebook and its wall seconds.

    Raises
    ------
    MashInputError
        The first failed job's one-line error, prefixed by its notebook and workflow, after
        the other running jobs have finished (their outputs are complete, never half-written).
    """
    import json
    import selectors
    import subprocess
    import time
    from .chain import check_inputs
    jobs = [(nb, wf, dict(params)) for nb, wf, params in jobs]
    for nb, wf, params in jobs:
        check_inputs(nb, wf, params)
    n = max(1, int(parallel if parallel is not None else _cpus()))
    if n == 1 or len(jobs) == 1:
        done = []
        for nb, wf, params in jobs:
            t0 = time.perf_counter()
            out = run_notebook(nb, wf, params, quiet=quiet)
            done.append((out, time.perf_counter() - t0))
        return done
    results: dict[int, tuple[Path, float]] = {}
    errors: dict[int, str] = {}
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    sel = selectors.DefaultSelector()
    pending = list(range(len(jobs)))

    partial: dict[int, bytes] = {}

    def start(k):
        nb, wf, params = jobs[k]
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, nb, wf, json.dumps(params, default=str),
                                 "1" if quiet else "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        running[k] = (proc, time.perf_counter())
        partial[k] = b""
        sel.register(proc.stdout, selectors.EVENT_READ, k)

    def line_in(k, raw: bytes):
        line = raw.decode("utf-8", "replace")
        if line.startswith("\x00done "):
            results[k] = (Path(line[6:].strip()), 0.0)
        elif line.startswith("\x00error "):
            errors[k] = line[7:].strip()
        elif not quiet:
            print(line, flush=True)

    try:
        while pending or running:
            while pending and len(running) < n:
                start(pending.pop(0))
            for key, _ in sel.select():
                k = key.data
                # raw reads (a buffered readline could hold complete lines back until more came)
                data = os.read(key.fileobj.fileno(), 65536)
                if data:
                    *lines, partial[k] = (partial[k] + data).split(b"\n")
                    for raw in lines:
                        line_in(k, raw)
                    continue
                if partial[k]:                            # end of output: the job has ended
                    line_in(k, partial[k])
                sel.unregister(key.fileobj)
                proc, t0 = running.pop(k)
                rc = proc.wait()
                key.fileobj.close()
                if k in results:
                    results[k] = (results[k][0], time.perf_counter() - t0)
                elif k not in errors:
                    errors[k] = f"the process running it ended with exit status {rc}"
    except BaseException:
        for proc, _ in running.values():
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc, _ in running.values():
            with contextlib.suppress(Exception):
                proc.wait(10)
        raise
    finally:
        sel.close()
    if errors:
        k = min(errors)
        raise MashInputError(f"{jobs[k][0]} {jobs[k][1]}: {errors[k]}")
    return [results[k] for k in range(len(jobs))]
