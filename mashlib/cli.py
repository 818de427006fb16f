"""Command line: ``mashlib run NOTEBOOK WORKFLOW [--options]`` and ``mashlib demo``.

``mashlib run X`` replaces ``sos run pipeline/X.ipynb``::

    {examples}

Options map ``--kebab-case`` to notebook parameters (``--output-prefix`` ->
``output_prefix``); booleans take ``--flag``/``--no-flag`` (or ``--flag true``); list
parameters take several values (``--mixture-components pca canonical``) or a comma
list.  The workflow notebook runs under papermill with only the sections the workflow
needs; its executed copy (figures included) is kept next to the outputs
(``{cwd}/{prefix}.{workflow}.ipynb``), and its progress (one line per step start and end,
with the elapsed time, and the engines' iterations) streams to the terminal (``--quiet``
silences it). ``--no-notebook`` runs the same cells in-process.  The SoS task options of
cluster wrappers are accepted: ``--numThreads`` (BLAS threads), ``--mem`` (memory
budget); ``--container``, ``--job-size`` and ``--walltime`` are ignored with a notice.
Errors in the input are reported in one line, exit status 2, and leave no output file
behind.  ``mashlib lab`` opens the notebooks in JupyterLab from a scratch copy.
"""
from __future__ import annotations

import difflib
import os
import sys
import time
from pathlib import Path

from ._errors import MashInputError

from .protocol.params import EXAMPLE_COMMANDS  # the protocol page's three commands

if __doc__:  # None under python -OO
    __doc__ = __doc__.replace("{examples}", EXAMPLE_COMMANDS.replace("\n", "\n    "))

__all__ = ["main", "parse_run_args", "run_help"]

_CLI_ONLY = {"no_notebook": "run in-process instead of through papermill (no executed notebook kept)",
             "quiet": "print only errors and the final line (no step progress)"}


