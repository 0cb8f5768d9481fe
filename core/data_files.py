"""Reading dataset files: JSONL, JSON and CSV into `(line, row)` records.

Public API: `read_records(source, fmt=None) -> (records, issues)`, plus `Issue`, `DataError`
and `is_messages`, which `core.data` re-exports. Every record keeps the file line it started
on, so later messages can name it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "json", "csv")
ROLES = ("system", "user", "assistant")

class DataError(ValueError):
    """A dataset cannot be read at all; the message names the file or value and the fix."""


@dataclass(frozen=True)
class Issue:
    """One problem found in one row, with what was done about it."""

    line: int  # 1-based line in the source file (item number for a table edited in the page)
    field: str  # the field at fault, "" for the whole row
    message: str  # what is wrong, in plain words
    action: str  # "dropped", "cut" or "changed": what happened to the row

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message} (row {self.action})"


Record = tuple[int, dict]  # (1-based line, row)


def read_records(source: Any, fmt: str | None = None) -> tuple[list[Record], list[Issue]]:
    """Read JSONL, JSON or CSV into `(line, row)` pairs.

    `source` is a path, raw bytes (an upload) or a list of dicts. `fmt` is one of "jsonl",
    "json", "csv"; by default it comes from the file suffix, or for bytes from the first
    character. Lines that are not valid UTF-8 or not valid JSON are reported and skipped.
    Raises DataError when the whole source cannot be read.
    """
    if isinstance(source, list):
        return _records_from_list(source, first_line=1)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"Dataset file {path} not found; check the path.")
        data = path.read_bytes()
        fmt = fmt or path.suffix.lstrip(".").lower()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        fmt = fmt or _sniff_format(data)
    else:
        raise DataError(f"Cannot read a dataset from {type(source).__name__}; pass a path, "
                        "bytes or a list of dicts.")
    if fmt not in FORMATS:
        raise DataError(f"Unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark, as spreadsheet programs write
    lines, issues = _decode_lines(data)
    if fmt == "jsonl":
        records, more = _parse_jsonl(lines)
    elif fmt == "json":
        records, more = _parse_json(lines, bad_lines=len(issues))
    else:
        records, more = _parse_csv(lines)
    return records, issues + more


def _sniff_format(data: bytes) -> str:
    head = data.lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        try:
            return "json" if "rows" in json.loads(data) else "jsonl"
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            return "jsonl"
    return "csv"


def _decode_lines(data: bytes) -> tuple[list[tuple[int, str]], list[Issue]]:
    """Decode line by line so a bad byte costs one line, not the whole file."""
    lines, issues = [], []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append((number, raw.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as err:
            issues.append(Issue(number, "", f"invalid UTF-8 at byte {err.start} of the line; "
                                "save the file as UTF-8", "dropped"))
    return lines, issues


def _parse_jsonl(lines: list[tuple[int, str]]) -> tuple[list[Record], list[Issue]]:
    records, issues = [], []
    for number, text in lines:
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            issues.append(Issue(number, "", f"invalid JSON ({err.msg} at column {err.colno})",
                                "dropped"))
            continue
        if not isinstance(row, dict):
            issues.append(Issue(number, "", f"expected a JSON object, found "
                                f"{type(row).__name__}", "dropped"))
            continue
        records.append((number, row))
    return records, issues


def _parse_json(lines: list[tuple[int, str]], bad_lines: int) -> tuple[list[Record], list[Issue]]:
    """Parse a JSON array of objects (or {"rows": [...]}) and find each object's line."""
    text = "\n".join(line for _, line in lines)
    if bad_lines:
        raise DataError(f"The JSON file has {bad_lines} line(s) that are not valid UTF-8; "
                        "save it as UTF-8.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"Invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from err
    array_start = 0
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
        array_start = text.index('"rows"')
    if not isinstance(data, list):
        raise DataError("A JSON dataset must be an array of objects (or {\"rows\": [...]}).")
    starts = _object_start_lines(text, text.index("[", array_start) + 1)
    return _records_from_list(data, first_line=1, lines=starts if len(starts) == len(data) else None)


def _object_start_lines(text: str, index: int) -> list[int]:
    """Return the line where each element of the array whose body starts at `index` starts."""
    decoder = json.JSONDecoder()
    starts = []
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return starts
        starts.append(text.count("\n", 0, index) + 1)
        try:
            _, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return []


def _parse_csv(lines: list[tuple[int, str]]) -> tuple[list[Record], list[Issue]]:
    text = "\n".join(line for _, line in lines)
    numbers = [number for number, _ in lines]
    reader = csv.DictReader(io.StringIO(text))
    records, issues = [], []
    end = 1  # the header's last line
    for row in reader:
        number = numbers[min(end, len(numbers) - 1)]  # the line after the previous row ended
        end = reader.line_num
        if None in row:
            issues.append(Issue(number, "", "more cells than header columns", "dropped"))
            continue
        records.append((number, {k: _maybe_messages(v) for k, v in row.items() if k}))
    return records, issues


def _maybe_messages(value: str | None) -> Any:
    """Read a CSV cell holding a JSON list of chat messages as that list."""
    if value and value.lstrip().startswith("[{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if is_messages(parsed) else value
    return value


def _records_from_list(rows: list, first_line: int,
                       lines: list[int] | None = None) -> tuple[list[Record], list[Issue]]:
    records, issues = [], []
    for i, row in enumerate(rows):
        number = lines[i] if lines else first_line + i
        if isinstance(row, dict):
            records.append((number, row))
        else:
            issues.append(Issue(number, "", f"expected an object, found {type(row).__name__}",
                                "dropped"))
    return records, issues


def is_messages(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                    and m.get("role") in ROLES for m in value))
