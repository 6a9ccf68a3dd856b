"""What the edge does on an operator's signals: SIGHUP reloads, SIGTERM drains.

SIGHUP (``reload``): the configuration file is read again and checked whole, as at start
(``load_edge_config``: a bad file is a ``ConfigError`` naming the key and the line). A bad
file is refused, logged with its key and line, and the old configuration stays in force. A
good one replaces, without touching a call in progress: the users and their passwords (digest
of the next REGISTER or INVITE; a nonce already handed out stays valid), the users the guard
knows (``[account]`` plan, state, trial, options, each user's channels, numbers, location,
emergency and recording settings: the next decision uses them), the PSAP call-back window,
and the recording options (the purge job is told what was switched on or off, R-REC-4). Listening addresses and ports,
the RTP range, the data directory, the trunk and the policy tables need a restart: a change
there is logged as not applied.

SIGTERM (``drain``): the edge stops taking calls (a new INVITE gets 503 with Retry-After,
``/healthz`` says "draining"; REGISTER, in-dialog requests and emergency calls go on), lets the
calls in progress go on for up to ``--drain-timeout`` seconds, then ends those left with BYE
on both legs, and closes the ledger, the audit log and the call log as at any stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from softphone.configfile import ConfigError
from softphone.edge.config import EdgeConfig, check_exposure

if TYPE_CHECKING:
    from softphone.edge.app import Edge

__all__ = ["RESTART_ONLY", "drain", "reload"]

log = logging.getLogger("softphone.edge")

# what a reload cannot change in a running process
RESTART_ONLY = ("bind", "udp_port", "tcp_port", "tls_port", "media_bind", "rtp_first",
                "rtp_last", "data_dir", "trunk_uri", "trunk_expires", "http_bind", "http_port",
                "domain", "realm", "codecs", "flood_rate", "flood_burst", "t1")


def reload(edge: Edge, load: Callable[[], EdgeConfig]) -> bool:
    """Apply the configuration ``load()`` returns (the file and the command line's flags);
    False, with the old configuration kept, when it is refused."""
    from softphone.edge.app import policy_users

    old = edge.cfg
    try:
        new = load()
        check_exposure(new)
    except ConfigError as exc:
        log.error("reload refused, the configuration in force is kept: %s", exc)
        return False
    except OSError as exc:
        log.error("reload refused, the configuration in force is kept: %s", exc)
        return False
    kept = [k for k in RESTART_ONLY if getattr(new, k) != getattr(old, k)]
    if kept:
        log.warning("reload: %s changed in the file but need a restart; not applied",
                    ", ".join(kept))
        new = replace(new, **{k: getattr(old, k) for k in kept})
    if edge.auth is not None:
        edge.auth.update(new)
    names = {u.ext for u in new.users}
    if edge.local_users is not None:
        edge.local_users.intersection_update(names)
        edge.local_users.update(names)
    if edge.admission is not None:
        edge.admission.users = policy_users(new).get
    if edge.retention is not None:
        edge.retention.sync_options(new.account_id, new.recording,
                                    {u.ext: u.recording for u in new.users}, time.time())
    edge.b2bua.callbacks.window_s = new.emergency_callback_s
    if edge.store is not None:
        edge.store.flush()
    edge.cfg = new
    changed = sorted({u.ext for u in new.users} ^ {u.ext for u in old.users})
    log.info("configuration reloaded from %s: %d users%s; account %s, plan %s, state %s, "
             "recording %s", new.source, len(new.users),
             f" (added or removed: {', '.join(changed)})" if changed else "",
             new.account_id, new.plan.value, new.state.value, "on" if new.recording else "off")
    return True


async def drain(edge: Edge, timeout: float, poll: float = 0.1) -> int:
    """Refuse new calls, wait up to ``timeout`` seconds for those in progress to end; returns
    how many were still up (``Edge.close`` then ends them with BYE)."""
    edge.b2bua.draining = True
    live = edge.b2bua.live_calls
    log.warning("SIGTERM: draining; new calls get 503, %d in progress may go on for up to "
                "%g s", live, timeout)
    end = asyncio.get_running_loop().time() + max(0.0, timeout)
    while edge.b2bua.live_calls and asyncio.get_running_loop().time() < end:
        await asyncio.sleep(poll)
    left = edge.b2bua.live_calls
    if left:
        log.warning("drain timeout: ending the %d call(s) still up with BYE", left)
    else:
        log.info("drained: no call in progress")
    return left