def _notebook_name(token: str) -> str:
    from .protocol.params import PARAMS
    stem = Path(token).stem if token.endswith(".ipynb") else token
    if stem not in PARAMS:
        close = difflib.get_close_matches(stem, list(PARAMS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MashInputError(f"unknown notebook {token!r}{hint}; valid: {', '.join(PARAMS)}")
    return stem


def parse_run_args(notebook: str, argv: list[str]) -> tuple[str | None, dict, bool, bool, dict]:
    """Parse ``WORKFLOW --opt value ...`` -> (workflow, params, show_help, no_notebook, cli).

    ``cli`` holds the command-line-only flags: ``quiet`` and ``ignored`` (the SoS task
    options ``--container``, ``--job-size``, ``--walltime`` with their values).

    Raises
    ------
    MashInputError
        An unknown option (with the closest valid one), a missing value, or a second
        workflow name.
    """
    from .protocol.params import PARAMS, TASK_OPTIONS_IGNORED
    specs = {p.name: p for p in PARAMS[notebook]}
    valid_opts = [n.replace("_", "-") for n in specs] + ["no-notebook", "quiet"]
    workflow, params, show_help, no_nb = None, {}, False, False
    cli: dict = {"quiet": False, "ignored": {}}
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok in ("-h", "--help"):
            show_help = True
            continue
        if not tok.startswith("--"):
            if workflow is None:
                workflow = tok
                continue
            raise MashInputError(f"unexpected argument {tok!r} (the workflow is already {workflow!r}); "
                                 "options start with --")
        key, eq, inline = tok[2:].partition("=")
        name = key.replace("-", "_")
        if name == "no_notebook":
            no_nb = True
            continue
        if name == "quiet":
            cli["quiet"] = True
            continue
        if name in TASK_OPTIONS_IGNORED:
            if eq:
                cli["ignored"][name] = inline
            elif i < len(argv) and not argv[i].startswith("--"):
                cli["ignored"][name] = argv[i]
                i += 1
            else:
                raise MashInputError(f"option --{key} needs a value")
            continue
        negated = name.startswith("no_") and name[3:] in specs and isinstance(specs[name[3:]].default, bool)
        if negated:
            params[name[3:]] = False
            continue
        if name not in specs:
            close = difflib.get_close_matches(key, valid_opts, n=1, cutoff=0.5)
            hint = f"; did you mean --{close[0]}?" if close else ""
            raise MashInputError(f"unknown option --{key} for {notebook}{hint} "
                                 f"(see mashlib run {notebook} -h)")
        default = specs[name].default
        if isinstance(default, bool):
            if eq:
                params[name] = inline
            elif i < len(argv) and argv[i].lower() in ("true", "false"):
                params[name] = argv[i]
                i += 1
            else:
                params[name] = True
            continue
        if eq:
            values = [inline]
        else:
            values = []
            while i < len(argv) and not argv[i].startswith("--") and (isinstance(default, list) or not values):
                values.append(argv[i])
                i += 1
        if not values:
            raise MashInputError(f"option --{key} needs a value")
        params[name] = values if isinstance(default, list) else values[0]
    return workflow, params, show_help, no_nb, cli


def run_help(notebook: str) -> str:
    """Usage text: workflows and every parameter with default and help, from the notebook."""
    from .protocol.notebook import notebook_path, read_parameters_cell
    from .protocol.params import WORKFLOWS
    lines = [f"usage: mashlib run {notebook} WORKFLOW [options]", "", "Workflows:"]
    width = max(len(w) for w in WORKFLOWS[notebook])
    lines += [f"  {w:<{width}}  {d}" for w, d in WORKFLOWS[notebook].items()]
    lines += ["", "Parameters (from the notebook's parameters cell):"]
    for name, default, help_text in read_parameters_cell(notebook_path(notebook)):
        if name in ("workflow", "interactive"):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            flag = f"{flag}/--no-{name.replace('_', '-')}"
        lines.append(f"  {flag}  (default: {default!r})")
        if help_text:
            lines.append(f"      {help_text}")
    for name, text in _CLI_ONLY.items():
        lines.append(f"  --{name.replace('_', '-')}\n      {text}")
    lines.append("  --container, --job-size, --walltime\n      SoS task options of cluster wrappers: "
                 "accepted and ignored (mashlib runs the step here)")
    return "\n".join(lines)


def _run(argv: list[str]) -> int:
    from . import protocol
    from .protocol.notebook import run_notebook
    from .protocol.params import PARAMS, WORKFLOWS
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mashlib run NOTEBOOK WORKFLOW [options]\n\nnotebooks: "
              + ", ".join(f"{nb} ({', '.join(WORKFLOWS[nb])})" for nb in PARAMS)
              + "\n\nmashlib run NOTEBOOK -h lists a notebook's workflows and parameters")
        return 0
    notebook = _notebook_name(argv[0])
    workflow, params, show_help, no_nb, cli = parse_run_args(notebook, argv[1:])
    if show_help:
        print(run_help(notebook))
        return 0
    if cli["ignored"]:
        opts = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in cli["ignored"].items())
        print(f"note: {opts}: SoS task options, ignored (mashlib runs the step in this process)", file=sys.stderr)
    t0 = time.perf_counter()
    if no_nb:
        protocol.run_workflow(notebook, workflow, log=(lambda s: None) if cli["quiet"] else print, **params)
    else:
        out = run_notebook(notebook, workflow, params, quiet=cli["quiet"])
        print(f"executed notebook: {out}")
    print(f"{notebook} {workflow}: done in {time.perf_counter() - t0:.1f} s")
    return 0


