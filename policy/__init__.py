"""The in-call policy guard: pure, deterministic, no I/O (imports as ``softphone.policy``)."""
