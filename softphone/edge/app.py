"""``softphone edge``: the PBX edge process (registrar + B2BUA with anchored media).

Start-up order: validate the whole configuration (nothing binds on a bad file), create and
lock the data directory (``edge.lock``: a second edge on it exits 2 naming the lock and the
PID that holds it), bind the SIP transports and the RTP allocator, then print how to register a
phone and place a first call. SIGINT ends every call (BYE both legs) and frees every port
before exiting; SIGTERM first drains (new calls 503, calls in progress go on for up to
``--drain-timeout``), SIGHUP reloads users, passwords and ``[account]``
(``softphone.edge.lifecycle``). The operator's HTTP listener is ``softphone.edge.http``.

The notice a caller hears when an emergency call cannot be placed is spoken by espeak-ng from
the policy's announcement text, once, into ``<data dir>/prompts/`` at start; without espeak-ng
the edge plays the ITU-T E.180 special information tone instead (and says so in its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from softphone.audit import AuditLog, FsyncPolicy
from softphone.codecs.frame import runnable
from softphone.codecs.registry import Codec, codec_order_from_names
from softphone.configfile import ConfigError, ConfigText
from softphone.edge.b2bua import B2BUA
from softphone.edge.bindings import LocationService
from softphone.edge.callbacks import FILENAME as CALLBACKS_FILE
from softphone.edge.callbacks import CallbackWindows
from softphone.edge.calllog import CallLog
from softphone.edge.config import (
    Durability,
    EdgeConfig,
    Overrides,
    apply_overrides,
    check_exposure,
)
from softphone.edge.config import load_edge_config as load_config
from softphone.edge.datalock import DataDirBusy, lock_data_dir
from softphone.edge.digest import EdgeAuth
from softphone.edge.emergency_lane import EmergencyLane
from softphone.edge.flood import FloodGuard
from softphone.edge.recordings import RecordingStore
from softphone.edge.restart import record_dead_calls
from softphone.edge.retention import RetentionJob
from softphone.edge.room import MediaSettings
from softphone.edge.security import Security, SecurityLog, SecuritySettings
from softphone.edge.trunk import Trunk, TrunkError, TrunkUri, accounts_from_users
from softphone.ledgerstore import open_guard
from softphone.media.ports import PortAllocator
from softphone.media.prompts import EdgePrompts
from softphone.policy.admission import CallAdmission
from softphone.policy.config import PolicyConfig, PolicyConfigError
from softphone.policy.config import load as load_policy
from softphone.policy.config import load_default as load_default_policy
from softphone.policy.decision import Decision
from softphone.policy.facts import Account, AccountState, User
from softphone.policy.numbers import emergency_codes, emergency_urn
from softphone.sip.core import SipCore
from softphone.sip.transport import ListenSpec, TransportLayer

log = logging.getLogger("softphone.edge")

PURGE_EVERY_S = 3600.0             # the recordings purge job runs at start, then hourly
DRAIN_TIMEOUT_S = 60.0             # SIGTERM: how long calls in progress may go on
SWEEP_EVERY_S = 60.0               # live calls refresh their channels; orphans are released


@dataclass
class Edge:
    cfg: EdgeConfig
    transport: TransportLayer
    core: SipCore
    b2bua: B2BUA
    allocator: PortAllocator
    audit: AuditLog | None = None
    store: LedgerWriter | None = None
    retention: RetentionJob | None = None
    _status_task: asyncio.Task[None] | None = None
    _purge_task: asyncio.Task[None] | None = None
    _sweep_task: asyncio.Task[None] | None = None
    admission: CallAdmission | None = None
    auth: EdgeAuth | None = None
    local_users: set[str] | None = None   # the B2BUA's users (SIGHUP updates it in place)

    def status(self) -> dict[str, Any]:
        """What an operator (or a leak test) wants to see at a glance."""
        return {
            "live_calls": self.b2bua.live_calls,
            "media_objects": self.b2bua.allocator.media_objects,
            "ports_in_use": self.allocator.in_use,
            "ports_by_user": self.allocator.users(),
            "ports_refused": {"emergency_share": self.allocator.refused_reserve,
                              "per_user": self.allocator.refused_user},
            "registrations": len(self.b2bua.location),
            "transactions": len(self.core.transactions),
            "calls": dict(self.b2bua.stats),
            "sip": dict(self.core.stats),
            "rate_limited": self.transport.stats.rate_limited,
            "connections": connection_status(self.transport),
            "trunk": self.b2bua.trunk.status() if self.b2bua.trunk is not None else None,
            "auth_locked_out_refused": (self.b2bua.security.refused
                                        if self.b2bua.security is not None else 0),
        }

    def write_status(self) -> None:
        """``<data dir>/status.json``, replaced atomically."""
        path = self.cfg.data_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), sort_keys=True))
        os.replace(tmp, path)

    def start_status(self, interval: float = 1.0) -> None:
        async def loop() -> None:
            while True:
                self.write_status()
                await asyncio.sleep(interval)

        self._status_task = asyncio.get_running_loop().create_task(loop())

    def start_purge(self, every: float = PURGE_EVERY_S) -> None:
        """The recordings purge job (R-REC-3/4) and the ledger's compaction: now, then every
        ``every`` seconds."""
        job = self.retention
        if job is None:
            return

        async def loop() -> None:
            while True:
                try:
                    job.purge(time.time())
                    if self.store is not None:
                        self.store.compact(time.time())
                except Exception:  # a failed run is retried at the next one
                    log.exception("recordings purge or ledger compaction failed")
                await asyncio.sleep(every)

        self._purge_task = asyncio.get_running_loop().create_task(loop())

    def start_sweep(self, admission: CallAdmission, every: float = SWEEP_EVERY_S) -> None:
        """Every ``every`` seconds the live calls refresh their channels and the guard releases
        any channel left without a call (``CallAdmission.sweep``)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    admission.sweep(list(self.b2bua.calls), time.time())
                except Exception:
                    log.exception("channel sweep failed")

        self._sweep_task = asyncio.get_running_loop().create_task(loop())

    async def close(self) -> None:
        for task in (self._status_task, self._purge_task, self._sweep_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.b2bua.close()
        if self.b2bua.recordings is not None:
            self.b2bua.recordings.close()
        if self.b2bua.trunk is not None:
            self.b2bua.trunk.close()  # un-REGISTER every user upstream
        # let the BYEs leave before the sockets close
        await asyncio.sleep(0.05)
        await self.transport.close()
        self.b2bua.call_log.close()
        if self.b2bua.security is not None:
            self.b2bua.security.log.close()
        if self.store is not None:
            self.store.flush()  # what the last calls decided, before the files close
        if self.audit is not None:
            self.audit.close()
        if self.store is not None:
            self.store.store.close()
        for pair in self.allocator.held():
            self.allocator.release(pair)
        self.write_status()


def protected_connections(b2bua: B2BUA) -> set[int]:
    """The stream connections the edge needs: a live registration's (the phone is reached on
    it) and those of the calls up or being set up."""
    ids = b2bua.location.connections(b2bua.clock())
    for call in b2bua.calls.values():
        for addr in (call.a.source, *(f.binding_source for f in call.b.forks)):
            if addr.conn_id is not None:
                ids.add(addr.conn_id)
    return ids


def connection_status(transport: TransportLayer) -> dict[str, int]:
    st = transport.stats
    return {"open": transport.connection_count(), "evicted": st.evicted,
            "refused_full": st.refused_full, "refused_per_address": st.refused_per_address,
            "slow_closed": st.slow_closed, "idle_closed": st.idle_closed}


def check_extensions(cfg: EdgeConfig, policy: PolicyConfig) -> None:
    """No extension may be an emergency number where the users are: emergency codes are
    recognised before anything else (R-EMERG), so that user could never be called."""
    countries = {cfg.country, *(u.location.country for u in cfg.users if u.location)}
    for i, u in enumerate(cfg.users):
        for country in sorted(countries):
            if emergency_urn(u.ext, country, policy) is not None:
                try:
                    line = ConfigText.load(cfg.source).line_of(("users", i, "ext"))
                except (OSError, ConfigError):
                    line = None
                raise ConfigError(cfg.source, f"users[{i}].ext",
                                  f"{u.ext} is an emergency number in {country}: calls to it "
                                  "go to the emergency services, never to this user", line)


def policy_users(cfg: EdgeConfig) -> dict[str, User]:
    """The edge's local users as the guard sees them: one person each, one demo account."""
    account = Account(account_id=cfg.account_id, country=cfg.country,
                      seats=max(1, len(cfg.users)), state=cfg.state, plan=cfg.plan,
                      smart_pack=cfg.smart_pack, sip_option=cfg.sip_option, trial=cfg.trial,
                      emergency_activated=cfg.emergency, recording=cfg.recording,
                      outside_line_prefix=cfg.outside_line_prefix,
                      timezone=cfg.timezone)
    return {u.ext: User(user_id=u.ext, account=account, extra_channels=u.extra_channels,
                        numbers=(u.did,) if u.did else (),
                        location=u.location, emergency_activated=u.emergency,
                        recording=u.recording)
            for u in cfg.users}


class LedgerWriter:
    """The guard's decisions made durable once per event-loop turn, not once per decision.

    ``commit``/``record`` (the admission's effects) only queue; ``flush`` commits the ledger
    in one SQLite transaction and then writes the queued decisions to the audit log, in that
    order. The edge flushes before its SIP messages leave (the B2BUA's flush), so the ledger is
    still written ahead of every answer (with ``[data] durability = "full"``, the default, both
    are fsync'd by then: ledger ``synchronous=FULL``, one audit fsync per flush); anything decided outside a SIP event (a timer, a key
    press, a periodic job) is flushed at the end of the loop turn. A call costs three ledger
    transactions (INVITE, answer, end) instead of one per side and decision point.
    """

    def __init__(self, guard: Any, store: Any, audit: AuditLog, *,
                 sync_audit: bool = True) -> None:
        self.guard = guard
        self.store = store
        self.audit = audit
        self.sync_audit = sync_audit  # fsync the audit lines of each flush before returning
        self.pending: list[Decision] = []
        self._dirty = False
        self._scheduled = False
        self.decisions: Counter[tuple[str, str]] = Counter()  # (rule id, action): the metrics

    def commit(self) -> None:
        self._dirty = True
        self._schedule()

    def record(self, decision: Decision) -> None:
        self.decisions[decision.rule_id or "", decision.action.value] += 1
        self.pending.append(decision)
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a tool, a test): nothing to batch with
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._dirty:
            self._dirty = False
            self.store.commit(self.guard)
        pending, self.pending = self.pending, []
        for decision in pending:
            self.audit.record(decision)
        if pending and self.sync_audit:
            self.audit.flush()

    def compact(self, now: float) -> None:
        """Snapshot the ledger so that a restart replays hours, not months, of events."""
        self.flush()
        self.store.compact(self.guard, now)


