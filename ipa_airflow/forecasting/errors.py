"""The error every load source raises: what was wrong with the load, said so a person can fix it."""

from __future__ import annotations


class LoadSourceError(RuntimeError):
    """The load could not be read; the message says from where and what to do."""
