"""Codec registry, SDP offer/answer and codec order (imports as ``softphone.codecs``).

Modules: ``sdp`` (RFC 8866 model, parser, serializer), ``registry`` (codecs and the offer
order), ``offer_answer`` (RFC 3264), ``opus`` and ``g711`` (frame codecs), ``frame`` (the
``FrameCodec`` seam the media bridge uses).
"""
