"""The one exception type users see: a clear one-line message, exit status 2 in the CLI."""


class UnihamError(Exception):
    """Bad input or a failed calculation, explained in one line for a person."""
