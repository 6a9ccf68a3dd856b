"""Media: RTP/RTCP sessions on allocated ports, RFC 4733 DTMF, tones, and the 20 ms bridge.

Protocol pieces are sans-I/O (``rtp``, ``rtcp``, ``dtmf``, ``tone``); ``session`` is the thin
asyncio adapter owning a leg's sockets; ``bridge`` ticks the legs' audio through the native
jitter buffer, resampler and mixer; ``ports`` hands out the RTP/RTCP pairs and proves that
every one comes back; ``prompts`` renders the announcements the edge plays (espeak-ng, tones).
"""
