"""The sans-I/O SIP core (RFC 3261): messages, transactions, dialogs, digest auth.

Protocol objects take bytes and a clock and give back events and bytes; the asyncio
adapters in ``softphone.sip.transport`` own the sockets and timers.
"""
