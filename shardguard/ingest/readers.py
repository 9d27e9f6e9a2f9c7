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
import io
import json
import lzma
import os
import re
import stat
import zlib
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
    # Defaults a laptop survives: one row is parsed, normalised and seen by every detector in memory,
    # a JSON array file is parsed whole, and every decompressed byte is written to the work folder.
    max_line_bytes: int = 8 * 1024**2  # a JSONL/text line or CSV field longer than this is malformed
    max_decompressed_bytes: int = 8 * 1024**3  # per shard: stop reading past this (bomb guard; the rest is malformed)
    max_json_bytes: int = 256 * 1024**2  # a whole-file JSON array is loaded at once: cap it (JSONL has no cap)
    raw_preview_bytes: int = 4096  # how much of a malformed row is kept in quarantine
    follow_links: bool = False  # read symlinks that point out of an input folder (else: skipped, reported)


@dataclass
class Raw:
    row: int
    obj: dict | None = None
    error: str | None = None
    text: str | None = None
    repair: str | None = None  # a kept row that was repaired: what was changed


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


# Decompressors fed by us, so that everything decoded before damage is kept and the damage is located.
_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ", "zstd": b"\x28\xb5\x2f\xfd"}
_CHUNK = 1 << 20  # decompressed bytes handed on at a time
_IN_CHUNK = {"zstd": 4096}  # zstd cannot bound one call's output: feed it little at a time (RLE bombs)


def _decompressor(comp: str):
    if comp == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if comp == "bz2":
        return bz2.BZ2Decompressor()
    if comp == "xz":
        return lzma.LZMADecompressor()
    if comp == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    raise ShardError(f"unknown compression {comp}")  # pragma: no cover - split_ext only returns the above


class Source:
    """A shard's bytes (decompressed), in chunks that end at a newline.

    Only the last chunk of a stream that ends cleanly may end without one (`eof` is set before it is
    handed on), or a chunk whose line is over `max_line_bytes` (the reader skips the rest of that line).
    When the stream is damaged or too large, reading stops: `error` says what and where, and `lost`
    holds the bytes of the incomplete line before the damage (they are not handed on)."""

    def __init__(self, path: Path, comp: str | None, limits: Limits):
        self.path, self.comp, self.limits = path, comp, limits
        self.error: str | None = None
        self.lost = b""
        self.eof = False
        self.out = 0  # decompressed bytes so far
        self.pos = 0  # compressed bytes consumed so far

    def _raw(self) -> Iterator[bytes]:
        """Decompressed blocks; sets `error` and stops on damage."""
        with open(self.path, "rb") as f:
            if self.comp is None:
                while data := f.read(_CHUNK):
                    self.pos += len(data)
                    yield data
                return
            d, inlen = _decompressor(self.comp), _IN_CHUNK.get(self.comp, 65536)
            member = False  # inside a member/frame whose end is not seen yet
            pending = b""
            while True:
                if not pending:
                    pending = f.read(inlen)
                    if not pending:
                        break
                    self.pos += len(pending)
                member = True
                feed, pending = pending, b""
                try:
                    if self.comp == "zstd":
                        if out := d.decompress(feed):
                            yield out
                    else:
                        while True:
                            out = d.decompress(feed, _CHUNK)
                            if out:
                                yield out
                            if d.eof:
                                break
                            if self.comp == "gzip":
                                feed = d.unconsumed_tail
                                if not feed:
                                    break
                            elif d.needs_input:
                                break
                            else:
                                feed = b""
                except Exception as e:  # zlib.error, OSError, EOFError, LZMAError, ZstdError
                    self.error = (f"compressed stream is corrupt at or before compressed byte {self.pos} "
                                  f"(decompressed byte {self.out}): {type(e).__name__}: {e}")
                    return
                if d.eof:
                    member = False
                    rest = d.unused_data
                    if not rest:
                        continue
                    if rest.startswith(_MAGIC[self.comp]):  # another member/frame follows
                        d, pending = _decompressor(self.comp), rest
                        continue
                    size = len(rest) + len(f.read())
                    self.error = (f"{size} bytes that are not {self.comp} data follow the end of the compressed "
                                  f"stream (compressed byte {self.pos - len(rest)}, decompressed byte {self.out})")
                    return
            if member:
                self.error = (f"compressed stream is truncated: it ends without its end marker "
                              f"(decompressed byte {self.out})")

    def chunks(self) -> Iterator[bytes]:
        limit, cap = self.limits.max_decompressed_bytes, self.limits.max_line_bytes
        tail = b""
        try:
            for data in self._raw():
                if not data:
                    continue
                self.out += len(data)
                if self.out > limit:
                    self.error = (f"decompressed size passed the limit of {limit} bytes ([limits] "
                                  f"max_decompressed_bytes); the rest of the shard is not read")
                    break
                buf = tail + data if tail else data
                i = buf.rfind(b"\n")
                if i >= 0:
                    tail = buf[i + 1:]
                    yield buf[: i + 1]
                else:
                    tail = buf
                if len(tail) > cap:  # an over-long line: hand it on, the reader skips the rest of it
                    out, tail = tail, b""
                    yield out
        except OSError as e:
            self.error = f"read error after byte {self.out}: {e}"
        if self.error is None:
            self.eof = True
            if tail:
                yield tail
        else:
            self.lost = tail


