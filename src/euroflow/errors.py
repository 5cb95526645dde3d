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


# what to do about the errors a full, read-only or forbidden output place gives
_ADVICE = {
    "ENOSPC": "the file system is full: free space, or point the output elsewhere",
    "EDQUOT": "the disk quota is used up: free space, or point the output elsewhere",
    "EFBIG": "the file is larger than this file system or the process limit allows",
    "EROFS": "the file system is read-only: point the output at a writable place",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
}


def os_error_message(exc: OSError, path: object = None) -> str:
    """One line for an operating-system error: the path, what went wrong (with the errno's name)
    and, for a full, read-only or forbidden place, what to do."""
    import errno

    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc)
    advice = _ADVICE.get(name)
    text = f"{reason} ({name})" if name else reason
    if advice and advice != reason.lower():
        text += f"; {advice}"
    return f"{where}: {text}" if where else text


def exit_status(command: Callable[[], int | None]) -> int:
    """Run a command-line entry: its exit status, or 1 after printing a EuroflowError (or an
    operating-system error: a full disk, a read-only directory) as one line."""
    try:
        return command() or 0
    except EuroflowError as exc:
        print(f"euroflow: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"euroflow: error: {' '.join(os_error_message(exc).split())}", file=sys.stderr)
        return 1
