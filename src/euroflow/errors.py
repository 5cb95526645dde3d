"""One exception type for user-facing failures, and the one place that reports it.

Its message is a single line that names the file (and line or key) and what is wrong;
the CLI prints it and exits non-zero, without a traceback.
"""


import sys
from typing import Callable


class EuroflowError(Exception):
    """A failure caused by input or configuration, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def exit_status(command: Callable[[], int | None]) -> int:
    """Run a command-line entry: its exit status, or 1 after printing a EuroflowError as one line."""
    try:
        return command() or 0
    except EuroflowError as exc:
        print(f"euroflow: error: {exc}", file=sys.stderr)
        return 1
