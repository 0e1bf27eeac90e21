"""Errors that end a command with a clear message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file); exits with status 2."""

    exit_status = 2


class BuildError(Exception):
    """A build step failed; exits with status 1."""

    exit_status = 1
