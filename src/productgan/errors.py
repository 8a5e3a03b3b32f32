"""The one exception type for problems a user can fix, and how library errors are quoted in it."""


class ProductganError(Exception):
    """A problem with the user's input or environment, stated as one sentence with the fix.

    The CLI prints the message alone (no traceback unless ``--debug``) and exits with
    ``exit_code``: 2 for usage errors, 1 for failures.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(ProductganError, ValueError):
    """A wrong flag or value on the command line or in a config file."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


def first_line(error: BaseException, skip_headers: bool = False) -> str:
    """The informative line of a library error, for quoting in one sentence (``skip_headers``:
    past a header line ending in ':', as torch writes before the details); the type's name when
    the message is empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if skip_headers and len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return lines[0].rstrip(".") if lines else type(error).__name__
