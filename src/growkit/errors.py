"""The one exception growkit raises on purpose."""


class GrowkitError(ValueError):
    """A problem with the user's input or files, stated with its fix.

    Every error growkit raises deliberately is a ``GrowkitError``; the CLI prints its message on one
    line (no traceback) and exits with status 2. Anything else escaping growkit is a bug.
    """


class GrowkitWarning(UserWarning):
    """Something growkit recovered from on its own (a damaged checkpoint skipped, a non-finite step
    skipped): the run goes on, but the user should know."""
