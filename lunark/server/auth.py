"""Sign-in with Ethereum: nonces, message verification and session tokens.

The flow (protocol.md, "Authentication"): ``new_nonce()`` hands out a
single-use nonce; the client signs an EIP-4361 message carrying it with
``personal_sign``; ``verify()`` checks the message and signature and returns
a bearer token; ``authenticate()`` maps that token back to the address.

Every refusal is ``Unauthorized`` with a ``reason`` detail:

```
malformed_message   the text is not an EIP-4361 message
wrong_domain        the message is for another domain (or scheme)
wrong_uri           the message's URI is not on this server's origin
wrong_chain         the chain id is not one this server accepts
not_yet_valid       Not Before is still in the future
expired             Expiration Time passed, or Issued At too old / in the future
bad_signature       the signature is malformed or not by the message's address
bad_nonce           the nonce is unknown, expired or already used
missing_token       no session token was sent
invalid_token       the session token is unknown or expired
```

Only a hash of each token is stored, so a leaked database holds no usable
credentials.

Ending a session (``logout``) deletes it from the store, which every process
shares, and then ends what this process holds open with it (a socket, an SSE
stream: a ``Watch`` each). Other processes hear of it from ``announce`` (the
cluster's notification channel), and, should that be missed, from
``check_sessions``: each process looks up the sessions it holds open every few
seconds (``server.sweep_interval_seconds``) in one query. Between the two, a
socket event checks only its watch, in memory: no database round trip per
event.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError

from lunark.errors import ConfigError, Unauthorized
from lunark.siwe import SiweMessage, make_nonce

__all__ = ["AuthStore", "Authenticator", "Revoked", "Session", "Watch", "token_hash", "utcnow"]

logger = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(seconds=60)
"""How far in the future ``Issued At`` may be: client clocks drift."""

_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]{130}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


Revoked = Callable[[str, str | None], Awaitable[None]]
"""Told when sessions end: ``(address, token hash)``, the hash ``None`` for all of the address's."""


