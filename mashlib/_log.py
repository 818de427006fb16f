"""Logging for mashlib: one ``mashlib`` logger tree; ``verbose=True`` makes INFO records visible.

Library code never prints. Each module logs to ``logging.getLogger(__name__)`` (a child of
``mashlib``), so an application configures mashlib like any library::

    import logging
    logging.getLogger("mashlib").setLevel(logging.INFO)

A function called with ``verbose=True`` (R's ``verbose = TRUE``) logs its progress at INFO
through :func:`say`; when nothing in the program handles ``mashlib`` records, :func:`say`
attaches one handler that writes the bare message to the current ``sys.stdout`` (a notebook
cell's output, or the terminal), so ``verbose=True`` shows what R shows without any set-up.
"""
from __future__ import annotations

import logging
import sys

__all__ = ["get_logger", "say"]

_ROOT = logging.getLogger("mashlib")
_ROOT.addHandler(logging.NullHandler())


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of the record (pytest, Jupyter swap it)."""

    def __init__(self):
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property ignores it
        pass


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``__name__``), under ``mashlib``."""
    return logging.getLogger(name)


def _ensure_visible() -> None:
    configured = any(not isinstance(h, logging.NullHandler) for h in _ROOT.handlers) or logging.getLogger().handlers
    if not configured:
        _ROOT.addHandler(_StdoutHandler())
    if _ROOT.getEffectiveLevel() > logging.INFO:
        _ROOT.setLevel(logging.INFO)


def say(logger: logging.Logger, verbose, msg: str, *args) -> None:
    """Log ``msg % args`` at INFO when ``verbose`` is truthy (made visible, see module docstring), else at DEBUG."""
    if verbose:
        _ensure_visible()
        logger.info(msg, *args)
    else:
        logger.debug(msg, *args)