def _damage(src: Source, row: int, line: int, limits: Limits) -> Raw:
    lost = f"; the incomplete line after it ({len(src.lost)} bytes) is lost" if src.lost else ""
    return Raw(row, error=f"{src.error}; the {line} lines before it are kept{lost}",
               text=_preview(src.lost, limits) if src.lost else None)


def iter_lines(src: Source, limits: Limits) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(physical line number, line without its newline, or None and why it was skipped)."""
    cap = limits.max_line_bytes
    line_no = 0
    long: list | None = None  # [size so far, preview] of an over-long line being skipped
    for chunk in src.chunks():
        start = 0
        if long is not None:
            i = chunk.find(b"\n")
            if i < 0:
                long[0] += len(chunk)
                continue
            long[0] += i
            line_no += 1
            yield line_no, long[1], f"line is over the {cap}-byte limit ({long[0]} bytes)"
            long, start = None, i + 1
        parts = chunk[start:].split(b"\n") if start else chunk.split(b"\n")
        last = parts.pop()
        for p in parts:
            line_no += 1
            if len(p) > cap:
                yield line_no, p[: limits.raw_preview_bytes], f"line is over the {cap}-byte limit ({len(p)} bytes)"
            else:
                yield line_no, p, None
        if last:
            if src.eof and len(last) <= cap:
                line_no += 1
                yield line_no, last, None
            else:
                long = [len(last), last[: limits.raw_preview_bytes]]
    if long is not None:
        if src.error is None:
            line_no += 1
            yield line_no, long[1], f"line is over the {cap}-byte limit ({long[0]} bytes)"
        else:
            src.lost = long[1]


_SURR = re.compile("[\ud800-\udfff]")
_SURR_ESC = re.compile(rb"\\[uU][dD][89abcdefABCDEF]")


def _fix_surrogates(obj):
    """(obj with lone surrogates replaced by U+FFFD, how many strings were changed)."""
    n = 0

    def fix(v):
        nonlocal n
        if isinstance(v, str):
            if _SURR.search(v):
                n += 1
                return _SURR.sub("\ufffd", v)
            return v
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return fix(obj), n


def shard_label(s: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 as backslash escapes."""
    if _SURR.search(s):
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return s


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
    except RecursionError:
        return Raw(row, error="JSON value nested too deep to read", text=_preview(s, limits))
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        return Raw(row, error=f"invalid JSON value: {e}", text=_preview(s, limits))
    if not isinstance(obj, dict):
        return Raw(row, error=f"JSON value is a {type(obj).__name__}, expected an object", text=_preview(s, limits))
    if b"\\u" in line and _SURR_ESC.search(line):
        try:
            obj, n = _fix_surrogates(obj)
        except RecursionError:
            return Raw(row, error="JSON value nested too deep to read", text=_preview(s, limits))
        if n:
            return Raw(row, obj=obj, repair=f"{n} string(s) with lone surrogate escapes: replaced with U+FFFD")
    return Raw(row, obj=obj)


