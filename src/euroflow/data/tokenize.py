"""Tokenize one shard into Megatron indexed datasets, one per split (``<prefix>.bin`` + ``<prefix>.idx``).

``tokenize_shard`` streams a ``.jsonl.zst`` shard (one JSON object per line, field ``text``) in bounded
memory. A reader thread decompresses about ``BATCH_BYTES`` of lines at a time and parses them with
Arrow's JSON reader (C++, GIL released, no Python object per document; any block that is not plainly one
good object per line is re-read line by line with ``read_shard``'s checks, see ``_parse_block``). The main
thread hands the batch's texts, zero-copy, to gigatoken (parallel, GIL released, so reading the next batch
overlaps encoding this one), frames every document and appends the batch's tokens to the split's ``.bin``
in one write. Only the token count of each document stays in memory (4 bytes a document) until the
``.idx`` is written at the end: peak memory is a few batches, whatever the shard's size (about 0.5 GB).

Documents and splits. A document is a non-blank line, counted from 0 in file order. ``assignment`` (the
deduplication result) holds one int8 code per document: 0 = train, 1 = valid, 2 or more = dropped (a
duplicate); ``None`` sends every document to train. Each split in ``out_prefixes`` (``"train"``,
``"valid"``) gets a dataset, empty if no document goes there; documents keep their order within a split.

What a document becomes depends on the tokenizer directory:

- the pipeline's SentencePiece tokenizer (a directory with ``tokenizer_meta.json``; see
  ``euroflow.tokenizer.train``): ``[bos_id] + ids + [eos_id]``, ids as ``SentencePieceProcessor.encode``
  gives them (special-token strings inside the text are text, as SentencePiece does). gigatoken is loaded
  from the directory's ``tokenizer.json`` with its added tokens removed, which is what makes ``<s>`` in a
  text encode as text, like SentencePiece.
- a directory with only a Hugging Face ``tokenizer.json`` (e.g. a byte-level BPE from ``tokenizers``):
  ``ids + [eod]``, ids as ``tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids`` (no BOS, no
  post-processor template), and ``eod`` the id of the ``eos_token`` named in ``tokenizer_config.json``
  when there is one, else of ``<|endoftext|>``. This is Megatron-LM ``preprocess_data.py --append-eod``
  with a Hugging Face tokenizer whose EOS is that token.

Exactness: the first ``VERIFY_DOCS`` documents encoded from every shard are also encoded by the reference
library (SentencePiece, or Hugging Face ``tokenizers``); if gigatoken disagrees on any of them, or cannot
load the tokenizer, the whole shard is encoded by the reference library instead, and the result's
``backend`` says which encoder wrote the shard (``gigatoken``, ``sentencepiece`` or ``tokenizers``).

Output: token dtype uint16 when the vocabulary has fewer than 65500 entries, else int32; the ``.bin`` and
``.idx`` are byte for byte what Megatron-Core's ``IndexedDatasetBuilder`` writes with one
``add_document(tokens, [len(tokens)])`` per document (one sequence per document). Every file is written
under a temporary name beside its final one and renamed into place only when all of them are complete
(the old ``.idx`` files are removed first, so a reader never pairs a new ``.bin`` with an old index); on
any error no output file is left. A malformed line, a truncated stream or an assignment of the wrong
length is a ``EuroflowError`` naming the file (and line).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import struct
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from euroflow.atomic import atomic_path
from euroflow.data.hplt import decompressed_blocks, not_a_shard
from euroflow.errors import EuroflowError

UINT16_LIMIT = 65500
BATCH_BYTES = 16 << 20  # decompressed bytes of lines per batch (larger ones only add page faults)
FIRST_BATCH_BYTES = 1 << 20  # the first batches are smaller, doubling up to BATCH_BYTES
VERIFY_DOCS = 64
SPLIT_CODES = {"train": 0, "valid": 1}  # assignment code of each split; codes >= 2 are dropped documents

# Megatron-Core's .idx layout (megatron.core.datasets.indexed_dataset._IndexWriter, DType codes)
_INDEX_HEADER = b"MMIDIDX\x00\x00"
_DTYPE_CODES = {"uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8}


def token_dtype(vocab_size: int) -> type[np.number]:
    return np.uint16 if vocab_size < UINT16_LIMIT else np.int32


# --------------------------------------------------------------------------------------------------
# encoders


class _Encoder:
    """A tokenizer directory: gigatoken for speed, the reference library for checking (and as fallback)."""

    def __init__(self, tokenizer_dir: str | os.PathLike, threads: int):
        from euroflow.jsonfile import read_json

        self.dir = Path(tokenizer_dir)
        self.threads = threads
        tokenizer_json = self.dir / "tokenizer.json"
        giga_json = None  # what gigatoken loads
        if (self.dir / "tokenizer_meta.json").is_file():
            from euroflow.tokenizer.train import load_sentencepiece, read_meta

            meta = read_meta(self.dir)
            self.vocab_size = meta["vocab_size"]
            self.prefix, self.suffix = [meta["bos_id"]], [meta["eos_id"]]
            self.reference_name = "sentencepiece"
            self._sp = load_sentencepiece(self.dir)
            if self._sp.get_piece_size() > self.vocab_size:
                raise EuroflowError(
                    f"{self.dir / 'tokenizer_meta.json'}: vocab_size {self.vocab_size}, but tokenizer.model has "
                    f"{self._sp.get_piece_size()} pieces; the tokenizer files disagree"
                )
            if tokenizer_json.is_file():
                config = read_json(tokenizer_json, "tokenizer")
                # SentencePiece never matches its control pieces (<s>, </s>) inside text; without the
                # added tokens gigatoken does the same
                config["added_tokens"] = []
                giga_json = json.dumps(config)
        elif tokenizer_json.is_file():
            from tokenizers import Tokenizer

            giga_json = tokenizer_json.read_text(encoding="utf-8")
            try:
                self._hf = Tokenizer.from_str(giga_json)
            except Exception as exc:
                raise EuroflowError(f"{tokenizer_json}: not a tokenizer Hugging Face tokenizers can load: {exc}") from None
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
            eos = None
            if (self.dir / "tokenizer_config.json").is_file():
                eos = read_json(self.dir / "tokenizer_config.json", "tokenizer config").get("eos_token")
                eos = eos.get("content") if isinstance(eos, dict) else eos
            self.prefix, self.suffix = [], [self._token_id(tokenizer_json, [eos] if isinstance(eos, str) else [])]
            self.reference_name = "tokenizers"
        else:
            raise EuroflowError(f"{self.dir}: not a tokenizer directory (neither tokenizer_meta.json nor tokenizer.json)")
        self.dtype = token_dtype(self.vocab_size)
        self._giga = None
        if giga_json is not None:
            try:
                import gigatoken

                self._giga = gigatoken.Tokenizer.from_json(giga_json)
            except Exception:  # a model gigatoken does not support: the reference library encodes
                self._giga = None
        self.backend = "gigatoken" if self._giga is not None else self.reference_name
        self.verified = self._giga is None

    def check_ids(self, content: np.ndarray) -> int:
        """The largest id in ``content``; an id outside the declared vocabulary (which the ``.bin``'s
        dtype would silently wrap: 70000 stored as 4464 in uint16) is an error, before anything is written."""
        if not content.size:
            return -1
        top = int(content.max())
        if top >= self.vocab_size or int(content.min()) < 0:
            bad = top if top >= self.vocab_size else int(content.min())
            raise EuroflowError(
                f"{self.dir}: the tokenizer produced token id {bad}, outside the vocabulary of {self.vocab_size} it declares "
                f"(tokenizer_meta.json / tokenizer.json; stored as {np.dtype(self.dtype).name}); the tokenizer files disagree"
            )
        return top

    def _token_id(self, tokenizer_json: Path, names: list[str]) -> int:
        """The end-of-document id: the config's eos_token if given, else <|endoftext|>."""
        names = [*names, "<|endoftext|>"]
        for name in names:
            token_id = self._hf.token_to_id(name)
            if token_id is not None:
                return token_id
        raise EuroflowError(f"{tokenizer_json}: no end-of-document token: {' nor '.join(names)} is in the vocabulary")

    def encode(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of every text of an Arrow (large_)string array, without framing: ``(offsets,
        content)``, ``offsets`` of length n + 1."""
        if not self.verified:
            self.verified = True
            sample = texts.slice(0, VERIFY_DOCS)
            offsets, content = self._encode_giga(sample)
            ref_offsets, ref_content = self._encode_reference(sample)
            if not (np.array_equal(offsets, ref_offsets) and np.array_equal(content, ref_content)):
                self.backend, self._giga = self.reference_name, None
        return self._encode_giga(texts) if self._giga is not None else self._encode_reference(texts)

    def _encode_giga(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        import awkward as ak

        # the Arrow buffers as an awkward array of strings, no copy
        bounds = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
        chars = np.frombuffer(texts.buffers()[2], dtype=np.uint8) if len(texts) else np.zeros(0, dtype=np.uint8)
        strings = ak.contents.ListOffsetArray(
            ak.index.Index64(bounds),
            ak.contents.NumpyArray(chars, parameters={"__array__": "char"}),
            parameters={"__array__": "string"},
        )
        layout = self._giga.encode_batch(ak.Array(strings)).layout
        offsets = layout.offsets.data  # a list of uint32 per text: numpy views, no copy
        content = layout.content.data
        if offsets[0] != 0:
            content = content[offsets[0] :]
            offsets = offsets - offsets[0]
        return offsets, content[: offsets[-1]]

    def _encode_reference(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        strings = texts.to_pylist()
        if self.reference_name == "sentencepiece":
            ids = self._sp.encode(strings, num_threads=self.threads)
        else:
            ids = [e.ids for e in self._hf.encode_batch(strings, add_special_tokens=False)]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in ids], out=offsets[1:])
        content = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(offsets[-1]))
        return offsets, content


def _frame(
    offsets: np.ndarray, content: np.ndarray, prefix: list[int], suffix: list[int], dtype
) -> tuple[np.ndarray, np.ndarray]:
    """``prefix + ids + suffix`` of every document, concatenated, and the length of each."""
    n = len(offsets) - 1
    lengths = np.diff(offsets) + (len(prefix) + len(suffix))
    out = np.empty(int(content.size) + n * (len(prefix) + len(suffix)), dtype=dtype)
    starts = offsets[:-1] + np.arange(n, dtype=np.int64) * (len(prefix) + len(suffix))
    ends = starts + lengths
    keep = np.ones(out.size, dtype=bool)
    for k, token in enumerate(prefix):
        out[starts + k] = token
        keep[starts + k] = False
    for k, token in enumerate(suffix):
        out[ends - len(suffix) + k] = token
        keep[ends - len(suffix) + k] = False
    out[keep] = content
    return lengths.astype(np.int32), out


# --------------------------------------------------------------------------------------------------
# reading


_BLANK_INSIDE = re.compile(rb"\n[ \t\r]*\n")
_BLANK_FIRST = re.compile(rb"[ \t\r]*(?:\n|$)")


def _has_blank_line(data: bytes) -> bool:
    last = data[data.rfind(b"\n") + 1 :]
    return bool(_BLANK_FIRST.match(data) or _BLANK_INSIDE.search(data) or (last and not last.strip()))


def _parse_block(path: Path, data: bytes, first_lineno: int) -> tuple[Any, int]:
    """The ``text`` of every document of ``data`` (complete lines) as an Arrow large_string array, and the
    number of lines; a bad line raises naming ``path:line``.

    Arrow's JSON reader parses the block (in C++, without the GIL, no Python object per document). It is
    more lenient than ``read_shard`` in a few ways, so its result is used only when the block is plainly
    one good object per line: no blank line, as many rows as lines, no missing or null ``text``, no BOM,
    and valid UTF-8 throughout. Any other block is read line by line with ``read_shard``'s checks, which
    skip blank lines like ``read_shard`` and raise its messages for bad lines.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if data and not data.startswith(b"\xef\xbb\xbf") and not _has_blank_line(data):
        try:
            table = pj.read_json(
                pa.BufferReader(data),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=pj.ParseOptions(
                    explicit_schema=pa.schema([("text", pa.large_string())]), unexpected_field_behavior="ignore"
                ),
            )
            texts = table.column("text").combine_chunks()
            if table.num_rows == lines and texts.null_count == 0:
                size = np.array([0, len(data)], dtype=np.int64)
                whole = pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(size), pa.py_buffer(data)])
                whole.validate(full=True)  # UTF-8 throughout, other fields included
                return texts, lines
        except (pa.ArrowException, UnicodeDecodeError):
            pass
    return pa.array(_careful_texts(path, data.split(b"\n")[:lines], first_lineno), type=pa.large_string()), lines


