"""Where each key of a TOML text is written (pure: text in, line numbers out).

tomllib reports syntax errors with a line but gives no positions for valid keys, so a value
error ("rtp_ports must look like 20000-22000") is located by reading the text once more for
where each key is written: table headers, ``[[array]]`` entries counted per array (nested ones
included), dotted and quoted keys, and nothing inside a multi-line string or array. A key that
is not written itself (a default was used, or it sits in an inline table) points at its nearest
written parent. The policy tables use it, and so does ``softphone.configfile`` for the edge's
own configuration.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

KeyPath = tuple[str | int, ...]  # ("users", 2, "location", "city"): ints index [[arrays]]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_KEYPART = re.compile(r"""[ \t]*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))[ \t]*""")
_BASIC = re.compile(r'"(?:[^"\\]|\\.)*"')


class KeyedError(ValueError):
    """A TOML file that cannot be used: ``path``, ``key`` (dotted), ``line`` (or None) and
    ``detail``; the message reads ``path:line: key: detail``."""

    def __init__(self, path: str, key: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}")
        self.path = path
        self.key = key
        self.line = line
        self.detail = message


E = TypeVar("E", bound=KeyedError)


def read_text(path: str | Path, error_type: type[E]) -> str:
    """A configuration file's text; unreadable or not UTF-8: ``error_type`` naming the file."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise error_type(str(p), "-", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error_type(str(p), "-", f"not UTF-8 text: {exc.reason}") from None


def parse_toml(text: str, path: str, error_type: type[E]) -> dict[str, Any]:
    """The TOML document; a syntax error is ``error_type`` naming the file and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise error_type(path, "-", f"not valid TOML: {exc}",
                         int(m.group(1)) if m else None) from None


def format_key(dotted: Sequence[str | int]) -> str:
    """A key path as TOML writes it: ``users[1].ext``, ``emergency.codes.FR."1 2"``."""
    out = ""
    for k in dotted:
        if isinstance(k, int):
            out += f"[{k}]"
            continue
        if not _BARE.fullmatch(k):
            k = '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out += f".{k}" if out else k
    return out


class KeyLines:
    """The lines of the keys written in one TOML text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def line_of(self, dotted: Sequence[str | int]) -> int | None:
        """The 1-based line of a key such as ("media", "rtp_ports") or ("users", 2, "ext").

        An int is the 0-based entry of the ``[[array]]`` named before it. A key that is not
        written gives the line of its nearest written parent (a missing key its table, a key
        of an inline table the line of that table); None when no part of it is written.
        """
        written, implied = self._lines
        key = tuple(dotted)
        for n in range(len(key), 0, -1):
            line = written.get(key[:n]) or implied.get(key[:n])
            if line is not None:
                return line
        return None

    @cached_property
    def _lines(self) -> tuple[dict[KeyPath, int], dict[KeyPath, int]]:
        """(line of every key path written, line where each table only implied first shows)."""
        written: dict[KeyPath, int] = {}
        implied: dict[KeyPath, int] = {}
        entries: dict[KeyPath, int] = {}  # [[array]] path -> entries seen so far
        table: KeyPath = ()
        for no, is_array, header, parts in _statements(self.text):
            if header:
                # a header's parents that are arrays of tables mean their latest entry
                path: KeyPath = ()
                for part in parts[:-1]:
                    path = (*path, part)
                    if path in entries:
                        path = (*path, entries[path] - 1)
                    implied.setdefault(path, no)
                path = (*path, parts[-1])
                if is_array:
                    written.setdefault(path, no)
                    entries[path] = entries.get(path, 0) + 1
                    path = (*path, entries[path] - 1)
                table = path
                written.setdefault(path, no)
            else:
                for n in range(1, len(parts)):
                    implied.setdefault((*table, *parts[:n]), no)
                written.setdefault((*table, *parts), no)
        return written, implied


def _statements(text: str) -> Iterator[tuple[int, bool, bool, list[str]]]:
    """(line, is ``[[array]]``, is a header, key parts) of every header and ``key =`` line.

    Lines inside a multi-line string or an array or inline table spanning lines are values, not
    statements, however much they look like ``[header]`` or ``key = 1``.
    """
    depth, quote = 0, ""
    for no, line in enumerate(text.splitlines(), start=1):
        if quote or depth:
            depth, quote = _scan_value(line, 0, depth, quote)
            continue
        start = len(line) - len(line.lstrip())
        if line.startswith("[", start):
            is_array = line.startswith("[[", start)
            key = _key(line, start + (2 if is_array else 1))
            if key is not None:
                yield no, is_array, True, key[0]
            continue
        key = _key(line, start)
        if key is not None and line.startswith("=", key[1]):
            yield no, False, False, key[0]
            depth, quote = _scan_value(line, key[1] + 1, 0, "")


def _key(line: str, pos: int) -> tuple[list[str], int] | None:
    """The parts of the dotted key (``a."b.c".d``) at ``pos`` and where it ends, or None."""
    parts: list[str] = []
    while True:
        m = _KEYPART.match(line, pos)
        if m is None:
            return None
        basic, literal, bare = m.groups()
        parts.append(_unescape(basic) if basic is not None else
                     literal if literal is not None else bare)
        pos = m.end()
        if not line.startswith(".", pos):
            return parts, pos
        pos += 1


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:  # the document parsed, so its escapes are valid: let tomllib decode them
        return str(tomllib.loads(f'k = "{raw}"')["k"])
    except tomllib.TOMLDecodeError:
        return raw


def _scan_value(line: str, pos: int, depth: int, quote: str) -> tuple[int, str]:
    """Read a value's text to the end of the line: (open brackets, open multi-line quote)."""
    i, n = pos, len(line)
    while i < n:
        if quote:
            end = _closing(line, i, quote)
            if end < 0:
                return depth, quote
            i, quote = end, ""
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith(('"""', "'''"), i):
            quote, i = line[i:i + 3], i + 3
            continue
        if c == '"':
            m = _BASIC.match(line, i)
            i = m.end() if m else n
            continue
        if c == "'":
            j = line.find("'", i + 1)
            i = n if j < 0 else j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth, quote


def _closing(line: str, pos: int, quote: str) -> int:
    """Where a multi-line string opened with ``quote`` ends on this line, or -1."""
    while True:
        k = line.find(quote, pos)
        if k < 0:
            return -1
        backslashes = len(line[:k]) - len(line[:k].rstrip("\\"))
        if quote == '"""' and backslashes % 2:
            pos = k + 1
            continue
        end = k + 3
        while end < len(line) and line[end] == quote[0] and end - k < 5:
            end += 1  # up to two quotes may end the content right before the delimiter
        return end