def open_policy(cfg: EdgeConfig, policy: PolicyConfig) -> tuple[CallAdmission, AuditLog, Any]:
    """The guard over its SQLite ledger, the audit log, and the edge's admission adapter
    (its effects batched per loop turn by a ``LedgerWriter``, which is the returned store).

    Channels held by calls of a previous process that died are released here (and audited)
    before the first call is admitted.
    """
    full = cfg.durability is Durability.FULL
    guard, store, recovered = open_guard(policy, cfg.data_dir, time.time(),
                                         synchronous="FULL" if full else "NORMAL")
    audit = AuditLog(cfg.data_dir / "audit.jsonl", policy=FsyncPolicy.BATCH)
    for decision in recovered:
        audit.record(decision)
    writer = LedgerWriter(guard, store, audit, sync_audit=full)
    admission = CallAdmission(guard, policy_users(cfg).get, commit=writer.commit,
                              on_decision=writer.record)
    return admission, audit, writer


async def open_trunk(cfg: EdgeConfig, core: SipCore, flush: Any) -> Trunk:
    """The trunk with every user's own upstream account; the host resolved once, here, so
    that inbound INVITEs can be matched on their source address."""
    uri = TrunkUri.parse(cfg.trunk_uri)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(uri.uri.host_no_brackets, uri.port)
    except OSError as exc:
        raise TrunkError(f"cannot resolve trunk host {uri.host!r}: {exc}") from None
    address = uri.address(str(infos[0][4][0]))
    return Trunk(uri=uri, accounts=accounts_from_users(cfg.users), core=core, flush=flush,
                 clock=loop.time, schedule=loop.call_later, address=address,
                 expires=cfg.trunk_expires)


