"""Fixed-width numpy rows spooled to disk as they come, then written as ``.npy`` (or an ``.npz`` entry).

A prepare job learns one signature row and one lengths row per kept document; holding them until the
shard ends would make its memory grow with the shard. A :class:`RowSpool` appends each batch to an
unnamed temporary file beside the output (same disk; gone when closed) and copies it out in chunks,
so memory stays at one batch whatever the number of documents.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

COPY_CHUNK = 1 << 20


class RowSpool:
    """Rows of ``width`` values of ``dtype``, appended with :meth:`add`, read back with :meth:`write_npy`."""

    def __init__(self, dtype: np.dtype | type, width: int, directory: str | os.PathLike) -> None:
        self.dtype = np.dtype(dtype)
        self.width = width
        self.rows = 0
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".spool-")

    def add(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.width)
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def write_npy(self, out: IO[bytes]) -> None:
        """The rows so far as one ``(rows, width)`` ``.npy`` array, as ``np.save`` would write it."""
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.rows, self.width)}
        npy_format.write_array_header_1_0(out, header)
        self._file.flush()
        self._file.seek(0)
        shutil.copyfileobj(self._file, out, COPY_CHUNK)
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        self._file.close()


def write_npz(out: IO[bytes], spools: dict[str, RowSpool], params: dict) -> None:
    """An uncompressed ``.npz`` (what ``np.savez`` writes) of the spools and ``params`` as a JSON string."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, spool in spools.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                spool.write_npy(entry)
        with archive.open("params.npy", "w") as entry:
            npy_format.write_array(entry, np.array(json.dumps(params, sort_keys=True)), allow_pickle=False)