@dataclass(frozen=True, slots=True, eq=False)
class Watch:
    """One thing this process holds open with a session (a socket, an SSE stream)."""

    token_hash: str
    address: str
    """Lowercase."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the session ends (logout here or on another process); never cleared."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class AuthStore(Protocol):
    """What authentication needs from the store."""

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        """Remember a freshly issued nonce until ``expires_at``."""
        ...

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        """Atomically use up a nonce; ``False`` when unknown, used or expired."""
        ...

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        """Store a session by the SHA-256 hex of its token."""
        ...

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        """The address of a live session, or ``None`` when unknown or expired."""
        ...

    async def delete_session(self, token_hash: str) -> str | None:
        """End one session; its address, or ``None`` when there was none."""
        ...

    async def delete_sessions(self, address: str) -> int:
        """End every session of ``address`` (any case); how many there were."""
        ...

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        """Which of ``token_hashes`` still name a session (expired or not)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A signed-in session, as returned to the client after ``verify``."""

    token: str
    """Bearer token; only its SHA-256 is stored server-side."""
    address: ChecksumAddress
    """The account that signed in."""
    expires_at: datetime
    """When the token stops working (timezone-aware)."""


class Authenticator:
    """Issues nonces, verifies signed EIP-4361 messages and checks session tokens.

    Example:
        >>> auth = Authenticator(store, domain="localhost:8080", uri="http://localhost:8080")
        >>> nonce = await auth.new_nonce()
        >>> session = await auth.verify(message_text, signature_hex)
        >>> await auth.authenticate(session.token)
        '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
    """

    def __init__(
        self,
        store: AuthStore,
        *,
        domain: str,
        aliases: Collection[str] = (),
        uri: str | None = None,
        origins: Collection[str] = (),
        nonce_ttl: timedelta = timedelta(minutes=5),
        session_ttl: timedelta = timedelta(hours=24),
        allowed_chain_ids: Collection[int] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not domain:
            raise ConfigError("The sign-in domain must not be empty (e.g. 'localhost:8080').")
        if nonce_ttl <= timedelta(0) or session_ttl <= timedelta(0):
            raise ConfigError("nonce_ttl and session_ttl must be positive durations.")
        self._store = store
        self._domain = domain
        # Other names of this same server, e.g. 127.0.0.1:8080 for localhost:8080.
        self._domains = frozenset(d.lower() for d in (domain, *aliases))
        # The origins a message's URI may be on (empty: not checked); uri is the first.
        self._uris = tuple(dict.fromkeys([*([uri] if uri is not None else []), *origins]))
        parsed = [(u, _origin(u)) for u in self._uris]
        for text, origin in parsed:
            if origin is None:
                raise ConfigError(
                    f"The sign-in URI {text!r} has no origin; use e.g. 'http://localhost:8080'."
                )
        self._origins = frozenset(o for _, o in parsed if o is not None)
        self._schemes = frozenset(o[0] for o in self._origins)
        self._listeners: list[Revoked] = []
        self._watches: set[Watch] = set()
        self.announce: Revoked | None = None
        """Tells the other processes that sessions ended (the cluster sets it); None: one process."""
        self._nonce_ttl = nonce_ttl
        self._session_ttl = session_ttl
        self._chain_ids = None if allowed_chain_ids is None else frozenset(allowed_chain_ids)
        self._clock = clock

    def on_revoked(self, listener: Revoked) -> None:
        """Call ``listener`` whenever sessions end (logout), e.g. to close their connections."""
        self._listeners.append(listener)

    async def logout(self, token: str | None, *, everywhere: bool = False) -> int:
        """End the session of ``token`` (``everywhere``: every session of its account), on every process.

        Returns how many sessions ended; ``Unauthorized`` when the token is not a live session.
        """
        address = await self.authenticate(token)
        assert token is not None
        hashed = _hash_token(token)
        if everywhere:
            count = await self._store.delete_sessions(address)
            ended: str | None = None
        else:
            count = 1 if await self._store.delete_session(hashed) is not None else 0
            ended = hashed
        # The store is the truth, and it is written: what follows only makes it felt sooner.
        await self.sessions_ended(address, ended)
        if self.announce is not None:
            try:
                await self.announce(address, ended)
            except Exception as exc:  # the others find out from check_sessions
                logger.warning("could not tell the other processes of a logout (%s); their next session "
                               "check ends it", exc)
        return count

    async def sessions_ended(self, address: str, hashed: str | None) -> None:
        """End what this process holds open with the session ``hashed`` (``None``: every session of
        ``address``): its watches are set and the listeners told. Safe to repeat."""
        owner = address.lower()
        for watch in list(self._watches):
            if watch.token_hash == hashed or (hashed is None and watch.address == owner):
                watch.ended.set()
        for listener in self._listeners:
            try:
                await listener(address, hashed)
            except Exception:
                logger.exception("ending the connections of a session failed")

    async def check_sessions(self) -> int:
        """Look up every session this process holds open (one query) and end those the store no longer
        has: the safety net under ``announce``. Returns how many ended."""
        held = {w.token_hash: w.address for w in self._watches if not w.ended.is_set()}
        if not held:
            return 0
        stored = await self._store.stored_sessions(list(held))
        gone = [(address, hashed) for hashed, address in held.items() if hashed not in stored]
        for address, hashed in gone:
            await self.sessions_ended(address, hashed)
        return len(gone)

    async def check_forever(self, interval: float) -> None:
        """``check_sessions`` every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_sessions()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("checking the open sessions failed (%s); trying again in %ss", exc, interval)

    def open_watch(self, token_hash_: str, address: str) -> Watch:
        """Start watching a session this process holds open; ``close_watch`` when it is closed."""
        watch = Watch(token_hash_, address.lower())
        self._watches.add(watch)
        return watch

    def close_watch(self, watch: Watch) -> None:
        self._watches.discard(watch)

    @asynccontextmanager
    async def watch(self, token: str, address: str) -> AsyncIterator[asyncio.Event]:
        """An event that is set if the session of ``token`` (signed in as ``address``) ends."""
        watch = self.open_watch(_hash_token(token), address)
        try:
            yield watch.ended
        finally:
            self.close_watch(watch)

    async def new_nonce(self) -> str:
        """A fresh single-use nonce, valid for ``nonce_ttl``."""
        nonce = make_nonce()
        await self._store.add_nonce(nonce, self._clock() + self._nonce_ttl)
        return nonce

    async def verify(self, message: str, signature: str) -> Session:
        """Check a signed EIP-4361 message and open a session for its address.

        ``message`` is the exact text the wallet signed; ``signature`` the
        65-byte ``personal_sign`` (EIP-191) signature as hex. Raises
        ``Unauthorized`` with a ``reason`` (see the module docstring).
        """
        siwe = SiweMessage.parse(message)
        now = self._clock()
        self._check_fields(siwe, now)
        signer = _recover(message, signature)
        if signer != siwe.address:
            raise Unauthorized(
                f"The signature was made by {signer}, but the message is for {siwe.address}. "
                "Sign the message with the account it names.",
                reason="bad_signature",
            )
        # Only now: a forged request must not be able to burn a user's nonce.
        if not await self._store.consume_nonce(siwe.nonce, now):
            raise Unauthorized(
                f"The nonce {siwe.nonce} is unknown, expired or already used. "
                "Get a new one from GET /auth/nonce and sign again.",
                reason="bad_nonce",
            )
        expires_at = now + self._session_ttl
        # The user signed "valid until Expiration Time"; the session honours it.
        if siwe.expiration_time is not None and siwe.expiration_time < expires_at:
            expires_at = siwe.expiration_time
        token = secrets.token_urlsafe(32)
        await self._store.add_session(_hash_token(token), siwe.address, expires_at)
        return Session(token=token, address=siwe.address, expires_at=expires_at)

    async def authenticate(self, token: str | None) -> ChecksumAddress:
        """The address signed in with ``token``; ``Unauthorized`` when missing or invalid."""
        if not token:
            raise Unauthorized(
                "Sign in first: send the session token from POST /auth/verify "
                "(Socket.IO auth {'token': ...} or 'Authorization: Bearer <token>').",
                reason="missing_token",
            )
        address = await self._store.get_session(_hash_token(token), self._clock())
        if address is None:
            raise Unauthorized(
                "The session token is unknown or has expired. Sign in again.",
                reason="invalid_token",
            )
        return to_checksum_address(address)

    def _check_fields(self, siwe: SiweMessage, now: datetime) -> None:
        if siwe.domain.lower() not in self._domains:
            raise Unauthorized(
                f"The message is for domain {siwe.domain}, but this server is {self._domain}.",
                reason="wrong_domain",
            )
        if self._origins and siwe.scheme is not None and siwe.scheme.lower() not in self._schemes:
            raise Unauthorized(
                f"The message is for scheme {siwe.scheme}://, but this server is "
                f"{' or '.join(sorted(s + '://' for s in self._schemes))}{self._domain}.",
                reason="wrong_domain",
            )
        if self._origins and _origin(siwe.uri) not in self._origins:
            raise Unauthorized(
                f"The message's URI {siwe.uri} is not on this server's origin "
                f"({', '.join(self._uris)}).",
                reason="wrong_uri",
            )
        if self._chain_ids is not None and siwe.chain_id not in self._chain_ids:
            allowed = ", ".join(str(c) for c in sorted(self._chain_ids))
            raise Unauthorized(
                f"The message is for chain id {siwe.chain_id}; this server accepts {allowed}.",
                reason="wrong_chain",
            )
        if siwe.not_before is not None and now < siwe.not_before:
            raise Unauthorized(
                f"The message is not valid before {siwe.not_before.isoformat()}; "
                f"it is now {now.isoformat()}.",
                reason="not_yet_valid",
            )
        if siwe.expiration_time is not None and siwe.expiration_time <= now:
            raise Unauthorized(
                f"The message expired at {siwe.expiration_time.isoformat()}. "
                "Get a new nonce and sign a fresh message.",
                reason="expired",
            )
        if siwe.issued_at > now + CLOCK_SKEW:
            raise Unauthorized(
                f"The message was issued at {siwe.issued_at.isoformat()}, in the future "
                f"(it is now {now.isoformat()}). Check the device's clock.",
                reason="expired",
            )
        if now - siwe.issued_at > self._nonce_ttl:
            minutes = self._nonce_ttl.total_seconds() / 60
            raise Unauthorized(
                f"The message was issued at {siwe.issued_at.isoformat()}, more than "
                f"{minutes:g} minutes ago. Get a new nonce and sign a fresh message.",
                reason="expired",
            )


