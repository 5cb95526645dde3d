"""Rows spooled to disk come back exactly as numpy would have saved them from memory."""

import io

import numpy as np

from euroflow.data import spool
from euroflow.data.spool import RowSpool, write_npz


def test_spooled_rows_are_written_as_np_save_writes_them(tmp_path, monkeypatch):
    monkeypatch.setattr(spool, "COPY_CHUNK", 1000)  # copy in several pieces
    rows = np.random.default_rng(0).integers(0, 2**32, size=(1001, 128), dtype=np.uint32)
    spooled = RowSpool(np.uint32, 128, tmp_path)
    for start in range(0, len(rows), 300):
        spooled.add(rows[start : start + 300])
    assert list(tmp_path.iterdir()) == []  # the spool has no name: nothing to clean up after a crash
    ours, theirs = io.BytesIO(), io.BytesIO()
    spooled.write_npy(ours)
    np.save(theirs, rows, allow_pickle=False)
    assert ours.getvalue() == theirs.getvalue()
    spooled.add(rows[:1])  # writing does not end the spool
    assert spooled.rows == 1002
    spooled.close()


def test_npz_of_spools_loads_like_np_savez(tmp_path):
    lengths = RowSpool(np.int64, 2, tmp_path)
    lengths.add(np.array([(3, 4), (5, 7)]))
    empty = RowSpool(np.uint8, 16, tmp_path)
    path = tmp_path / "rows.npz"
    with open(path, "wb") as out:
        write_npz(out, {"lengths": lengths, "empty": empty}, {"b": 1, "a": "x"})
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["empty", "lengths", "params"]
        assert npz["lengths"].tolist() == [[3, 4], [5, 7]] and npz["lengths"].dtype == np.int64
        assert npz["empty"].shape == (0, 16) and npz["empty"].dtype == np.uint8
        assert str(npz["params"]) == '{"a": "x", "b": 1}'
