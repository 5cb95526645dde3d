"""Write outputs under a temporary name and rename them into place only on success."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from euroflow.errors import EuroflowError, os_error_message


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``final`` if the block succeeds.

    On any exception the temporary file or directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    prefix = f".{final.name}.tmp-"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise EuroflowError(f"cannot write {os_error_message(exc, final)}") from None
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only paths; give the result the usual umask permissions
        if tmp.exists():
            os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        # a full or read-only place while writing: name the output, not its temporary sibling
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS and (exc.filename is None or Path(exc.filename).name.startswith(prefix)):
            raise EuroflowError(f"cannot write {os_error_message(exc, final)}") from None
        raise


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def write_text(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically; return ``final`` as a Path."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