def runnable_codecs(cfg: EdgeConfig) -> tuple[Codec, ...]:
    """The configured codec order less what cannot run here, each left out said so at start
    (``softphone selfcheck`` says how to get it); none left is a configuration error."""
    order = []
    for codec in codec_order_from_names(cfg.codecs):
        why = runnable(codec)
        if why:
            log.warning("codec %s is not offered: %s (softphone selfcheck tells more)",
                        codec.name, why)
            continue
        order.append(codec)
    if not order:
        raise ConfigError(cfg.source, "media.codecs", "none of the codecs can run here")
    return tuple(order)


async def start_edge(cfg: EdgeConfig, policy: PolicyConfig | None = None) -> Edge:
    codecs = runnable_codecs(cfg)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    policy = policy or load_default_policy()
    record_dead_calls(cfg.data_dir)  # status.json at once; the calls a crash left unrecorded
    admission, audit, store = open_policy(cfg, policy)
    digit = policy.recording.objection_digit
    prompts = EdgePrompts(cfg.data_dir / "prompts",
                          {k: v.replace("{digit}", digit) for k, v in policy.announcements.items()})
    recordings = RecordingStore(cfg.data_dir / "recordings")
    retention = RetentionJob(admission, recordings)
    retention.sync_options(cfg.account_id, cfg.recording, {u.ext: u.recording for u in cfg.users},
                           time.time(), terminated=cfg.state is AccountState.TERMINATED)
    await asyncio.get_running_loop().run_in_executor(None, prompts.prepare)
    specs = []
    specs.append(ListenSpec("udp", cfg.bind, cfg.udp_port))
    specs.append(ListenSpec("tcp", cfg.bind, cfg.tcp_port))
    if cfg.tls_port:
        from softphone.sip.tls import DEMO_HOSTS, ensure_demo_cert, server_context

        cert, key = ensure_demo_cert(cfg.data_dir, hosts=(*DEMO_HOSTS, cfg.bind))
        specs.append(ListenSpec("tls", cfg.bind, cfg.tls_port, ssl=server_context(cert, key)))
    lane = EmergencyLane(emergency_codes(policy), cfg.outside_line_prefix)
    flood = FloodGuard(cfg, lane)
    transport = TransportLayer(admit=flood.admit if cfg.flood_rate else None,
                               charge=flood.charge if cfg.flood_rate else None,
                               max_connections=cfg.max_connections,
                               max_per_address=cfg.max_connections_per_address,
                               message_timeout=cfg.message_timeout,
                               idle_unprotected=cfg.idle_unregistered)

    def flush() -> None:  # the ledger first: it is written ahead of every answer
        store.flush()
        transport.flush()
    await transport.start(specs)
    core = SipCore(local=transport.local, t1=cfg.t1, user_agent=cfg.user_agent)
    allocator = PortAllocator(cfg.rtp_first, cfg.rtp_last, host=cfg.media_bind,
                              emergency_reserved=cfg.emergency_reserved_ports // 2,
                              per_user_max_ports=cfg.per_user_max_ports)
    users = {u.ext for u in cfg.users}
    auth = EdgeAuth(cfg, (a.port for a in transport.local.values()))
    b2bua = B2BUA(
        core=core, flush=flush, location=LocationService(), allocator=allocator,
        media_settings=MediaSettings(host=cfg.media_bind, jitter_min_ms=cfg.jitter_min_ms,
                                     jitter_max_ms=cfg.jitter_max_ms,
                                     rtp_timeout=cfg.rtp_timeout, latch=cfg.latch),
        codecs=codecs, users=users.__contains__,
        domain=cfg.domain, echo_ext=cfg.echo_ext, tone_ext=cfg.tone_ext,
        retry_after=cfg.retry_after, auth=auth, guard=admission,
        call_log=CallLog(cfg.data_dir / "calls.jsonl"),
        clock=asyncio.get_running_loop().time, user_agent=cfg.user_agent,
        emergency_route=cfg.emergency_route, prompts=prompts, recordings=recordings,
        emergency_request_uri=cfg.emergency_request_uri, emergency_lane=lane,
        callbacks=CallbackWindows(cfg.data_dir / CALLBACKS_FILE, cfg.emergency_callback_s),
        app_calls_per_user=cfg.app_calls_per_user,
        security=Security(SecuritySettings(cfg.max_auth_failures, cfg.auth_window_s,
                                           cfg.auth_lockout_s),
                          SecurityLog(cfg.data_dir / "security.jsonl"),
                          clock=asyncio.get_running_loop().time))
    b2bua.dialog_peer_check = cfg.dialog_peer_check
    b2bua.display_names = {u.ext: u.name for u in cfg.users}
    b2bua.trust_display_name = cfg.trust_display_name
    # connections with a live registration or call are never evicted nor closed when silent
    transport.protected = functools.partial(protected_connections, b2bua)
    if cfg.trunk_uri:
        b2bua.trunk = await open_trunk(cfg, core, flush)
        flood.trusted.add(b2bua.trunk.address.host)
    transport.attach(core, b2bua.on_event)
    if b2bua.trunk is not None:
        b2bua.trunk.start()
    return Edge(cfg, transport, core, b2bua, allocator, audit=audit, store=store,
                retention=retention, admission=admission, auth=auth, local_users=users)