def _careful_texts(path: Path, lines: list[bytes], first_lineno: int) -> list[str]:
    from orjson import loads

    from euroflow.data.hplt import _parse_line  # read_shard's checks and messages

    texts = []
    for lineno, line in enumerate(lines, first_lineno):
        if not line.strip():
            continue
        try:
            text = loads(line)["text"]
        except Exception:
            text = None
        if type(text) is not str:
            text = _parse_line(path, lineno, line)["text"]
        texts.append(text)
    return texts


class _Batch:
    __slots__ = ("groups", "docs", "dropped", "chars")

    def __init__(self, groups: dict[str, Any], docs: int, dropped: int, chars: int):
        self.groups, self.docs, self.dropped, self.chars = groups, docs, dropped, chars


_END = object()


def _read_batches(
    path: Path, assignment: np.ndarray | None, splits: set[str], out: queue.Queue, stop: threading.Event
) -> None:
    """Reader thread: put a ``_Batch`` per block on ``out``, then ``(_END, document count)`` (or
    ``(_END, exception)`` if reading failed)."""

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    try:
        lines_so_far = [0]
        docs = 0
        pending = b""
        blocks = decompressed_blocks(path, lines_so_far, first_block=FIRST_BATCH_BYTES, max_block=BATCH_BYTES)
        while not stop.is_set():
            block = next(blocks, None)
            if block is None:  # the stream ended whole: an unterminated last line is complete
                data, pending = pending, b""
            else:
                data = pending + block if pending else block
                cut = data.rfind(b"\n") + 1
                data, pending = data[:cut], data[cut:]
            if data:
                texts, lines = _parse_block(path, data, lines_so_far[0] + 1)
                lines_so_far[0] += lines
                put(_split(texts, docs, assignment, splits, path))
                docs += len(texts)
            if block is None:
                break
        put((_END, docs))
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        put((_END, exc))


