"""TOML configuration files whose errors name the key and the line.

tomllib reports syntax errors with a line but gives no positions for valid keys, so a value
error ("rtp_ports must look like 20000-22000") is located by reading the text once more for
where each key is written: table headers, ``[[array]]`` entries counted per array (nested ones
included), dotted and quoted keys, and nothing inside a multi-line string or array. A key that
is not written itself (a default was used, or it sits in an inline table) points at its nearest
written parent (the locating is ``softphone.policy.tomlkeys``, which the policy tables use
on their own). Used by the edge config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from softphone.policy.tomlkeys import KeyedError, KeyLines, format_key, parse_toml, read_text


class ConfigError(KeyedError):
    """A configuration file that cannot be used; the message names file, key and line."""


@dataclass(frozen=True)
class ConfigText:
    """A parsed TOML document with what is needed to point at its lines.

    ``error_type`` is the :class:`ConfigError` subclass its errors are raised as, so that a
    module with its own error type (the policy tables) still shares one way of locating keys.
    """

    path: str
    text: str
    data: dict[str, Any]
    error_type: type[ConfigError] = field(default=ConfigError, compare=False)

    @classmethod
    def load(cls, path: str | Path, *,
             error_type: type[ConfigError] = ConfigError) -> ConfigText:
        return cls.parse(read_text(path, error_type), str(Path(path)), error_type=error_type)

    @classmethod
    def parse(cls, text: str, path: str = "<config>", *,
              error_type: type[ConfigError] = ConfigError) -> ConfigText:
        return cls(path, text, parse_toml(text, path, error_type), error_type)

    @classmethod
    def embedded(cls, name: str, *,
                 error_type: type[ConfigError] = ConfigError) -> ConfigText:
        """One of the shipped files in configs/ (installed as ``softphone.configs``)."""
        ref = resources.files("softphone.configs").joinpath(name)
        return cls.parse(ref.read_text(encoding="utf-8"), f"configs/{name}",
                         error_type=error_type)

    def line_of(self, dotted: Sequence[str | int]) -> int | None:
        """The 1-based line of a key such as ("media", "rtp_ports") or ("users", 2, "ext"),
        or of its nearest written parent (see :class:`softphone.policy.tomlkeys.KeyLines`)."""
        return self._keys.line_of(dotted)

    @cached_property
    def _keys(self) -> KeyLines:
        return KeyLines(self.text)

    def error(self, dotted: Sequence[str | int], message: str) -> ConfigError:
        return self.error_type(self.path, format_key(dotted), message, self.line_of(dotted))

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