def banner(edge: Edge) -> str:
    cfg = edge.cfg
    listening = ", ".join(f"{a.transport} {a.host}:{a.port}" for a in edge.transport.listening)
    first = cfg.users[0] if cfg.users else None
    lines = [
        f"softphone edge listening on {listening}",
        f"RTP ports {cfg.rtp_first}-{cfg.rtp_last} on {cfg.media_bind}; "
        f"codecs {', '.join(c.name for c in edge.b2bua.codecs)}; data in {cfg.data_dir}",
        "Users: " + ", ".join(u.ext for u in cfg.users)
        + f" (passwords in {cfg.source}); echo test {cfg.echo_ext}, tone {cfg.tone_ext}",
    ]
    if first is not None:
        udp = edge.transport.local.get("udp")
        where = f"{udp.host}:{udp.port}" if udp else cfg.bind
        lines += [
            "To try it: register a SIP phone as "
            f"sip:{first.ext}@{where} with password {first.password!r}, then dial "
            f"{cfg.echo_ext} (you hear yourself) or another user.",
            f"  e.g. baresip account line: <sip:{first.ext}@{where}>;auth_pass={first.password}",
        ]
    trunk = edge.b2bua.trunk
    if trunk is not None:
        lines.append(f"Trunk {cfg.trunk_uri}: {len(trunk.registrations)} user(s) register "
                     "upstream with their own account (state in status.json)")
    return "\n".join(lines)


