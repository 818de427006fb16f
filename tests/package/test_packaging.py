"""Packaging: pyproject.toml, environment.yml and requirements.lock describe one set (issue 9)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(req: str) -> str:
    return re.sub(r"^[A-Za-z0-9_.\-]+(\[[^\]]*\])?", "", req.strip()).replace(" ", "")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _all_requirements() -> dict[str, str]:
    proj = _pyproject()["project"]
    reqs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        reqs += extra
    out: dict[str, str] = {}
    for r in reqs:
        n, s = _name(r), _spec(r)
        assert out.get(n, s) == s, f"{n}: two different ranges in pyproject.toml ({out[n]} vs {s})"
        out[n] = s
    return out


def test_environment_yml_matches_pyproject():
    yaml = pytest.importorskip("yaml", reason="pyyaml (a papermill dependency) parses environment.yml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, {}
    for d in env["dependencies"]:
        if isinstance(d, dict):
            pip.update({_name(r): _spec(r) for r in d["pip"]})
        else:
            conda[_name(d)] = _spec(d)
    python = conda.pop("python")
    conda.pop("pip", None)
    want = _all_requirements()
    got = {**conda, **pip}
    assert got == want, f"environment.yml differs from pyproject.toml: {set(got.items()) ^ set(want.items())}"
    assert python == _pyproject()["project"]["requires-python"]


def test_lock_pins_every_requirement_within_its_range():
    from packaging.requirements import Requirement
    from packaging.version import Version
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            assert ver, f"requirements.lock: {line!r} is not an exact pin"
            pins[_name(name)] = Version(ver)
    for name, spec in _all_requirements().items():
        assert name in pins, f"requirements.lock lacks {name}"
        assert Requirement(f"{name}{spec}").specifier.contains(pins[name]), f"{name}=={pins[name]} outside {spec}"
    build = _pyproject()["build-system"]["requires"]
    for r in build:
        assert Requirement(r).specifier.contains(pins[_name(r)]), f"build requirement {r}: lock has {pins[_name(r)]}"
    assert "mashlib" not in pins


def test_spdx_license():
    proj = _pyproject()["project"]
    assert proj["license"] == "BSD-3-Clause" and proj["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith(("BSD 3-Clause", "Copyright")) or "Redistribution" in (
        ROOT / "LICENSE").read_text()


def test_make_uses_the_lock():
    mk = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements.lock" in mk
    for var in ("INSTALL", "PIPINSTALL"):            # uv, and pip when uv cannot be had
        line = next(ln for ln in mk.splitlines() if ln.startswith(f"{var} = "))
        assert "-c $(LOCK)" in line, line
    setup = mk[mk.index("$(STAMP):"):mk.index("venv: $(STAMP)")]
    assert "$(INSTALL) --no-build-isolation -e" in setup and "$(PIPINSTALL) --no-build-isolation -e" in setup
    assert "test-latest:" in mk and "test-latest" not in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