def read_jsonl(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    src = Source(path, comp, limits)
    row = line_no = 0
    for line_no, line, why in iter_lines(src, limits):  # noqa: B007 - line_no is read after the loop
        if why is not None:
            yield Raw(row, error=why, text=_preview(line, limits))
            row += 1
            continue
        if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        yield _parse_json_line(line.rstrip(b"\r"), row, limits)
        row += 1
    if src.error:
        yield _damage(src, row, line_no, limits)


def read_json(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """A JSON array of objects, a single object, or (as many `.json` dumps are) JSON lines."""
    src = Source(path, comp, limits)
    parts: list[bytes] = []
    size = 0
    for chunk in src.chunks():
        if not parts and not chunk.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            if chunk.strip(b"\xef\xbb\xbf \t\r\n"):
                break  # JSON lines (or one object): read as such
            continue
        parts.append(chunk)
        size += len(chunk)
        if size > limits.max_json_bytes:
            raise ShardError(f"JSON array file is over the {limits.max_json_bytes}-byte limit ([limits] "
                             "max_json_bytes); convert it to JSONL")
    else:
        if not parts:
            if src.error:
                yield _damage(src, 0, 0, limits)
            return
        if src.error:
            yield Raw(0, error=f"{src.error}; a JSON array cannot be read in part")
            return
        data = b"".join(parts)
        parts.clear()
        fix = _SURR_ESC.search(data) is not None  # only then can a string hold a lone surrogate
        try:
            arr = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise ShardError(f"invalid UTF-8 at byte {e.start} of a JSON array file") from e
        except json.JSONDecodeError as e:
            raise ShardError(f"invalid JSON array: {e.msg} at line {e.lineno} column {e.colno}") from e
        except (ValueError, RecursionError) as e:
            raise ShardError(f"invalid JSON array: {type(e).__name__}: {e}") from e
        del data
        if not isinstance(arr, list):
            arr = [arr]
        for i, obj in enumerate(arr):
            if isinstance(obj, dict):
                n = 0
                if fix:
                    try:
                        obj, n = _fix_surrogates(obj)
                    except RecursionError:
                        yield Raw(i, error="JSON value nested too deep to read")
                        continue
                yield Raw(i, obj=obj, repair=f"{n} string(s) with lone surrogate escapes: replaced with U+FFFD"
                          if n else None)
            else:
                try:
                    text = json.dumps(obj)[:4096]
                except (ValueError, RecursionError):
                    text = None
                yield Raw(i, error=f"array element is a {type(obj).__name__}, expected an object",
                          text=_preview(text, limits) if text else None)
        return
    yield from read_jsonl(path, comp, limits)


def _arrow_rows(batches: Iterator[pa.RecordBatch], what: str) -> Iterator[Raw]:
    """Rows of each batch; a batch that cannot be read ends the shard with one malformed item."""
    row = 0
    while True:
        try:
            b = next(batches)
            objs = b.to_pylist()
        except StopIteration:
            return
        except Exception as e:  # truncated or corrupt data past the rows read
            yield Raw(row, error=f"{what} is truncated or corrupt after row {row}: {type(e).__name__}: {e}")
            return
        for obj in objs:
            yield Raw(row, obj=obj)
            row += 1


def read_parquet(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise ShardError(f"not a readable Parquet file ({e})") from e
    yield from _arrow_rows(pf.iter_batches(batch_size=2048), "Parquet file")


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
    yield from _arrow_rows(batches, "Arrow IPC stream")


class _ChunkIO(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self.it, self.buf = chunks, b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self.buf:
            try:
                self.buf = next(self.it)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n


def read_csv(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """CSV with a header row. Bytes that are not UTF-8 cost only the row that holds them."""
    csv.field_size_limit(limits.max_line_bytes)
    src = Source(path, comp, limits)
    text = io.TextIOWrapper(io.BufferedReader(_ChunkIO(src.chunks()), 1 << 20), encoding="utf-8-sig",
                            errors="surrogateescape", newline="")
    row = 0
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise ShardError(f"CSV header cannot be read: {e}") from e
    if header is None:
        if src.error:
            yield _damage(src, 0, 0, limits)
        return
    if any(_SURR.search(h) for h in header):
        header = [shard_label(h) for h in header]
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
        bad = next((i for i, c in enumerate(cells) if _SURR.search(c)), None)
        if bad is not None:
            yield Raw(row, error=f"invalid UTF-8 in CSV field {bad + 1} (e.g. Latin-1 text)",
                      text=_preview(shard_label(",".join(cells)), limits))
        elif len(cells) != len(header):
            yield Raw(row, error=f"CSV row has {len(cells)} fields, the header has {len(header)}",
                      text=_preview(",".join(cells), limits))
        else:
            yield Raw(row, obj=dict(zip(header, cells)))
        row += 1
    if src.error:
        yield _damage(src, row, row, limits)


def read_text_lines(path: Path, comp: str | None, limits: Limits) -> Iterator[Raw]:
    """Plain text: one document per non-blank line (e.g. a wiki dump converted to text)."""
    src = Source(path, comp, limits)
    row = line_no = 0
    for line_no, line, why in iter_lines(src, limits):  # noqa: B007 - line_no is read after the loop
        if why is not None:
            yield Raw(row, error=why, text=_preview(line, limits))
            row += 1
            continue
        if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        try:
            yield Raw(row, obj={"text": line.decode("utf-8").rstrip("\r")})
        except UnicodeDecodeError as e:
            yield Raw(row, error=f"invalid UTF-8 at byte {e.start}", text=_preview(line, limits))
        row += 1
    if src.error:
        yield _damage(src, row, line_no, limits)


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

    row = seen = 0
    try:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if not str(rec.format).startswith("warc"):  # warcio reads any text as an old ARC file
                    if not seen:
                        raise ShardError(f"not a WARC/WET file: the first record is not a WARC record "
                                         f"(read as {rec.format})")
                    yield Raw(row, error=f"record {seen} is not a WARC record; the rest of the file is not read")
                    return
                seen += 1
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
    except ShardError:
        raise
    except Exception as e:  # warcio raises ArchiveLoadFailed and decompression errors
        if row == 0:
            raise ShardError(f"not a readable WARC/WET file ({type(e).__name__}: {e})") from e
        yield Raw(row, error=f"WARC stream is truncated or corrupt ({type(e).__name__}: {e})")
        return
    if not seen and path.stat().st_size:
        raise ShardError("not a WARC/WET file: no WARC record found")


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


def check_regular(path: Path) -> None:
    """Refuse what is not a regular file (devices, FIFOs, sockets): reading one may never end."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ShardError(f"cannot read file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        what = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        link = f" (via a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise ShardError(f"refused: {what}{link}, not a regular file")


def _guarded(raws: Iterator[Raw]) -> Iterator[Raw]:
    """No reader error ends a scan: before the first row it is the shard's error; after, one malformed item."""
    row, n = 0, 0
    try:
        for r in raws:
            n += 1
            row = r.row + 1
            yield r
    except ShardError as e:
        if not n:
            raise
        yield Raw(row, error=f"the rest of the shard cannot be read: {e}")
    except Exception as e:
        if not n:
            raise ShardError(f"cannot read the shard: {type(e).__name__}: {e}") from e
        yield Raw(row, error=f"the rest of the shard cannot be read: {type(e).__name__}: {e}")


def read_shard(path: Path, limits: Limits | None = None) -> Iterator[Raw]:
    limits = limits or Limits()
    check_regular(path)
    if not os.access(path, os.R_OK):
        raise ShardError("file is not readable")
    ext, comp = split_ext(path)
    if ext in (".warc", ".wet"):
        return _guarded(read_warc(path, comp, limits))
    reader = READERS.get(ext)
    if reader is None:
        raise ShardError(f"unsupported format '{''.join(path.suffixes) or path.name}'")
    return _guarded(reader(path, comp, limits))