async def run(cfg: EdgeConfig, policy: PolicyConfig, *,
              reload_config: Any = None, drain_timeout: float = 0.0) -> int:
    """Until SIGINT (stop now) or SIGTERM (drain for up to ``drain_timeout`` s, then stop);
    SIGHUP applies ``reload_config()`` (``softphone.edge.lifecycle``)."""
    from softphone.edge.http import start_http
    from softphone.edge.lifecycle import drain, reload

    edge = await start_edge(cfg, policy)
    try:
        http = await start_http(edge)
    except OSError as exc:
        await edge.close()
        raise OSError(f"HTTP listener {cfg.http_bind}:{cfg.http_port}: {exc.strerror or exc}"
                      " (--http-port 0 turns it off)") from None
    edge.start_status()
    edge.start_purge()
    if edge.admission is not None:
        edge.start_sweep(edge.admission)
    text = banner(edge)
    if http is not None:
        text += (f"\nHTTP http://{cfg.http_bind}:{http.port}: /metrics (Prometheus), /healthz, "
                 "/api/status (softphone status)")
    print(text, flush=True)
    stop = asyncio.Event()
    terminated = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_term() -> None:
        if terminated.is_set():  # a second SIGTERM: no more waiting
            stop.set()
        terminated.set()

    def on_hup() -> None:
        reload(edge, reload_config)

    handlers: list[tuple[int, Any]] = [(signal.SIGINT, stop.set), (signal.SIGTERM, on_term)]
    if reload_config is not None:
        handlers.append((signal.SIGHUP, on_hup))
    for sig, handler in handlers:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, handler)
    try:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait()),
                                             asyncio.ensure_future(terminated.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if terminated.is_set() and not stop.is_set():
            waits = [asyncio.ensure_future(drain(edge, drain_timeout)),
                     asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
    finally:
        await edge.close()  # its BYEs first: a browser's goes over the HTTP listener's /ws
        if http is not None:
            await http.close()
    print("softphone edge stopped", flush=True)
    return 0


def run_loop(main_coro: Any) -> int:
    """uvloop when it is installed (about twice the relayed calls per core of the default
    loop in bench/edge.py), the standard loop otherwise or with SOFTPHONE_LOOP=asyncio."""
    if os.environ.get("SOFTPHONE_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            result: int = uvloop.run(main_coro)
            return result
    result = asyncio.run(main_coro)
    return result


def main(args: Any) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = Overrides(bind=args.bind, sip_port=args.sip_port, tls_port=args.tls_port,
                          rtp_ports=args.rtp_ports, trunk=args.trunk, data_dir=args.data_dir,
                          http_port=args.http_port, durability=args.durability)
    if args.drain_timeout is not None and not 0 <= args.drain_timeout <= 86400:
        print(f"softphone edge: configuration error: --drain-timeout: out of range: "
              f"{args.drain_timeout}", file=sys.stderr)
        return 2
    try:
        cfg = apply_overrides(load_config(args.config), overrides)
        check_exposure(cfg)
        policy = load_policy(args.policy) if args.policy else load_default_policy()
        check_extensions(cfg, policy)
    except (ConfigError, PolicyConfigError) as exc:
        print(f"softphone edge: configuration error: {exc}", file=sys.stderr)
        return 2
    try:  # one edge per data directory, locked before anything binds
        lock = lock_data_dir(cfg.data_dir)
    except DataDirBusy as exc:
        print(f"softphone edge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"softphone edge: cannot lock the data directory {cfg.data_dir}: {exc}",
              file=sys.stderr)
        return 1

    def reload_config() -> EdgeConfig:  # SIGHUP: the same file and flags, checked again
        new = apply_overrides(load_config(args.config), overrides)
        check_extensions(new, policy)
        return new

    try:
        return run_loop(run(cfg, policy, reload_config=reload_config,
                            drain_timeout=DRAIN_TIMEOUT_S if args.drain_timeout is None
                            else args.drain_timeout))
    except (OSError, TrunkError) as exc:
        print(f"softphone edge: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a clear last word instead of a traceback
        from softphone.sip.transport import TransportError

        if isinstance(exc, TransportError):
            print(f"softphone edge: {exc}", file=sys.stderr)
            return 1
        raise
    finally:
        lock.close()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("edge", help="run the PBX edge (registrar + B2BUA with anchored media)")
    p.add_argument("--config", help="edge configuration file (default: the embedded "
                                    "configs/edge.toml)")
    p.add_argument("--bind", help="address for SIP and RTP (overrides sip.bind and media.bind)")
    p.add_argument("--sip-port", type=int, help="SIP port for udp and tcp (default 5060)")
    p.add_argument("--tls-port", type=int, help="SIP over TLS port (0 = off)")
    p.add_argument("--rtp-ports", help="RTP range, e.g. 20000-22000")
    p.add_argument("--policy", help="policy tables (default: the embedded configs/policy.toml)")
    p.add_argument("--trunk", help="upstream trunk URI")
    p.add_argument("--data-dir", help="where registrations, logs and recordings live")
    p.add_argument("--durability", help="full (ledger and audit fsync'd before each SIP "
                                        "answer) or relaxed (data.durability)")
    p.add_argument("--log-level", default="info", help="debug, info, warning")
    p.add_argument("--http-port", type=int, help="the operator's HTTP listener: /metrics, "
                                                 "/healthz, /api/status (default 8080, 0 = off)")
    p.add_argument("--drain-timeout", type=float,
                   help=f"on SIGTERM, seconds calls in progress may go on while new ones get "
                        f"503 (default {DRAIN_TIMEOUT_S:g}; 0 = end them at once)")
    p.set_defaults(handler=main)
