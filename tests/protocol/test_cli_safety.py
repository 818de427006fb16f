"""Issue 10, items 5-6 and the command-line part of the unclear-error list: effect model,
non-prior files, unwritable --cwd, write_rds under a file, Ctrl-C, stale temporaries and
the partly executed notebook of a failed cell."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from mashlib import MashInputError, protocol
from mashlib.cli import main
from mashlib.io import write_rds
from mashlib.plots import plot_U


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)


# ----------------------------------------------------------------------------- item 5
def test_effect_model_only_ee_or_ez(capsys, tmp_path, protocol_fixture):
    rc, _, err = _run(capsys, "run", "mixture_prior", "canonical", "--data", str(protocol_fixture),
                      "--effect-model", "XZ", "--cwd", str(tmp_path / "o"), "--no-notebook")
    _one_line_error(rc, err, "--effect-model", "'XZ'", "EE", "EZ")
    assert not (tmp_path / "o").exists()                 # main: ran as EE, wrote *.EE.* files
    p = protocol.check_inputs("mixture_prior", "canonical",
                              {"data": str(protocol_fixture), "effect_model": "ez", "cwd": str(tmp_path)})
    assert p["effect_model"] == "EZ"
    assert protocol.check_inputs("mixture_prior", "canonical", {"data": str(protocol_fixture),
                                 "effect_model": " ee ", "cwd": str(tmp_path)})["effect_model"] == "EE"


# ----------------------------------------------------------------------------- item 6
def test_plot_U_and_mash_fit_refuse_a_mashr_input_as_prior(capsys, tmp_path, protocol_fixture):
    rc, _, err = _run(capsys, "run", "mixture_prior", "plot_U", "--data", str(protocol_fixture),
                      "--cwd", str(tmp_path / "plots"), "--no-notebook")
    _one_line_error(rc, err, str(protocol_fixture), "is not a prior", "must have U", "strong.b")
    assert not (tmp_path / "plots").exists()            # main: exit 0, one panel "XtX w = 1"
    with pytest.raises(MashInputError, match="is not a prior"):
        plot_U(str(protocol_fixture))
    V = tmp_path / "V.rds"
    write_rds(V, np.eye(8))
    rc, _, err = _run(capsys, "run", "mash_fit", "mash", "--data", str(protocol_fixture),
                      "--vhat-data", str(V), "--prior-data", str(protocol_fixture),
                      "--cwd", str(tmp_path / "fit"), "--no-notebook")
    _one_line_error(rc, err, f"{protocol_fixture}: is not a prior", "U", "w")
    assert "NA/NaN/Inf" not in err


# ----------------------------------------------------------------------------- --cwd / write_rds
def test_cwd_regular_file_or_under_one(capsys, tmp_path, protocol_fixture):
    f = tmp_path / "afile"
    f.write_text("x")
    rc, _, err = _run(capsys, "run", "mixture_prior", "canonical", "--data", str(protocol_fixture),
                      "--cwd", str(f), "--no-notebook")
    _one_line_error(rc, err, f"--cwd {f}", "regular file")
    rc, _, err = _run(capsys, "run", "mixture_prior", "canonical", "--data", str(protocol_fixture),
                      "--cwd", str(f / "sub"), "--no-notebook")
    _one_line_error(rc, err, f"--cwd {f / 'sub'}", f"{f} is a regular file")
    assert f.read_text() == "x"


def _unwritable_dir(tmp_path):
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    try:                                  # root ignores permission bits: use a kernel file system
        fd, t = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(t)
    pytest.skip("no unwritable folder available to root here (/sys is writable)")


def test_cwd_not_writable(capsys, tmp_path, protocol_fixture):
    ro = _unwritable_dir(tmp_path)
    for cwd in (ro, ro / "new" / "deeper"):
        rc, _, err = _run(capsys, "run", "mixture_prior", "canonical", "--data", str(protocol_fixture),
                          "--cwd", str(cwd), "--no-notebook")
        _one_line_error(rc, err, f"--cwd {cwd}", "cannot write there")
        assert "Traceback" not in err


def test_write_rds_under_a_regular_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(MashInputError, match=r"afile is a regular file, not a folder") as e:
        write_rds(f / "x.rds", {"a": 1.0})
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- notebooks
def _notebook_dir(tmp_path, body: str) -> Path:
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (mashlib[notebooks])")
    pytest.importorskip("papermill", reason="needs papermill (mashlib[notebooks])")
    src = Path(__file__).resolve().parents[2] / "mashlib" / "protocol" / "notebooks" / "mixture_prior.ipynb"
    nb = nbformat.read(str(src), as_version=4)
    # the cell that computes the `canonical` step (what `mashlib run mixture_prior canonical` runs)
    (cell,) = [c for c in nb.cells if {"section:canonical", "compute"} <= set(c.metadata.get("tags", []))]
    cell.source = body
    d = tmp_path / "nbs"
    d.mkdir()
    nbformat.write(nb, str(d / "mixture_prior.ipynb"))
    return d


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_failed_cell_keeps_failed_notebook_and_stale_temporaries_cleaned(capsys, tmp_path,
                                                                         protocol_fixture, monkeypatch):
    nbs = _notebook_dir(tmp_path, "print('reached cell 3')\nraise ValueError('boom in cell 3')")
    monkeypatch.setenv("MASHLIB_NOTEBOOKS", str(nbs))
    cwd = tmp_path / "out"
    cwd.mkdir()
    dead = cwd / f".x.canonical.ipynb.{_dead_pid()}.k2j4h5g6.ipynb"        # a killed run's
    live = cwd / f".x.canonical.ipynb.{os.getpid()}.a1b2c3d4.tmp"          # a running one's
    old_style = cwd / ".x.canonical.ipynb.q9w8e7r6.ipynb"                    # older mashlib, 2 h old
    for p in (dead, live, old_style):
        p.write_text("{}")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    rc, _, err = _run(capsys, "run", "mixture_prior", "canonical", "--data", str(protocol_fixture),
                      "--cwd", str(cwd), "--output-prefix", "x")
    _one_line_error(rc, err, "boom in cell 3", "x.canonical.FAILED.ipynb")
    failed = cwd / "x.canonical.FAILED.ipynb"
    assert failed.is_file() and "reached cell 3" in failed.read_text()     # main: nothing kept
    assert not (cwd / "x.canonical.ipynb").exists()
    assert not dead.exists() and not old_style.exists() and live.exists()
    assert [p.name for p in cwd.glob(".x.canonical.ipynb.*")] == [live.name]
    from mashlib._atomic import clean_stale_temporaries
    assert clean_stale_temporaries(cwd / "x.canonical.ipynb") == []


def test_ctrl_c_prints_one_line(tmp_path, protocol_fixture):
    nbs = _notebook_dir(tmp_path, "import pathlib, time\npathlib.Path(cwd, 'started').write_text('1')\n"
                                  "time.sleep(120)")
    cwd = tmp_path / "out"
    cwd.mkdir()
    env = dict(os.environ, MASHLIB_NOTEBOOKS=str(nbs), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "mashlib", "run", "mixture_prior", "canonical", "--data",
                             str(protocol_fixture), "--cwd", str(cwd), "--output-prefix", "x"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        t0 = time.time()
        while not (cwd / "started").exists():
            assert time.time() - t0 < 90 and proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)                  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.decode() == "interrupted\n"                 # main: + a kernel traceback
    assert sorted(p.name for p in cwd.iterdir()) == ["started"]   # no temporary left behind
