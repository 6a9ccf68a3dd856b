"""Who sends a request: digest of local callers (407), the security log of failed
credentials and the lock-out of an address or a user (R-ACCT-5, ``softphone.edge.security``),
an emergency call excepted."""

from __future__ import annotations

import logging

from softphone.edge.room import Room
from softphone.edge.service_urn import (
    ServiceUrnError,
    dialled,
)
from softphone.sip.core import Address
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)



class AuthenticationRoom(Room):
    """Digest of callers, failures logged, locked-out senders refused."""

    def _identify_caller(self, req: SipRequest, txn: ServerTransaction,
                         source: Address) -> str | None:
        """The calling local user, or None when a challenge (or refusal) was sent."""
        user = req.from_.uri.user or ""
        if self.auth is None:
            if not self.is_user(user):
                self._respond(txn, 403, "Forbidden: unknown caller")
                return None
            return user
        who = self.auth.verify(req, self.clock(), proxy=True)
        if who is None:
            self._auth_failed(req, source, user, self.auth.failure(req))
            self._respond(txn, 407, "Proxy Authentication Required",
                          extra=self.auth.challenge(req, self.clock(), proxy=True))
            return None
        self._auth_succeeded(source, who)
        return who

    def _auth_failed(self, req: SipRequest, source: Address, user: str,
                     reason: str | None) -> None:
        """Credentials refused (wrong, replayed, another user's): one line in the security
        log, counted towards the lock-out. ``reason`` None: the request carried none of
        ours (the first challenge), which is no failure."""
        if self.security is None or reason is None:
            return
        for lock in self.security.auth_failed(source.host, source.port, user, req.method,
                                              reason):
            log.warning("%s %s locked out after %d authentication failures", lock.kind,
                        lock.key, lock.failures)

    def _auth_succeeded(self, source: Address, user: str) -> None:
        if self.security is not None:
            self.security.succeeded(source.host, user)

    def _locked_out(self, req: SipRequest, txn: ServerTransaction, source: Address) -> bool:
        """A new request from a locked-out address, or claiming a locked-out user, is a 403
        before anything else is done with it; an emergency call always goes on (R-EMERG),
        and so do requests within a call already up (its BYE) and ACK/CANCEL."""
        assert self.security is not None
        if req.method in ("ACK", "CANCEL") or req.to.tag:
            return False
        try:
            user = (req.to if req.method == "REGISTER" else req.from_).uri.user or ""
        except SipParseError:
            user = ""
        why = self.security.locked(source.host, user)
        if why is None:
            return False
        if req.method == "INVITE" and self.guard is not None:
            try:
                if self.guard.is_emergency(user, dialled(req.uri)):
                    return False
            except (ServiceUrnError, SipParseError):
                pass
        self.security.refused += 1
        self._respond(txn, 403, f"Forbidden: {why}")
        return True
