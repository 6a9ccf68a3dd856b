"""softphone.configfile: the one place that finds which line of a TOML file holds a key, for
the edge configuration and the policy tables alike."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.configfile import ConfigError, ConfigText, format_key

DOC = '''\
title = "edge"          # line 1
[sip]
udp_port = 5060
"quoted.key" = 1
'a "b"' = 2
"esc\\"aped" = 3
nested.dotted.key = 4

[[users]]
ext = "1001"
location = { country = "FR", city = "Paris" }

[[users]]
ext = "1002"
notes = """
[sip]
udp_port = 1
"""
codes = [
  ["a", "b"],
  ["c"],
]
[users.extra]
level = 1
[[users.phones]]
mac = "00:11"
[[users.phones]]
mac = "00:22"

[[users]]
ext = "1003"
'''


def line(text: str, needle: str, nth: int = 0) -> int:
    hits = [no for no, ln in enumerate(text.splitlines(), start=1) if ln.startswith(needle)]
    return hits[nth]


@pytest.fixture(scope="module")
def doc() -> ConfigText:
    return ConfigText.parse(DOC, "edge.toml")


@pytest.mark.parametrize(("key", "needle", "nth"), [
    (("title",), "title", 0),
    (("sip",), "[sip]", 0),
    (("sip", "udp_port"), "udp_port", 0),
    (("sip", "quoted.key"), '"quoted.key"', 0),
    (("sip", 'a "b"'), "'a \"b\"'", 0),
    (("sip", 'esc"aped'), '"esc', 0),
    (("sip", "nested", "dotted", "key"), "nested.dotted", 0),
    (("users",), "[[users]]", 0),
    (("users", 0), "[[users]]", 0),
    (("users", 1), "[[users]]", 1),
    (("users", 2, "ext"), 'ext = "1003"', 0),
    (("users", 1, "codes"), "codes", 0),
    (("users", 1, "extra", "level"), "level", 0),
    (("users", 1, "phones", 1, "mac"), 'mac = "00:22"', 0),
    (("users", 1, "phones", 0), "[[users.phones]]", 0),
])
def test_written_keys_are_found(doc: ConfigText, key: tuple[str | int, ...], needle: str,
                                nth: int) -> None:
    assert doc.line_of(key) == line(DOC, needle, nth)


def test_lines_inside_multiline_values_are_not_keys(doc: ConfigText) -> None:
    # the string holds "[sip]" and "udp_port = 1"; the array holds ["c"], which looks a header
    assert doc.line_of(("sip", "udp_port")) == 3
    assert doc.line_of(("users", 1, "ext")) == line(DOC, 'ext = "1002"')
    assert doc.line_of(("c",)) is None


def test_unwritten_keys_point_at_their_nearest_written_parent(doc: ConfigText) -> None:
    # a key of an inline table: the line of the table
    assert doc.line_of(("users", 0, "location", "city")) == line(DOC, "location")
    # a default: the table (here the array entry) it would be written in
    assert doc.line_of(("users", 2, "password")) == line(DOC, "[[users]]", 2)
    assert doc.line_of(("sip", "nested", "other")) == line(DOC, "nested.dotted")
    assert doc.line_of(("media", "rtp_ports")) is None
    assert doc.line_of(()) is None


def test_error_names_file_key_and_line(doc: ConfigText) -> None:
    err = doc.error(("users", 1, "phones", 1, "mac"), "not a MAC address")
    assert isinstance(err, ConfigError)
    at = line(DOC, 'mac = "00:22"')
    assert (err.path, err.key, err.line, err.detail) == (
        "edge.toml", "users[1].phones[1].mac", at, "not a MAC address")
    assert str(err) == f"edge.toml:{at}: users[1].phones[1].mac: not a MAC address"
    assert format_key(("sip", 'a "b"', "x.y", 3)) == 'sip."a \\"b\\""."x.y"[3]'


class LocalError(ConfigError):
    pass


def test_errors_have_the_documents_own_type(tmp_path: Any) -> None:
    assert isinstance(ConfigText.parse("a = 1", error_type=LocalError).error(("a",), "x"),
                      LocalError)
    with pytest.raises(LocalError) as exc:
        ConfigText.parse("a = 1\nb = = 2\n", "x.toml", error_type=LocalError)
    assert (exc.value.line, exc.value.key) == (2, "-") and "not valid TOML" in exc.value.detail
    with pytest.raises(LocalError, match="cannot read"):
        ConfigText.load(tmp_path / "absent.toml", error_type=LocalError)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(LocalError, match="not UTF-8"):
        ConfigText.load(latin, error_type=LocalError)


# -- property: a document written from random data, each key's line recorded as it is written

KEYS = st.one_of(st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True),
                 st.text(st.sampled_from('ab .="#[]\'\\'), min_size=1, max_size=6))
SCALARS = st.one_of(st.integers(-5, 5), st.booleans(),
                    st.text(st.sampled_from('ab =#[]{}"\'\\\n'), max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
TABLE = st.dictionaries(KEYS, VALUES, max_size=4)
DOCS = st.dictionaries(
    KEYS, st.one_of(TABLE, st.lists(TABLE, min_size=1, max_size=3)), max_size=4)


def toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else \
        '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        if "\n" in v:  # multi-line, so lines of it may look like headers or keys
            body = v.replace("\\", "\\\\").replace('"', '\\"')
            return f'"""\n{body}"""'
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # arrays one element a line, so their lines may look like headers
    return "[\n" + "".join(f"  {toml_value(x)},\n" for x in v) + "]"


def write(data: dict[str, Any]) -> tuple[str, dict[tuple[str | int, ...], int]]:
    out: list[str] = []
    lines: dict[tuple[str | int, ...], int] = {}

    def table(path: tuple[str | int, ...], items: dict[str, Any]) -> None:
        for k, v in items.items():
            lines[(*path, k)] = len(out) + 1
            out.extend(f"{toml_key(k)} = {toml_value(v)}".split("\n"))

    for name, body in data.items():
        if isinstance(body, dict):
            lines[(name,)] = len(out) + 1
            out.append(f"[{toml_key(name)}]")
            table((name,), body)
        else:
            for i, entry in enumerate(body):
                lines[(name, i)] = len(out) + 1
                out.append(f"[[{toml_key(name)}]]")
                table((name, i), entry)
    return "\n".join(out) + "\n", lines


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_every_written_key_is_found_on_its_line(data: dict[str, Any]) -> None:
    text, lines = write(data)
    assert tomllib.loads(text) == data  # the writer is right, so the lines are too
    doc = ConfigText.parse(text)
    for key, no in lines.items():
        assert doc.line_of(key) == no, (key, text)
