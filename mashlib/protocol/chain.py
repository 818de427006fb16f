"""Step chaining as in SoS: run missing producers first, skip steps that are up to date.

A step is *up to date* when all its outputs exist and its signature holds: the JSON
sidecar of its first output records the same step parameters, inputs with the same
content (sha256) and the outputs as they are now.  An output without a sidecar (made
outside mashlib) is up to date when it is newer than every input (the make rule).
Content signatures, as SoS's, also skip a step whose input was rewritten unchanged,
or given under another path with the same content.
A step whose input is missing runs the step that produces that input first (into the
same ``cwd``), so ``ed_bovy`` with the defaults runs ``flash``, ``flash_nonneg``,
``pca``, ``canonical`` and ``vhat_simple`` before itself.  Every output is written
atomically, with a sidecar ``<output>.json`` (mashlib version, step, parameters,
sha256 of the inputs and outputs).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from .._atomic import atomic_path
from .._errors import MashInputError
from .._validation import check_writable_dir
from . import naming, steps
from .params import PARAMS, WORKFLOWS, defaults

__all__ = ["Step", "STEPS", "resolve_params", "plan", "run_workflow", "check_inputs"]


@dataclasses.dataclass(frozen=True)
class Step:
    """One SoS step: its outputs, its inputs (with the step producing each), its parameters."""

    name: str
    outputs: Callable[[dict], list[Path]]
    inputs: Callable[[dict], list[tuple[Path, str | None]]]
    params: tuple[str, ...]
    compute: Callable[..., dict]


def _prefix(p):
    return naming.prefix_of(p["data"], p["output_prefix"])


def _comp_step(c):
    return Step(c, lambda p, c=c: [naming.component_file(p["cwd"], _prefix(p), c)],
                lambda p: [(Path(p["data"]), None)], ("effect_model",) + (("npc",) if c == "pca" else ()),
                steps.STEP_COMPUTE[c])


def _vhat_step(method, extra=(), needs_prior=False):
    wf = naming.vhat_workflow(method)

    def inputs(p):
        ins = [(Path(p["data"]), None)]
        if needs_prior:
            ins.append((naming.prior_file(p["cwd"], _prefix(p), p["effect_model"]), "ed_bovy"))
        return ins
    return Step(wf, lambda p: [naming.vhat_file(p["cwd"], _prefix(p), p["effect_model"], method)],
                inputs, ("effect_model",) + tuple(extra), steps.STEP_COMPUTE[wf])


def _prior_step(name):
    def inputs(p):
        prefix = _prefix(p)
        ins = [(Path(p["data"]), None)]
        ins += [(naming.component_file(p["cwd"], prefix, c), c) for c in p["mixture_components"]]
        v = naming.vhat_method(p["vhat"])
        v = "simple" if v == "mle" else v
        ins.append((naming.vhat_file(p["cwd"], prefix, p["effect_model"], v), naming.vhat_workflow(v)))
        return ins
    extra = ("seed",) if name.startswith("ud") else ()
    return Step(name, lambda p: [naming.prior_file(p["cwd"], _prefix(p), p["effect_model"])], inputs,
                ("effect_model", "mixture_components") + extra, steps.STEP_COMPUTE[name])


def _mash_model(p):
    return naming.mash_model_file(p["cwd"], _prefix(p), p["effect_model"])


STEPS: dict[str, Step] = {c: _comp_step(c) for c in naming.COMPONENTS}
STEPS.update({
    "vhat_identity": _vhat_step("identity"),
    "vhat_simple": _vhat_step("simple"),
    "vhat_mle": _vhat_step("mle", ("n_subset", "max_iter", "seed"), needs_prior=True),
    "vhat_corshrink_xcondition": _vhat_step("vhat_corshrink_xcondition"),
    "vhat_simple_specific": _vhat_step("vhat_simple_specific"),
    "ud": _prior_step("ud"),
    "ud_unconstrained": _prior_step("ud_unconstrained"),
    "ed_bovy": _prior_step("ed_bovy"),
    "plot_U": Step("plot_U", lambda p: [naming.plot_file(p["cwd"], p["data"], p["name"])],
                   lambda p: [(Path(p["data"]), None)],
                   ("max_comp", "to_cor", "tol", "remove_label", "name"), steps.STEP_COMPUTE["plot_U"]),
    "mash_1": Step("mash_1", lambda p: [_mash_model(p)],
                   lambda p: [(Path(p["data"]), None), (Path(p["vhat_data"]), None),
                              (Path(p["prior_data"]), None)],
                   ("effect_model", "output_level"), steps.compute_mash_1),
    "mash_2": Step("mash_2", lambda p: [naming.posterior_file(p["cwd"], _prefix(p), p["effect_model"])],
                   lambda p: [(Path(p["data"]), None), (Path(p["vhat_data"]), None), (_mash_model(p), "mash_1")],
                   ("effect_model",), lambda p, out: steps.compute_mash_2(p, out, _mash_model(p))),
})


def _workflow_steps(notebook: str, workflow: str, p: dict) -> list[str]:
    if notebook == "mash_fit":
        return ["mash_1", "mash_2"] if p["compute_posterior"] else ["mash_1"]
    return [workflow]


# --------------------------------------------------------------------------- parameters


def _as_bool(name, v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "t", "1", "yes"):
        return True
    if isinstance(v, str) and v.lower() in ("false", "f", "0", "no"):
        return False
    raise MashInputError(f"--{name.replace('_', '-')}: expected true/false, got {v!r}")


def resolve_params(notebook: str, workflow: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults, check names and types, normalise values (``effect_model``, lists, paths).

    Raises
    ------
    MashInputError
        Unknown notebook, workflow or parameter; a value of the wrong type.
    """
    if notebook not in PARAMS:
        raise MashInputError(f"unknown notebook {notebook!r}; valid: {', '.join(PARAMS)}")
    valid = list(WORKFLOWS[notebook])
    if not workflow:
        raise MashInputError(f"{notebook}: no workflow given; choose one of: {', '.join(valid)}")
    if workflow not in valid:
        import difflib
        close = difflib.get_close_matches(str(workflow), valid, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MashInputError(f"{notebook}: unknown workflow {workflow!r}{hint}; valid: {', '.join(valid)}")
    p = defaults(notebook)
    unknown = [k for k in params if k not in p and k != "workflow"]
    if unknown:
        import difflib
        close = difflib.get_close_matches(unknown[0], list(p), n=1)
        hint = f" (did you mean --{close[0].replace('_', '-')}?)" if close else ""
        raise MashInputError(f"{notebook}: unknown parameter {unknown[0]!r}{hint}")
    p.update({k: v for k, v in params.items() if k != "workflow"})
    for spec in PARAMS[notebook]:
        v, d = p[spec.name], spec.default
        if isinstance(d, bool):
            p[spec.name] = _as_bool(spec.name, v)
        elif isinstance(d, int):
            try:
                p[spec.name] = int(v)
            except (TypeError, ValueError):
                raise MashInputError(f"--{spec.name.replace('_', '-')}: expected an integer, got {v!r}") from None
        elif isinstance(d, float):
            try:
                p[spec.name] = float(v)
            except (TypeError, ValueError):
                raise MashInputError(f"--{spec.name.replace('_', '-')}: expected a number, got {v!r}") from None
        elif isinstance(d, list):
            if isinstance(v, str):
                v = [x for x in v.replace(",", " ").split() if x]
            p[spec.name] = [str(x) for x in v]
        else:
            p[spec.name] = "" if v is None else str(v)
    if not p["data"]:
        raise MashInputError(f"{notebook} {workflow}: --data is required")
    p["effect_model"] = naming.effect_model(p["effect_model"])
    p["output_prefix"] = naming.prefix_of(p["data"], p["output_prefix"])
    if notebook == "mixture_prior":
        naming.vhat_method(p["vhat"])
        for c in p["mixture_components"]:
            if c not in naming.COMPONENTS:
                raise MashInputError(f"--mixture-components: unknown component {c!r}; valid: {', '.join(naming.COMPONENTS)}")
    else:
        for k in ("vhat_data", "prior_data"):
            if not p[k]:
                raise MashInputError(f"mash_fit: --{k.replace('_', '-')} is required (written by step 1, "
                                     f"mashlib run mixture_prior ed_bovy)")
    return p


# --------------------------------------------------------------------------- running


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _step_params(step: Step, p: dict) -> dict:
    return {k: _jsonable(p[k]) for k in step.params}


def _missing_message(path: Path, step: Step, p: dict) -> str:
    if step.name.startswith("mash") and str(path) in (str(p.get("prior_data")), str(p.get("vhat_data"))):
        what = "--prior-data" if str(path) == str(p.get("prior_data")) else "--vhat-data"
        producer = "ed_bovy (or ud)" if what == "--prior-data" else "vhat_simple (or another vhat_*; ed_bovy runs it)"
        return (f"{what} {path}: file not found; it is written by step 1, "
                f"`mashlib run mixture_prior {producer.split()[0]} --data <mashr input> --cwd <dir>` "
                f"({producer}): run step 1 first")
    if step.name == "plot_U" and str(path).endswith(".prior.rds"):
        return (f"--data {path}: file not found; the prior is written by step 1 "
                "(`mashlib run mixture_prior ed_bovy ...`): run it first")
    return f"--data {path}: file not found; check the path"


def check_inputs(notebook: str, workflow: str, params: dict) -> dict:
    """Resolve parameters and check the inputs that no step can produce; return the params.

    This is what the CLI calls before starting papermill, so that bad input fails fast
    with one line and writes nothing.
    """
    p = resolve_params(notebook, workflow, params)
    check_writable_dir(p["cwd"], "--cwd")
    for name in _workflow_steps(notebook, workflow, p):
        step = STEPS[name]
        for path, producer in step.inputs(p):
            if producer is None and not path.is_file():
                raise MashInputError(_missing_message(path, step, p))
    # a prior given by the user must be a prior (list(U, w)), not e.g. the mashr input
    if notebook == "mash_fit":
        steps.read_prior_U(p["prior_data"])
    elif workflow == "plot_U" and not p.get("name"):
        steps.read_prior_U(p["data"])
    return p


def _up_to_date(step: Step, p: dict, inputs: list[Path]) -> bool:
    """Outputs exist and match the step's signature (see the module docstring)."""
    outs = step.outputs(p)
    if not all(o.is_file() for o in outs):
        return False
    side = naming.sidecar_of(outs[0])
    if not side.is_file():  # a file made elsewhere: the SoS/make rule on mtimes
        newest_in = max((i.stat().st_mtime for i in inputs), default=0.0)
        return min(o.stat().st_mtime for o in outs) >= newest_in
    try:
        rec = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    if rec.get("parameters") != _step_params(step, p):
        return False
    # signature: the same parameters, inputs with the same content, outputs untouched
    if sorted(rec.get("inputs", {}).values()) != sorted(_sha256(i) for i in inputs):
        return False
    return all(rec.get("outputs", {}).get(str(o)) == _sha256(o) for o in outs)


def _write_outputs(results: dict, step: Step, p: dict, inputs: list[Path], t0: float,
                   notebook: str) -> None:
    from .._version import __version__
    from ..io import write_rds
    for out, obj in results.items():
        out = Path(out)
        if out.suffix == ".rds":
            write_rds(out, obj)
        elif not out.is_file():  # pragma: no cover - engines write non-RDS outputs themselves
            raise MashInputError(f"step {step.name} did not write {out}")
    first = Path(next(iter(results)))
    rec = {
        "mashlib_version": __version__,
        "notebook": notebook,
        "step": step.name,
        "parameters": _step_params(step, p),
        "all_parameters": {k: _jsonable(v) for k, v in p.items()},
        "inputs": {str(i): _sha256(i) for i in inputs},
        "outputs": {str(o): _sha256(Path(o)) for o in results},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    with atomic_path(naming.sidecar_of(first)) as tmp:
        tmp.write_text(json.dumps(rec, indent=1) + "\n")


def run_step(name: str, p: dict, notebook: str, log: Callable[[str], None] = print,
             _stack: tuple[str, ...] = ()) -> list[Path]:
    """Run one step after its producers, unless it is up to date; return its outputs."""
    step = STEPS[name]
    if name in _stack:  # pragma: no cover - the step graph is acyclic
        raise MashInputError(f"circular step dependency: {' -> '.join(_stack + (name,))}")
    inputs = []
    for path, producer in step.inputs(p):
        if producer is not None:
            run_step(producer, p, notebook, log, _stack + (name,))
        if not path.is_file():
            raise MashInputError(_missing_message(path, step, p))
        inputs.append(path)
    outs = step.outputs(p)
    if _up_to_date(step, p, inputs):
        log(f"[{name}] up to date: {', '.join(str(o) for o in outs)}")
        return outs
    t0 = time.perf_counter()
    Path(p["cwd"]).mkdir(parents=True, exist_ok=True)
    results = step.compute(p, *outs)
    _write_outputs(results, step, p, inputs, t0, notebook)
    log(f"[{name}] wrote {', '.join(str(o) for o in outs)} ({time.perf_counter() - t0:.1f} s)")
    return outs


def plan(notebook: str, workflow: str, params: dict) -> list[str]:
    """The steps ``workflow`` runs (producers first), without running them."""
    p = resolve_params(notebook, workflow, params)
    order: list[str] = []

    def visit(name):
        for path, producer in STEPS[name].inputs(p):
            if producer is not None:
                visit(producer)
        if name not in order:
            order.append(name)
    for s in _workflow_steps(notebook, workflow, p):
        visit(s)
    return order


def run_workflow(notebook: str, workflow: str, log: Callable[[str], None] = print, **params) -> list[Path]:
    """Run a protocol workflow: ``run_workflow("mixture_prior", "ed_bovy", data=..., cwd=...)``.

    Parameters
    ----------
    notebook : {"mixture_prior", "mash_fit"}
    workflow : str
        One of :data:`mashlib.protocol.params.WORKFLOWS` ``[notebook]``.
    log : callable
        Receives one line per step (``print`` by default).
    **params
        Notebook parameters (see :mod:`mashlib.protocol.params`); missing ones take the
        protocol defaults.

    Returns
    -------
    list of pathlib.Path
        The outputs of the workflow's own steps (not of the producers it ran).
    """
    p = check_inputs(notebook, workflow, params)
    outs: list[Path] = []
    for name in _workflow_steps(notebook, workflow, p):
        outs += run_step(name, p, notebook, log)
    return outs

