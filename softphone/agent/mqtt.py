"""The link to the MQTT broker (aiomqtt): topics, Last Will, reconnect, the outgoing queue.

Topics under ``softphone/<agent_id>/``: ``status`` (retained; ``online`` once connected,
``offline`` as the Last Will and before a clean disconnect), ``state`` (retained, the latest
only), ``event`` and ``cmd_resp/<token>`` (QoS 1, never retained) and ``cmd`` (subscribed
with QoS 1; the agent's session is clean: a command sent while it was away is not carried
out later, when it may no longer mean what it meant).

aiomqtt does not reconnect by itself: a lost connection is retried after 0.5 s, doubling up
to ``backoff_max_s``, with +-20 % jitter so that a fleet of agents does not come back at the
same instant. Events and replies go through one queue, in order; one is taken off only once
the broker acknowledged it (QoS 1 PUBACK), so a connection lost mid-publish sends it again
after reconnect (at least once: ``seq`` tells a duplicate). While the broker is away the queue
keeps at most ``queue`` messages: when it is full the oldest is dropped and counted, and the
count is reported after reconnect (``on_connected``; also on the first connect when the
queue overflowed before it). The count can be off by the one message in flight when the
connection went: it may have reached the broker unacknowledged and then been dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt

from softphone.agent.config import MqttSettings
from softphone.agent.homeassistant import discovery
from softphone.agent.messages import dumps, status

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5


class MqttLink:
    def __init__(self, settings: MqttSettings, agent_id: str, *,
                 on_command: Callable[[bytes], Awaitable[None]],
                 on_connected: Callable[[int, int, float], None] | None = None) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self.prefix = f"softphone/{agent_id}"
        self.on_command = on_command
        self.on_connected = on_connected
        self.connected = False
        self.connects = 0
        self.dropped = 0           # since the last report
        self.dropped_total = 0
        self._queue: deque[tuple[str, bytes]] = deque()
        self._state: bytes | None = None
        self._state_dirty = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._client: aiomqtt.Client | None = None
        self._lost_at: float | None = None
        self._ha_status = f"{settings.discovery_prefix}/status"
        self.discovery_sent = 0

    # -- what the agent hands in ------------------------------------------------------------

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def send(self, suffix: str, message: dict[str, Any], *, keep_all: bool = False) -> None:
        """Queue one event or reply (never retained); the oldest goes when the queue is full,
        unless ``keep_all`` (the report of what was dropped must not drop another)."""
        if len(self._queue) >= self.settings.queue and not keep_all:
            self._queue.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self._queue.append((self.topic(suffix), dumps(message)))
        self._wake.set()

    def set_state(self, state: dict[str, Any]) -> None:
        self._state = dumps(state)
        self._state_dirty = True
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- the connection -------------------------------------------------------------------

    def _tls(self) -> aiomqtt.TLSParameters | None:
        if not self.settings.tls:
            return None
        return aiomqtt.TLSParameters(ca_certs=self.settings.ca_file or None,
                                     cert_reqs=ssl.CERT_REQUIRED)

    def _client_for(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host, s.port, username=s.username or None, password=s.password or None,
            identifier=s.client_id or f"softphone-{self.agent_id}",
            will=aiomqtt.Will(self.topic("status"), dumps(status(False)), qos=1, retain=True),
            clean_session=True, keepalive=s.keepalive_s, tls_params=self._tls(), timeout=10.0)

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until ``stop()``."""
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_FIRST_S
        while not self._stopping:
            try:
                async with self._client_for() as client:
                    self._client = client
                    await client.subscribe(self.topic("cmd"), qos=1)
                    await client.publish(self.topic("status"), dumps(status(True)), qos=1,
                                         retain=True)
                    if self.settings.homeassistant:
                        await self._discovery(client)
                        await client.subscribe(self._ha_status, qos=1)
                    self.connected = True
                    self.connects += 1
                    backoff = BACKOFF_FIRST_S
                    offline = 0.0 if self._lost_at is None else loop.time() - self._lost_at
                    log.info("MQTT connected to %s:%d (%d queued, %d dropped)",
                             self.settings.host, self.settings.port, len(self._queue),
                             self.dropped)
                    self._state_dirty = self._state is not None
                    dropped, self.dropped = self.dropped, 0
                    if self.on_connected is not None and (self.connects > 1 or dropped):
                        self.on_connected(self.connects, dropped, offline)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if self.connected or self._lost_at is None:
                    self._lost_at = loop.time()
                if self.connected:
                    log.warning("MQTT connection lost: %s", exc)
                else:
                    log.info("MQTT broker %s:%d not reachable: %s", self.settings.host,
                             self.settings.port, exc)
            finally:
                self.connected = False
                self._client = None
            if self._stopping:
                break
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self.settings.backoff_max_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    while not self._stopping:
                        self._wake.clear()
                        await self._wake.wait()

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Send and receive until either side ends (``stop()``, or the connection is lost:
        its MqttError is raised again here)."""
        tasks = {asyncio.create_task(self._sender(client)),
                 asyncio.create_task(self._receiver(client))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    async def _discovery(self, client: aiomqtt.Client) -> None:
        for topic, payload in discovery(self.agent_id, self.settings.discovery_prefix):
            await client.publish(topic, payload, qos=1, retain=True)
        self.discovery_sent += 1

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.value == self._ha_status:
                if message.payload in (b"online", "online"):
                    await self._discovery(client)  # Home Assistant (re)started: tell it again
                continue
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                await self.on_command(bytes(payload))
            else:
                await self.on_command(str(payload or "").encode())

    async def _sender(self, client: aiomqtt.Client) -> None:
        while not self._stopping:
            if self._state_dirty and self._state is not None:
                self._state_dirty = False
                state = self._state
                try:
                    await client.publish(self.topic("state"), state, qos=1, retain=True)
                except aiomqtt.MqttError:
                    self._state_dirty = True
                    raise
                continue
            if self._queue:
                item = self._queue[0]
                await client.publish(item[0], item[1], qos=1)
                # the head may have been dropped meanwhile (queue full): take off this one only
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                continue
            self._wake.clear()
            await self._wake.wait()

    async def stop(self, timeout: float = 3.0) -> None:
        """Send what is queued (for up to ``timeout``), ``offline``, and disconnect cleanly."""
        client = self._client
        if client is not None and self.connected:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while (self._queue or self._state_dirty) and loop.time() < end and self.connected:
                await asyncio.sleep(0.05)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await client.publish(self.topic("status"), dumps(status(False)), qos=1,
                                         retain=True)
        self._stopping = True
        self._wake.set()
