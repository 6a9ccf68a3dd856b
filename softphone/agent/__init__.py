"""The headless agent: the phone of ``softphone.phone`` driven over MQTT (``softphone agent``).

Modules by concern: ``config`` (its TOML file), ``audio`` (a call's RTP and its WAV or null
audio), ``guard`` (the policy guard where it applies to one phone), ``quality`` (loss, jitter,
RTT and a simplified E-model MOS), ``messages`` (the control plane's JSON messages and their
schemas in ``schemas/``), ``mqtt`` (the aiomqtt link: Will, reconnect, ordered queue) and
``runtime`` (the :class:`~softphone.agent.runtime.Agent` composing them). docs/MQTT.md.
"""
