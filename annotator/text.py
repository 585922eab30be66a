"""What a text must be to be stored as PostgreSQL text."""

from __future__ import annotations


def unicode_problem(value: str) -> str | None:
    """What stops ``value`` from being stored as PostgreSQL text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None
