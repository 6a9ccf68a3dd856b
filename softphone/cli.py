"""The ``softphone`` command line: one entry point, one subcommand per app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from softphone import __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softphone",
        description="SIP softphone and PBX edge with a built-in policy guard.",
    )
    parser.add_argument("--version", action="version", version=f"softphone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("selfcheck", help="check the native hot path, every configured codec "
                                         "and the prompt engine; say how to get what is missing")
    from softphone.apps import selfcheck

    selfcheck.add_arguments(p)
    p.set_defaults(handler=selfcheck.main)
    from softphone.edge.app import add_parser as add_edge

    add_edge(sub)
    p = sub.add_parser("call", help="place one call, stay in it, hang up (exit 0 if all went well)")
    from softphone.apps import call as call_app

    call_app.add_arguments(p)
    p.set_defaults(handler=call_app.main)
    p = sub.add_parser("status", help="the live state of a running edge (calls, registrations, "
                                      "ports, policy) from its HTTP API")
    from softphone.apps import status as status_app

    status_app.add_arguments(p)
    p.set_defaults(handler=status_app.main)
    p = sub.add_parser("agent", help="the headless phone: accounts from a file, driven over MQTT")
    from softphone.apps import agent as agent_app

    agent_app.add_arguments(p)
    p.set_defaults(handler=agent_app.main)
    p = sub.add_parser("desktop", help="the desktop softphone window (Qt; the desktop extra)")
    from softphone.apps import desktop as desktop_app

    desktop_app.add_arguments(p)
    p.set_defaults(handler=desktop_app.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