def _split(texts: Any, first: int, assignment: np.ndarray | None, splits: set[str], path: Path) -> _Batch:
    """The batch's documents by split (Arrow arrays), per the assignment codes of documents ``first``..."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(texts)
    codes = None if assignment is None else assignment[first : first + n]  # short past a too-short assignment
    if codes is None or (len(codes) == n and not codes.any()):
        return _Batch({"train": texts}, n, 0, pc.sum(pc.utf8_length(texts)).as_py() or 0)
    groups, kept, chars = {}, 0, 0
    for split, code in SPLIT_CODES.items():
        mask = np.zeros(n, dtype=bool)
        mask[: len(codes)] = codes == code
        count = int(mask.sum())
        if count and split not in splits:
            raise EuroflowError(
                f"{path}: the dedup assignment puts document {first + int(np.argmax(mask))} in {split}, "
                f"but there is no output prefix for {split}"
            )
        if count:
            groups[split] = texts.filter(pa.array(mask))
            chars += pc.sum(pc.utf8_length(groups[split])).as_py() or 0
            kept += count
    return _Batch(groups, n, min(len(codes), n) - kept, chars)


# --------------------------------------------------------------------------------------------------
# writing


def index_header(dtype_code: int, sequences: int, documents: int) -> bytes:
    """An ``.idx`` header: magic, version 1, token dtype code, sequence and document counts."""
    return _INDEX_HEADER + struct.pack("<QBQQ", 1, dtype_code, sequences, documents)


def _write_index(path: Path, lengths: np.ndarray, dtype) -> None:
    """What ``IndexedDatasetBuilder.finalize`` writes for one single-sequence document per length."""
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * itemsize, out=pointers[1:])
    with open(path, "wb") as fh:
        fh.write(index_header(_DTYPE_CODES[np.dtype(dtype).name], len(lengths), len(lengths) + 1))
        fh.write(lengths.astype(np.int32).tobytes())
        fh.write(pointers.tobytes())
        fh.write(np.arange(len(lengths) + 1, dtype=np.int64).tobytes())


class _Output:
    """One split's dataset being written to the temporary paths ``atomic_path`` gave its ``.bin`` and ``.idx``."""

    def __init__(self, tmp_bin: Path, tmp_idx: Path):
        self.tmp_idx = tmp_idx
        self.file = open(tmp_bin, "wb")
        self.lengths: list[np.ndarray] = []
        self.docs = self.tokens = 0

    def write(self, lengths: np.ndarray, tokens: np.ndarray) -> None:
        self.file.write(memoryview(tokens).cast("B"))
        self.lengths.append(lengths)
        self.docs += len(lengths)
        self.tokens += int(tokens.size)

    def finish(self, dtype) -> None:
        self.file.close()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int32)
        self.lengths = []
        _write_index(self.tmp_idx, lengths, dtype)


