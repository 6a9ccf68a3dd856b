"""The agent as the product runs it (``softphone agent`` in its own process) and a test-side
MQTT watcher that keeps every message it is sent, in arrival order.

The watcher is a persistent MQTT session (clean_session off, QoS 1): when the broker is
stopped and started again it reconnects, and what was published for it meanwhile reaches it
from the broker's saved session, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt


class AgentProcess:
    def __init__(self, config: Path, audio: str, *, lifetime: int = 300,
                 env: dict[str, str] | None = None) -> None:
        self.argv = ["timeout", "-k", "5", str(lifetime), sys.executable, "-m", "softphone",
                     "agent", "--config", str(config), "--audio", audio, "--log-level", "INFO"]
        self.env = env  # None: ours (a test's ALSA configuration goes here)
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 20.0) -> AgentProcess:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env=self.env)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("agent did not start:\n" + self.log())
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("softphone agent "):
                self._ready.set()

    def log(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # timeout(1) forwards it
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """Subscribes to ``softphone/<agent_id>/#`` and keeps what comes, across broker restarts."""

    def __init__(self, port: int, agent_id: str, client_id: str) -> None:
        self.port = port
        self.prefix = f"softphone/{agent_id}"
        self.client_id = client_id
        self.messages: list[Received] = []
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._stopping = False

    async def start(self, timeout: float = 10.0) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await self.wait_for(lambda: self.connects >= 1, timeout)
        return self

    async def _run(self) -> None:
        first = True
        while not self._stopping:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id,
                                          clean_session=False, timeout=5) as client:
                    self._client = client
                    if first:
                        await client.subscribe(f"{self.prefix}/#", qos=1)
                        first = False
                    self.connects += 1
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(
                            m.payload).encode()
                        self.messages.append(Received(m.topic.value, payload, bool(m.retain),
                                                      time.monotonic()))
            except aiomqtt.MqttError:
                self._client = None
                await asyncio.sleep(0.2)

    async def publish(self, suffix: str, message: dict[str, Any] | bytes) -> None:
        assert self._client is not None
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self._client.publish(f"{self.prefix}/{suffix}", payload, qos=1)

    def on(self, suffix: str) -> list[Received]:
        return [m for m in self.messages if m.topic == f"{self.prefix}/{suffix}"]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("event")]

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("condition not met in time")

    async def wait_event(self, timeout: float, **match: Any) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            for ev in self.events():
                if all(ev.get(k) == v for k, v in match.items()):
                    found.append(ev)
                    return True
            return False

        await self.wait_for(check, timeout)
        return found[0]

    async def wait_reply(self, token: str, timeout: float = 10.0) -> dict[str, Any]:
        await self.wait_for(lambda: bool(self.on(f"cmd_resp/{token}")), timeout)
        reply: dict[str, Any] = self.on(f"cmd_resp/{token}")[0].json()
        return reply

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
