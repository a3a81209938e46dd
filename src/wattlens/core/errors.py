"""Errors wattlens raises on purpose.

`BadInput` is what the CLI turns into a one-line message and exit status 2: the user named
something wrong (a model, a length, a file). Everything else is a bug or an environment failure.
"""


class WattlensError(Exception):
    """Base class of every error wattlens raises deliberately."""


class BadInput(WattlensError):
    """The user asked for something invalid; the message names the bad value."""


class NotMeasured(WattlensError):
    """A quantity cannot be measured here (no NVIDIA GPU, no permission); the message says why."""


class SchemaTooNew(BadInput):
    """The results database was written by a newer wattlens schema than this one understands."""


class ClockControlRefused(BadInput):
    """Clock or power-limit control was asked for without the explicit opt-in (--allow-clock-control)."""


class ClockControlError(WattlensError):
    """A clock lock / power limit could not be applied, did not take (read-back), or was not permitted."""
