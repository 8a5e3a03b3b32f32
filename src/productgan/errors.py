"""The one exception type for problems a user can fix."""


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
