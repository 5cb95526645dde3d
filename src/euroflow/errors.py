"""One exception type for user-facing failures.

Its message is a single line that names the file (and line or key) and what is wrong;
the CLI prints it and exits non-zero, without a traceback.
"""


class EuroflowError(Exception):
    """A failure caused by input or configuration, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
