"""Coverage-guided fuzzing of the SIP parser with atheris (libFuzzer), for long runs.

Not collected by pytest (the name does not start with test_). The same oracle as
tests/sip/test_fuzz_parser.py: only SipParseError may leave parse_message and StreamFramer,
the last-resort conversion of an unexpected exception never runs, and what parses serialises to
bytes that parse again to the same header fields.

Run (atheris needs a clang-built CPython wheel; it is the "fuzz" extra):

    .venv/bin/pip install -e '.[fuzz]'
    mkdir -p /tmp/sip-corpus && cp tests/sip/data/*/*.dat /tmp/sip-corpus/
    .venv/bin/python tests/sip/fuzz_atheris.py /tmp/sip-corpus -max_len=4096 -runs=1000000

libFuzzer options follow the corpus directory (-max_total_time=600, -jobs=2...). A crash
leaves crash-<sha1> in the working directory: add it to tests/sip/data/ as a regression vector.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from softphone.sip.errors import SipParseError
    from softphone.sip.message import StreamFramer, error_response, parse_message


def one_input(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as err:
        if err.reason.startswith("Malformed message ("):
            raise AssertionError(f"unexpected exception converted: {err.reason}") from err
        resp = error_response(err)
        if resp is not None:
            resp.to_bytes()
    else:
        for name in ("vias", "from_", "to", "cseq", "contacts"):
            try:
                getattr(msg, name)
            except SipParseError:
                pass
        again = parse_message(msg.to_bytes())
        same = [h for h in again.headers if h[0] != "Content-Length"]
        if same != [h for h in msg.headers if h[0] != "Content-Length"]:
            raise AssertionError("serialised message parses to other header fields")
    framer = StreamFramer()
    try:
        half = len(data) // 2
        framer.feed(data[:half])
        framer.feed(data[half:])
    except SipParseError as err:
        if err.reason.startswith("Malformed stream ("):
            raise AssertionError(err.reason) from err


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
