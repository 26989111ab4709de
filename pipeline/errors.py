"""Typed errors: the library raises them with a clear message; only `cli/` turns them into an
exit code."""


class StylizeError(Exception):
    """Base class for every error a user can fix (bad input, bad settings, missing weights)."""


class InputError(StylizeError):
    """An input file is missing, unreadable or not what it claims to be."""


class OutputError(StylizeError):
    """An output cannot be written where asked (same as an input, unwritable folder, exists)."""


class WeightsError(StylizeError):
    """VGG-19 weights are missing, truncated, of the wrong architecture, or cannot be downloaded."""


class SettingsError(StylizeError):
    """A combination of settings that cannot work (unknown layer, blend weights that do not
    match)."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its type name), short enough for a one-line
    error."""
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__
