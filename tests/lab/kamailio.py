"""Debian's kamailio for the lab tests: where its modules are, and the global part of a config.

Each test writes its own routing script after ``header(...)``; the text keeps ``{port}`` (and
doubled braces in the script) for the test's ``str.format``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")  # Debian's multiarch folder

CORE_MODULES = ("kex", "corex", "tm", "sl")


def header(modules: tuple[str, ...], *, children: int = 2, tcp_children: int | None = 1) -> str:
    """Loopback only, no DNS, ``{port}`` to fill in; the core modules, then ``modules``."""
    lines = ["#!KAMAILIO", "debug=2", "log_stderror=yes", f"children={children}"]
    if tcp_children is not None:
        lines.append(f"tcp_children={tcp_children}")
    lines += ["listen=udp:127.0.0.1:{port}", "auto_aliases=no", 'alias="127.0.0.1:{port}"',
              "dns=no", "rev_dns=no", "use_dns_cache=off", "dns_try_ipv6=no",
              f'mpath="{MODULES}/"']
    lines += [f'loadmodule "{m}.so"' for m in (*CORE_MODULES, *modules)]
    return "\n".join(lines) + "\n"
