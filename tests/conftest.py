"""Shared pytest fixtures (kept minimal): paths of the reference data."""
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/data/reference`` (R outputs; see its MANIFEST.md)."""
    return DATA / "reference"


@pytest.fixture(scope="session")
def protocol_fixture(reference_dir) -> Path:
    """The xqtl-protocol test fixture: 8 conditions, 17 strong / 50 random / 50 null rows."""
    return reference_dir / "golden" / "mashr_input_fixture.rds"


@pytest.fixture
def mashlib_log(caplog):
    """What mashlib logged (INFO and above) since the last call: what ``verbose=True`` shows a user."""
    import logging

    caplog.set_level(logging.INFO, logger="mashlib")

    def read() -> str:
        text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mashlib"))
        caplog.clear()
        return text + ("\n" if text else "")

    return read
