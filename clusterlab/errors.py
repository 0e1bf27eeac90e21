"""Errors that end a command with a clear message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file); exits with status 2."""

    exit_status = 2


class BuildError(Exception):
    """A build step failed; exits with status 1."""

    exit_status = 1


LIMIT = 60  # characters of a user's value shown in a message


def shown(value, limit: int = LIMIT) -> str:
    """A value for a one-line message: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to turn into text
        text = f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return text[:limit] + "…" if len(text) > limit else text


def plain(text: str, limit: int = LIMIT) -> str:
    """Text the user typed (an argument, a path), as typed when it is short and printable."""
    return text if len(text) <= limit and text.isprintable() else shown(text, limit)