def _origin(uri: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if it has none."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _recover(message: str, signature: str) -> ChecksumAddress:
    """The EIP-191 (personal_sign) signer of ``message``; ``bad_signature`` if malformed."""
    raw = _signature_bytes(signature)
    if raw is None:
        raise Unauthorized(
            "The signature is not a 65-byte hex personal_sign signature "
            "('0x' followed by 130 hex digits).",
            reason="bad_signature",
        )
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=raw)
    except (ValueError, BadSignature, ValidationError):
        raise Unauthorized(
            "The signature does not recover to any account; sign the message again.",
            reason="bad_signature",
        ) from None
    return to_checksum_address(signer)


def _signature_bytes(signature: str) -> bytes | None:
    if not isinstance(signature, str):
        return None
    digits = signature[2:] if signature[:2] in ("0x", "0X") else signature
    # bytes.fromhex would skip whitespace; the signature must be exactly 130 hex digits.
    if not _SIGNATURE_HEX.fullmatch(digits):
        return None
    raw = bytes.fromhex(digits)
    # eth-account asserts on other v values; refuse them here instead.
    return raw if raw[64] in (0, 1, 27, 28) else None


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_hash(token: str) -> str:
    """How a session token is known server-side (its SHA-256, hex)."""
    return _hash_token(token)