def _demo(argv: list[str]) -> int:
    import argparse
    from .protocol.notebook import execute_notebook, repo_root
    ap = argparse.ArgumentParser(prog="mashlib demo",
                                 description="Run the MASH protocol driver notebook on the shipped example.")
    ap.add_argument("--output", default=str(repo_root() / "output"), help="output root (default: <repo>/output)")
    ap.add_argument("--input", default=str(repo_root() / "input" / "mash"), help="folder of protocol_example.* inputs")
    ap.add_argument("--quiet", action="store_true", help="no step progress")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(a.output) / "mash_protocol.ipynb"
    Path(a.output).mkdir(parents=True, exist_ok=True)
    execute_notebook("mash_protocol", {"input_dir": a.input, "output_dir": a.output, "interactive": False}, out,
                     quiet=a.quiet)
    pdf = Path(a.output) / "mixture_prior" / "protocol_example.EE.prior.pdf"
    post = Path(a.output) / "mash_fit" / "protocol_example_mash.EE.posterior.rds"
    print(f"executed notebook: {out}\nprior heatmaps:    {pdf}\nposterior:         {post}\n"
          f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def lab_workspace(dest=None) -> Path:
    """A scratch copy of the four notebooks (``<checkout>/lab``, git-ignored) for JupyterLab.

    Notebooks run there do not modify the tracked ones (their outputs stay in the copy).
    A copy the user has changed is kept; a missing one is copied afresh.
    """
    import shutil
    from .protocol.notebook import notebook_path, repo_root
    from .protocol.params import PARAMS
    dest = Path(dest) if dest else repo_root() / "lab"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("mash_protocol", *PARAMS, "multivariate_mixture_vignette"):
        try:
            src = notebook_path(name)
        except MashInputError:
            continue
        if not (dest / src.name).exists():
            shutil.copyfile(src, dest / src.name)
    return dest


def _lab(argv: list[str]) -> int:
    """``mashlib lab [--dir DIR] [jupyter options]``: JupyterLab on a scratch copy of the notebooks.

    As root (containers) it passes ``--allow-root``, which JupyterLab otherwise demands.
    """
    import shutil
    import subprocess
    rest, folder = list(argv), None
    if "--dir" in rest:
        k = rest.index("--dir")
        if k + 1 >= len(rest):
            raise MashInputError("option --dir needs a value")
        folder = rest[k + 1]
        del rest[k:k + 2]
    dest = lab_workspace(folder)
    exe = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if exe is None:
        raise MashInputError("JupyterLab is not installed: pip install 'mashlib[lab]' (or make lab)")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = [exe, "lab", f"--notebook-dir={dest}"] + (["--allow-root"] if root else []) + rest
    print(f"notebooks: {dest} (a scratch copy: running them leaves the repository clean)")
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mashlib`` command (and ``python -m mashlib``)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: mashlib run NOTEBOOK WORKFLOW [options]   (mashlib run NOTEBOOK -h for help)\n"
             "       mashlib demo [--output DIR] [--quiet]\n"
             "       mashlib lab [--dir DIR]                   (JupyterLab on a scratch copy of the notebooks)\n"
             "       mashlib simulate protocol-example --out input/mash")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    cmd, rest = argv[0], argv[1:]
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        if cmd == "run":
            return _run(rest)
        if cmd == "demo":
            return _demo(rest)
        if cmd == "lab":
            return _lab(rest)
        if cmd == "simulate":
            from .protocol.simulate import main as sim_main
            return sim_main(rest)
        close = difflib.get_close_matches(cmd, ["run", "demo", "lab", "simulate"], n=1)
        raise MashInputError(f"unknown command {cmd!r}" + (f"; did you mean {close[0]}?" if close else "")
                             + "; commands: run, demo, lab, simulate (mashlib -h)")
    except MashInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        if from_command_line:
            _silence_stderr()
        return 130


def _silence_stderr() -> None:
    """After the one 'interrupted' line, send whatever interpreter shutdown would still print
    (asyncio tasks of a dead kernel, ``Exception ignored in ...``) to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = open(os.devnull, "w")
    except OSError:  # pragma: no cover
        pass