def _remove_on_success(paths: list[Path]):
    """An ExitStack exit callback: unlink ``paths`` when the block succeeded."""

    def remove(exc_type, exc, tb) -> None:
        if exc_type is None:
            for path in paths:
                path.unlink(missing_ok=True)

    return remove


def _prefixes(out_prefixes: Mapping[str, str | os.PathLike] | str | os.PathLike) -> dict[str, Path]:
    if isinstance(out_prefixes, (str, os.PathLike)):
        return {"train": Path(out_prefixes)}
    prefixes = {str(k): Path(v) for k, v in out_prefixes.items()}
    unknown = sorted(set(prefixes) - set(SPLIT_CODES))
    if unknown or "train" not in prefixes:
        raise EuroflowError(
            f"tokenize: output prefixes must be given for train (and optionally valid); got {', '.join(prefixes) or 'none'}"
        )
    return prefixes


def tokenize_shard(
    shard: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    out_prefixes: Mapping[str, str | os.PathLike] | str | os.PathLike,
    *,
    assignment: np.ndarray | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Write ``<prefix>.bin``/``.idx`` for each split of ``out_prefixes`` (``{"train": p, "valid": q}``; a
    single prefix means ``{"train": prefix}``) from the documents of ``shard``; see the module docstring.

    ``threads``: encoding threads; gigatoken's thread pool is sized once per process (from it, as
    ``RAYON_NUM_THREADS``, if this is the first encode), SentencePiece uses it per call. Default: all cores.

    Returns ``shard``, ``prefixes``, ``docs`` and ``tokens`` (per split and ``total``, framing tokens
    included), ``dropped`` (documents the assignment drops), ``chars`` (characters of the written
    documents), ``dtype``, ``backend``, ``seconds`` and ``tokens_per_s`` (all tokens written / seconds).
    """
    started = time.perf_counter()
    shard = Path(shard)
    prefixes = _prefixes(out_prefixes)
    if not shard.is_file():
        raise EuroflowError(f"{shard}: {not_a_shard(shard)}")
    if assignment is not None:
        assignment = np.asarray(assignment)
        if assignment.ndim != 1 or not np.issubdtype(assignment.dtype, np.integer):
            raise EuroflowError(
                f"{shard}: the dedup assignment must be a 1-d integer array, got {assignment.dtype} {assignment.shape}"
            )
    if threads:
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))

    outputs: dict[str, _Output] = {}
    batches: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_batches, args=(shard, assignment, set(prefixes), batches, stop), name="tokenize-reader", daemon=True
    )
    docs = dropped = chars = 0
    max_id = -1
    try:
        reader.start()  # reads the first batch while the tokenizer loads
        encoder = _Encoder(tokenizer_dir, threads or os.cpu_count() or 1)
        with ExitStack() as stack:
            # renamed into place in reverse order of entry, on success only: the old .idx files are removed,
            # then the .bin files move, then the .idx files, so a reader never pairs a new .bin with an old index
            final_idx = {split: prefix.with_name(prefix.name + ".idx") for split, prefix in prefixes.items()}
            tmp_idx = {split: stack.enter_context(atomic_path(path)) for split, path in final_idx.items()}
            tmp_bin = {split: stack.enter_context(atomic_path(prefix.with_name(prefix.name + ".bin")))
                       for split, prefix in prefixes.items()}
            stack.push(_remove_on_success(list(final_idx.values())))
            for split in prefixes:
                outputs[split] = _Output(tmp_bin[split], tmp_idx[split])
                stack.callback(outputs[split].file.close)
            while True:
                item = batches.get()
                if isinstance(item, tuple) and item[0] is _END:
                    if isinstance(item[1], BaseException):
                        raise item[1]
                    docs = item[1]
                    break
                dropped += item.dropped
                chars += item.chars
                for split, texts in item.groups.items():
                    if len(texts):
                        offsets, content = encoder.encode(texts)
                        max_id = max(max_id, encoder.check_ids(content))
                        outputs[split].write(*_frame(offsets, content, encoder.prefix, encoder.suffix, encoder.dtype))
            if assignment is not None and len(assignment) != docs:
                raise EuroflowError(
                    f"{shard}: dedup assignment has {len(assignment)} entries but the shard has {docs} documents"
                )
            for output in outputs.values():
                output.finish(encoder.dtype)
    finally:
        stop.set()
        if reader.is_alive():
            reader.join()
    seconds = time.perf_counter() - started
    tokens = sum(o.tokens for o in outputs.values())
    return {
        "shard": str(shard),
        "prefixes": {split: str(p) for split, p in prefixes.items()},
        "docs": {**{split: o.docs for split, o in outputs.items()}, "total": sum(o.docs for o in outputs.values())},
        "tokens": {**{split: o.tokens for split, o in outputs.items()}, "total": tokens},
        "dropped": dropped,
        "chars": chars,
        "dtype": np.dtype(encoder.dtype).name,
        "vocab_size": encoder.vocab_size,
        "max_token_id": max([max_id, *encoder.prefix, *encoder.suffix]) if docs else None,
        "backend": encoder.backend,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
    }


def read_documents(prefix: str | os.PathLike) -> list[np.ndarray]:
    """Every document of an indexed dataset as a token array (for checks and tests)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    # Megatron cannot mmap an empty .bin (a split without documents); read that one without mmap
    dataset = IndexedDataset(str(prefix), mmap=os.path.getsize(f"{prefix}.bin") > 0)
    return [np.array(dataset[i]) for i in range(len(dataset))]
