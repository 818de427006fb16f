"""The built wheel, installed away from the source tree, runs the protocol (issue 9).

The wheel is built offline from a copy of the package files (no build isolation: the
set-up venv holds setuptools from the lock), installed with ``--no-deps`` into a fresh
venv that sees the test venv's third-party packages through a ``.pth`` line (not its
editable mashlib: ``.pth`` files inside that folder are not processed), and run from a
folder outside the checkout, so only the wheel's files can be imported.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sh(args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (in requirements.lock)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "mashlib", src / "mashlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
             "-w", tmp / "dist", src])
    assert "SetuptoolsDeprecationWarning" not in r.stdout + r.stderr  # SPDX license, license-files
    (whl,) = (tmp / "dist").glob("mashlib-*.whl")
    venv = tmp / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv])
    vpy = venv / "bin" / "python"
    purelib = Path(_sh([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_mashlib_test_deps.pth").write_text("\n".join(sorted(here)) + "\n")
    _sh([sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index", whl])
    _sh([vpy, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MASHLIB_NOTEBOOKS", "VIRTUAL_ENV")}
    env.update(JUPYTER_PATH=str(venv / "share" / "jupyter"), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    return {"venv": venv, "whl": whl, "env": env, "cwd": tmp}


@pytest.mark.slow
def test_wheel_contents(wheel_venv):
    import zipfile
    names = zipfile.ZipFile(wheel_venv["whl"]).namelist()
    assert "mashlib/protocol/notebooks/mixture_prior.ipynb" in names
    assert "mashlib/protocol/notebooks/mash_fit.ipynb" in names
    assert not any("build_notebooks" in n for n in names)        # a dev tool, not shipped
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel_venv["whl"]).read(meta).decode()
    assert "License-Expression: BSD-3-Clause" in text


@pytest.mark.slow
def test_installed_wheel_runs_a_workflow_through_papermill(wheel_venv, protocol_fixture):
    venv, env, cwd = wheel_venv["venv"], wheel_venv["env"], wheel_venv["cwd"]
    where = _sh([venv / "bin" / "python", "-c", "import mashlib; print(mashlib.__file__)"], cwd=cwd, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout      # the wheel, not the checkout
    r = _sh([venv / "bin" / "mashlib", "run", "mixture_prior", "-h"], cwd=cwd, env=env)
    assert "ed_bovy" in r.stdout and "--mixture-components" in r.stdout
    out = cwd / "out"
    r = _sh([venv / "bin" / "mashlib", "run", "mixture_prior", "canonical", "--data", protocol_fixture,
             "--output-prefix", "fx", "--cwd", out], cwd=cwd, env=env)
    assert (out / "fx.canonical.rds").is_file() and (out / "fx.canonical.rds.json").is_file()
    assert (out / "fx.canonical.ipynb").is_file()          # executed by papermill
    import nbformat
    nb = nbformat.read(str(out / "fx.canonical.ipynb"), as_version=4)
    assert nb.metadata["papermill"]["exception"] is None or nb.metadata["papermill"]["exception"] is False
