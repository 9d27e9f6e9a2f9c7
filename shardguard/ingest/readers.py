"""Format readers: turn one shard file into a stream of raw items, never raising on bad rows.

Every reader yields `Raw(row, obj, error, text)`:
- `row`: 0-based index of the record within its shard (JSONL: among non-blank lines; JSON array:
  element index; Parquet/CSV/Arrow: row index; WARC: record index among the records we read);
- `obj`: the parsed record (a dict) or None;
- `error`: why the row could not be read (then `obj` is None), naming what is wrong;
- `text`: for malformed rows, a bounded prefix of the raw bytes (decoded with replacement).

A failure of the whole shard (unsupported format, unreadable file) raises `ShardError`;
a failure part-way (truncated compressed stream) yields what was read and then one malformed
item for the truncated tail. Decompression and line sizes are bounded (`Limits`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shardguard.core.schema import COMPRESSIONS


class ShardError(Exception):
    """The whole shard cannot be read."""


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = 16 * 1024 * 1024  # a JSONL line / CSV row longer than this is malformed
    max_decompressed_bytes: int = 64 * 1024**3  # stop reading a compressed shard past this (bomb guard)
    max_json_bytes: int = 1024 * 1024**2  # a whole-file JSON array is loaded at once: cap it
    raw_preview_bytes: int = 4096  # how much of a malformed row is kept in quarantine


@dataclass
class Raw:
    row: int
    obj: dict | None = None
    error: str | None = None
    text: str | None = None


def _preview(b: bytes | str, limits: Limits) -> str:
    if isinstance(b, bytes):
        return b[: limits.raw_preview_bytes].decode("utf-8", errors="replace")
    return b[: limits.raw_preview_bytes]




def split_ext(path: Path) -> tuple[str, str | None]:
    """('.jsonl', 'gzip') for 'a.jsonl.gz'."""
    suffixes = [s.lower() for s in path.suffixes]
    comp = None
    if suffixes and suffixes[-1] in COMPRESSIONS:
        comp = COMPRESSIONS[suffixes[-1]]
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), comp


class _Bounded(io.RawIOBase):
    """Wraps a decompressing stream; raises once more than `limit` bytes came out of it."""

    def __init__(self, inner, limit: int):
        self.inner, self.limit, self.count = inner, limit, 0

    def readable(self):
        return True

    def readinto(self, b):
        # small reads, so that a truncated stream still yields the lines decoded before the break
        data = self.inner.read(min(len(b), 16384))
        self.count += len(data)
        if self.count > self.limit:
            raise ShardError(f"decompressed size exceeds the limit of {self.limit} bytes")
        b[: len(data)] = data
        return len(data)


def open_binary(path: Path, comp: str | None, limits: Limits) -> io.BufferedReader:
    f = open(path, "rb")  # noqa: SIM115 - returned to caller
    if comp is None:
        return f
    if comp == "gzip":
        inner = gzip.GzipFile(fileobj=f)
    elif comp == "bz2":
        inner = bz2.BZ2File(f)
    elif comp == "xz":
        inner = lzma.LZMAFile(f)
    elif comp == "zstd":
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    else:  # pragma: no cover - split_ext only returns the above
        raise ShardError(f"unknown compression {comp}")
    return io.BufferedReader(_Bounded(inner, limits.max_decompressed_bytes), buffer_size=1 << 20)


def _truncation_error(exc: Exception) -> str:
    return f"compressed stream is truncated or corrupt ({type(exc).__name__}: {exc})"


_DECOMP_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, lzma.LZMAError, ValueError)
try:  # zstandard raises its own error type
    import zstandard as _zstd

    _DECOMP_ERRORS = _DECOMP_ERRORS + (_zstd.ZstdError,)
except ImportError:  # pragma: no cover
    pass


def _parse_json_line(line: bytes, row: int, limits: Limits) -> Raw:
    if len(line) > limits.max_line_bytes:
        return Raw(row, error=f"line is {len(line)} bytes, over the {limits.max_line_bytes}-byte limit",
                   text=_preview(line, limits))
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return Raw(row, error=f"invalid UTF-8 at byte {e.start}", text=_preview(line, limits))
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return Raw(row, error=f"invalid JSON: {e.msg} at column {e.colno}", text=_preview(s, limits))
    if not isinstance(obj, dict):
        return Raw(row, error=f"JSON value is a {type(obj).__name__}, expected an object", text=_preview(s, limits))
    return Raw(row, obj=obj)


def read_jsonl(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    row = 0
    f = open_binary(path, comp, limits)
    pending = b""
    try:
        with f:
            while True:
                # readline bounded: never hold more than max_line_bytes (+1 chunk) of one line.
                line = f.readline(limits.max_line_bytes + 1)
                if not line:
                    break
                if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
                    # over-long line: skip the rest of it without holding it in memory
                    size = len(line)
                    while True:
                        more = f.readline(1 << 20)
                        size += len(more)
                        if not more or more.endswith(b"\n"):
                            break
                    yield Raw(row, error=f"line is over the {limits.max_line_bytes}-byte limit ({size} bytes)",
                              text=_preview(line, limits))
                    row += 1
                    continue
                if not line.strip():
                    continue
                pending = line
                yield _parse_json_line(line.rstrip(b"\r\n"), row, limits)
                pending = b""
                row += 1
    except ShardError:
        raise
    except _DECOMP_ERRORS as e:
        yield Raw(row, error=_truncation_error(e), text=_preview(pending, limits))


def read_json(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """A JSON array of objects, a single object, or (as many `.json` dumps are) JSON lines."""
    with open_binary(path, comp, limits) as f:
        head = f.peek(64)[:64] if hasattr(f, "peek") else b""
    if not head.lstrip().startswith(b"["):
        yield from read_jsonl(path, comp, limits)
        return
    try:
        with open_binary(path, comp, limits) as f:
            data = f.read(limits.max_json_bytes + 1)
    except _DECOMP_ERRORS as e:
        yield Raw(0, error=_truncation_error(e))
        return
    if len(data) > limits.max_json_bytes:
        raise ShardError(f"JSON array file is over the {limits.max_json_bytes}-byte limit; convert it to JSONL")
    try:
        arr = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ShardError(f"invalid UTF-8 at byte {e.start} of a JSON array file") from e
    except json.JSONDecodeError as e:
        raise ShardError(f"invalid JSON array: {e.msg} at line {e.lineno} column {e.colno}") from e
    for i, obj in enumerate(arr):
        if isinstance(obj, dict):
            yield Raw(i, obj=obj)
        else:
            yield Raw(i, error=f"array element is a {type(obj).__name__}, expected an object",
                      text=_preview(json.dumps(obj)[:4096], limits))


def _arrow_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[Raw]:
    row = 0
    for b in batches:
        for obj in b.to_pylist():
            yield Raw(row, obj=obj)
            row += 1


def read_parquet(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise ShardError(f"not a readable Parquet file ({e})") from e
    yield from _arrow_rows(pf.iter_batches(batch_size=2048))


def read_arrow_file(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """Arrow IPC (Hugging Face `save_to_disk` writes the stream format; accept the file format too)."""
    try:
        src = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_stream(src)
            batches = iter(reader)
        except pa.ArrowInvalid:
            src = pa.memory_map(str(path))
            fr = pa.ipc.open_file(src)
            batches = (fr.get_batch(i) for i in range(fr.num_record_batches))
    except Exception as e:
        raise ShardError(f"not a readable Arrow IPC file ({e})") from e
    yield from _arrow_rows(batches)


def read_csv(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    csv.field_size_limit(limits.max_line_bytes)
    f = open_binary(path, comp, limits)
    text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
    row = 0
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield Raw(row, error=f"CSV error: {e}")
                row += 1
                continue
            if not cells:
                continue
            if len(cells) != len(header):
                yield Raw(row, error=f"CSV row has {len(cells)} fields, the header has {len(header)}",
                          text=_preview(",".join(cells), limits))
            else:
                yield Raw(row, obj=dict(zip(header, cells)))
            row += 1
    except UnicodeDecodeError as e:
        yield Raw(row, error=f"invalid UTF-8 in CSV ({e.reason}); the rest of the shard is unreadable")
    except _DECOMP_ERRORS as e:
        yield Raw(row, error=_truncation_error(e))
    finally:
        text.close()


def read_text_lines(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """Plain text: one document per non-blank line (e.g. a wiki dump converted to text)."""
    row = 0
    try:
        with open_binary(path, comp, limits) as f:
            for line in iter(lambda: f.readline(limits.max_line_bytes + 1), b""):
                if not line.strip():
                    continue
                try:
                    yield Raw(row, obj={"text": line.decode("utf-8").rstrip("\r\n")})
                except UnicodeDecodeError as e:
                    yield Raw(row, error=f"invalid UTF-8 at byte {e.start}", text=_preview(line, limits))
                row += 1
    except _DECOMP_ERRORS as e:
        yield Raw(row, error=_truncation_error(e))


def _html_to_text(html: str) -> str:
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.out, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            if tag in ("script", "style", "noscript"):
                self.skip += 1

        def handle_endtag(self, tag):
            if tag in ("script", "style", "noscript") and self.skip:
                self.skip -= 1
            if tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr"):
                self.out.append("\n")

        def handle_data(self, data):
            if not self.skip:
                self.out.append(data)

    p = P()
    p.feed(html)
    lines = (ln.strip() for ln in "".join(p.out).splitlines())
    return "\n".join(ln for ln in lines if ln)


def read_warc(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """WARC (HTML responses, text extracted) or WET (conversion records) via warcio."""
    from warcio.archiveiterator import ArchiveIterator

    row = 0
    try:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type not in ("conversion", "response"):
                    continue
                url = rec.rec_headers.get_header("WARC-Target-URI") or ""
                payload = rec.content_stream().read(limits.max_line_bytes + 1)
                if len(payload) > limits.max_line_bytes:
                    yield Raw(row, error=f"WARC record over the {limits.max_line_bytes}-byte limit")
                    row += 1
                    continue
                body = payload.decode("utf-8", errors="replace")
                if rec.rec_type == "response":
                    ctype = (rec.http_headers.get_header("Content-Type") if rec.http_headers else "") or ""
                    if "html" not in ctype.lower() and "text" not in ctype.lower():
                        continue
                    body = _html_to_text(body)
                yield Raw(row, obj={"url": url, "text": body,
                                    "warc_record_id": rec.rec_headers.get_header("WARC-Record-ID") or ""})
                row += 1
    except Exception as e:  # warcio raises ArchiveLoadFailed and decompression errors
        if row == 0:
            raise ShardError(f"not a readable WARC/WET file ({type(e).__name__}: {e})") from e
        yield Raw(row, error=f"WARC stream is truncated or corrupt ({type(e).__name__}: {e})")


READERS = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_json,
    ".parquet": read_parquet,
    ".pq": read_parquet,
    ".csv": read_csv,
    ".arrow": read_arrow_file,
    ".txt": read_text_lines,
    ".warc": read_warc,
    ".wet": read_warc,
}

# Files a folder walk skips without complaint (licenses, provenance, HF metadata).
SIDE_FILES = {"license", "source.txt", "readme.md", "dataset_info.json", "state.json", "dataset_dict.json"}


def is_shard_file(path: Path) -> bool:
    name = path.name.lower()
    if name in SIDE_FILES or name.startswith(".") or name.endswith("_license") or name.startswith("license"):
        return False
    ext, _ = split_ext(path)
    if name.endswith(".warc.gz") or name.endswith(".wet.gz"):
        return True
    return ext in READERS and ext != ".md"


def read_shard(path: Path, limits: Limits | None = None) -> Iterator[Raw]:
    limits = limits or Limits()
    if not os.access(path, os.R_OK):
        raise ShardError("file is not readable")
    ext, comp = split_ext(path)
    if ext in (".warc", ".wet"):
        return read_warc(path, comp, limits)
    reader = READERS.get(ext)
    if reader is None:
        raise ShardError(f"unsupported format '{''.join(path.suffixes) or path.name}'")
    return reader(path, comp, limits)
