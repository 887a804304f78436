"""One-line error messages from exceptions whose text can run over several lines or be empty."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an error's message (Hydra, torch and pickle append hints and stack
    notes on later lines), or the error type's name when the message is empty."""
    return (str(err).splitlines() or [type(err).__name__])[0]
