"""Codec registry, SDP offer/answer and codec order (imports as ``softphone.codecs``)."""
