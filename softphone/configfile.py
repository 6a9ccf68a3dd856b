"""TOML configuration files whose errors name the key and the line.

tomllib reports syntax errors with a line but gives no positions for valid keys, so a
value error ("rtp_ports must look like 20000-22000") is located by scanning the text for
the key inside its table. Used by the edge config and the policy tables.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("?)([A-Za-z0-9_.-]+)\1\s*=')


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, key and line."""

    def __init__(self, path: str, key: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}")
        self.path = path
        self.key = key
        self.line = line
        self.detail = message


@dataclass(frozen=True)
class ConfigText:
    """A parsed TOML document with what is needed to point at its lines."""

    path: str
    text: str
    data: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> ConfigText:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(p), "-", f"cannot read: {exc.strerror}") from None
        return cls.parse(text, str(p))

    @classmethod
    def parse(cls, text: str, path: str = "<config>") -> ConfigText:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ConfigError(path, "-", f"not valid TOML: {exc}",
                              int(m.group(1)) if m else None) from None
        return cls(path, text, data)

    @classmethod
    def embedded(cls, name: str) -> ConfigText:
        """One of the shipped files in configs/ (installed as ``softphone.configs``)."""
        ref = resources.files("softphone.configs").joinpath(name)
        return cls.parse(ref.read_text(encoding="utf-8"), f"configs/{name}")

    def line_of(self, dotted: Sequence[str | int]) -> int | None:
        """The 1-based line of a key such as ("media", "rtp_ports") or ("users", 2, "ext").

        Array-of-tables indexes count the ``[[name]]`` headers. Returns None when the key is
        not written in the file (a default was used).
        """
        keys = [k for k in dotted if isinstance(k, str)]
        indexes = [k for k in dotted if isinstance(k, int)]
        if not keys:
            return None
        table, leaf = ".".join(keys[:-1]), keys[-1]
        want_index = indexes[0] if indexes else None
        current = ""
        seen: dict[str, int] = {}
        header_line: int | None = None
        for no, line in enumerate(self.text.splitlines(), start=1):
            m = _TABLE.match(line)
            if m:
                current = m.group(1).strip()
                seen[current] = seen.get(current, -1) + 1
                if current == ".".join(keys) and (want_index is None or seen[current] == want_index):
                    header_line = no
                continue
            if current != table or (want_index is not None and seen.get(current) != want_index):
                continue
            k = _KEY.match(line)
            if k and k.group(2) == leaf:
                return no
        return header_line

    def error(self, dotted: Sequence[str | int], message: str) -> ConfigError:
        key = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in dotted).replace(".[", "[")
        return ConfigError(self.path, key, message, self.line_of(dotted))


class Section:
    """Typed reads from one table, each failure naming key and line."""

    def __init__(self, doc: ConfigText, path: tuple[str | int, ...], data: dict[str, Any],
                 known: Sequence[str] | None = None) -> None:
        self.doc = doc
        self.path = path
        self.data = data
        if known is not None:
            for key in data:
                if key not in known:
                    raise doc.error((*path, key), f"unknown key (expected one of: {', '.join(known)})")

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], label: str) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise self.doc.error((*self.path, key), "missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind is not bool:
            raise self.doc.error((*self.path, key), f"must be {label}, not a boolean")
        if not isinstance(value, kind):
            raise self.doc.error((*self.path, key), f"must be {label}, got {value!r}")
        return value

    def text(self, key: str, default: Any = None) -> str:
        value: str = self._get(key, _REQUIRED if default is None else default, str, "a string")
        return value

    def integer(self, key: str, default: Any = None, *, lo: int | None = None,
                hi: int | None = None) -> int:
        value: int = self._get(key, _REQUIRED if default is None else default, int, "an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.doc.error((*self.path, key), f"must be between {lo} and {hi}, got {value}")
        return value

    def boolean(self, key: str, default: Any = None) -> bool:
        value: bool = self._get(key, _REQUIRED if default is None else default, bool, "true or false")
        return value

    def texts(self, key: str, default: Any = None) -> list[str]:
        value = self._get(key, _REQUIRED if default is None else default, list, "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise self.doc.error((*self.path, key), "must be a list of strings")
        return list(value)

    def error(self, key: str, message: str) -> ConfigError:
        return self.doc.error((*self.path, key), message)


_REQUIRED: Any = object()
