"""Exception types shared by every mashlib module.

Every error raised on bad user input is a :class:`MashInputError`, a subclass
of :class:`ValueError`, whose message names (1) the argument, file or list
element, (2) the offending row / condition / component when there is one,
(3) what is wrong, and (4) what to do about it.
"""
from __future__ import annotations


class MashlibError(Exception):
    """Base class of all mashlib errors."""


class MashInputError(MashlibError, ValueError):
    """Bad input: the message names the argument/file, the problem and a remedy."""


class MashConvergenceWarning(UserWarning):
    """An iterative algorithm stopped at its iteration limit."""
