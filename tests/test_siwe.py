"""Sign-In with Ethereum: the EIP-4361 message format and the Authenticator.

Signatures are made with real secp256k1 keys (Anvil's published dev keys);
the only stand-in is a dict-backed AuthStore, which is not under test here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from lunark.errors import InvalidInput, Unauthorized
from lunark.server.auth import Authenticator, Session
from lunark.siwe import SiweMessage, make_nonce

# Anvil's dev accounts 0 and 1 (public test keys, never for real funds).
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
USER = Account.from_key(KEY).address
assert USER == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

DOMAIN = "localhost:8080"
URI = "http://localhost:8080"
CHAIN_ID = 31337
T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

# The example message from EIP-4361 (ERC-4361, "Examples"), verbatim.
SPEC_EXAMPLE = (
    "example.com wants you to sign in with your Ethereum account:\n"
    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
    "\n"
    "I accept the ExampleOrg Terms of Service: https://example.com/tos\n"
    "\n"
    "URI: https://example.com/login\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: 32891756\n"
    "Issued At: 2021-09-30T16:25:24Z\n"
    "Resources:\n"
    "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n"
    "- https://example.com/my-web2-claim.json"
)
SPEC_EXAMPLE_MESSAGE = SiweMessage(
    domain="example.com",
    address="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",  # type: ignore[arg-type]
    statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
    uri="https://example.com/login",
    chain_id=1,
    nonce="32891756",
    issued_at=datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC),
    resources=(
        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
        "https://example.com/my-web2-claim.json",
    ),
)


# -- helpers -----------------------------------------------------------------


@dataclass
class MemoryAuthStore:
    """The AuthStore protocol over dicts."""

    nonces: dict[str, datetime] = field(default_factory=dict)
    sessions: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        self.nonces[nonce] = expires_at

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        expires_at = self.nonces.pop(nonce, None)
        return expires_at is not None and now < expires_at

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        self.sessions[token_hash] = (address, expires_at)

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        session = self.sessions.get(token_hash)
        return session[0] if session is not None and now < session[1] else None


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryAuthStore:
    return MemoryAuthStore()


@pytest.fixture
def auth(store: MemoryAuthStore, clock: Clock) -> Authenticator:
    return Authenticator(
        store, domain=DOMAIN, uri=URI, allowed_chain_ids={CHAIN_ID}, clock=clock
    )


def sign(text: str, key: str = KEY) -> str:
    signed = Account.sign_message(encode_defunct(text=text), key)
    return str(signed.signature.to_0x_hex())


async def sign_in_message(auth: Authenticator, clock: Clock, **overrides: Any) -> str:
    """A sign-in message for USER with a fresh nonce from ``auth``; fields overridable."""
    fields: dict[str, Any] = {
        "domain": DOMAIN,
        "address": USER,
        "statement": "Sign in to Lunark.",
        "uri": URI,
        "chain_id": CHAIN_ID,
        "nonce": await auth.new_nonce(),
        "issued_at": clock.now,
    }
    fields.update(overrides)
    return SiweMessage(**fields).to_text()


async def refused(auth: Authenticator, text: str, signature: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await auth.verify(text, signature)
    return info.value


# -- message format ----------------------------------------------------------


def test_to_text_matches_the_spec_example_byte_for_byte() -> None:
    assert SPEC_EXAMPLE_MESSAGE.to_text() == SPEC_EXAMPLE
    assert SiweMessage.parse(SPEC_EXAMPLE) == SPEC_EXAMPLE_MESSAGE


def test_explicit_scheme_from_the_spec_example() -> None:
    text = "https://" + SPEC_EXAMPLE
    message = SiweMessage.parse(text)
    assert message.scheme == "https"
    assert message.domain == "example.com"
    assert message.to_text() == text


def test_without_statement_two_empty_lines_separate_address_and_uri() -> None:
    # ABNF: address LF LF [ statement LF ] LF "URI: "
    message = replace(SPEC_EXAMPLE_MESSAGE, statement=None, resources=())
    text = message.to_text()
    assert text == (
        "example.com wants you to sign in with your Ethereum account:\n"
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
        "\n"
        "\n"
        "URI: https://example.com/login\n"
        "Version: 1\n"
        "Chain ID: 1\n"
        "Nonce: 32891756\n"
        "Issued At: 2021-09-30T16:25:24Z"
    )
    assert SiweMessage.parse(text) == message


MINIMAL = SiweMessage(
    domain=DOMAIN,
    address=USER,
    statement=None,
    uri=URI,
    chain_id=CHAIN_ID,
    nonce="abcDEF123456",
    issued_at=T0,
)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(MINIMAL, id="minimal"),
        pytest.param(replace(MINIMAL, statement=""), id="empty-statement"),
        pytest.param(
            replace(
                MINIMAL,
                statement="I accept the Terms: https://lunark.example/tos (v2), ok?",
                expiration_time=T0 + timedelta(minutes=10),
                not_before=datetime(2025, 1, 1, 13, 0, 0, 123000, tzinfo=timezone(timedelta(hours=1))),
                request_id="req-42:abc@x",
                resources=("https://lunark.example/a", "ipfs://bafy/b?c=d#e"),
            ),
            id="all-fields",
        ),
        pytest.param(replace(MINIMAL, issued_at=T0.replace(microsecond=123456)), id="microseconds"),
        pytest.param(replace(MINIMAL, request_id=""), id="empty-request-id"),
        pytest.param(replace(MINIMAL, scheme="http"), id="scheme"),
    ],
)
def test_round_trip(message: SiweMessage) -> None:
    text = message.to_text()
    parsed = SiweMessage.parse(text)
    assert parsed == message
    assert parsed.to_text() == text


def test_parse_accepts_rfc3339_variants() -> None:
    text = MINIMAL.to_text().replace(
        "Issued At: 2025-01-01T12:00:00Z", "Issued At: 2025-01-01t14:00:00.000+02:00"
    )
    assert SiweMessage.parse(text).issued_at == T0


def _mutate(old: str, new: str) -> str:
    text = replace(MINIMAL, statement="Hi.").to_text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hello", id="not-siwe"),
        pytest.param("", id="empty"),
        pytest.param(_mutate(USER, USER.lower()), id="address-not-checksummed"),
        pytest.param(_mutate(USER, USER[:-1]), id="address-short"),
        pytest.param(_mutate("Nonce: abcDEF123456", "Nonce: abc123"), id="nonce-short"),
        pytest.param(_mutate("Nonce: abcDEF123456", "Nonce: abcDEF-123456"), id="nonce-symbol"),
        pytest.param(_mutate("T12:00:00Z", " 12:00:00Z"), id="timestamp-space"),
        pytest.param(_mutate("T12:00:00Z", "T12:00:00"), id="timestamp-no-offset"),
        pytest.param(_mutate("2025-01-01T", "2025-02-30T"), id="timestamp-no-such-day"),
        pytest.param(_mutate("Version: 1", "Version: 2"), id="version-2"),
        pytest.param(_mutate("Chain ID: 31337", "Chain ID: 0x7a69"), id="chain-id-hex"),
        pytest.param(_mutate("\n", "\r\n"), id="crlf"),
        pytest.param(_mutate("12:00:00Z", "12:00:00Z\n"), id="trailing-newline"),
        pytest.param(_mutate("URI: http://localhost:8080", "URI: not a uri"), id="bad-uri"),
        pytest.param(_mutate("Hi.", 'Say "hi"'), id="statement-bad-char"),
        pytest.param(_mutate("Hi.\n", "Hi.\nmore\n"), id="statement-two-lines"),
        pytest.param(_mutate("localhost:8080 wants", "local host wants"), id="bad-domain"),
        pytest.param(
            _mutate("Version: 1\nChain ID: 31337", "Chain ID: 31337\nVersion: 1"),
            id="fields-out-of-order",
        ),
        pytest.param(_mutate("12:00:00Z", "12:00:00Z\nColor: blue"), id="unknown-field"),
        pytest.param(
            _mutate("12:00:00Z", "12:00:00Z\nRequest ID: a\nExpiration Time: 2025-01-01T13:00:00Z"),
            id="optional-out-of-order",
        ),
        pytest.param(_mutate("12:00:00Z", "12:00:00Z\nResources:\nhttps://x"), id="resource-no-dash"),
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(Unauthorized) as info:
        SiweMessage.parse(text)
    assert info.value.code == "unauthorized"
    assert info.value.details["reason"] == "malformed_message"
    assert "not a valid EIP-4361 message" in info.value.message


def test_parse_error_names_the_problem() -> None:
    with pytest.raises(Unauthorized, match="not EIP-55 checksummed"):
        SiweMessage.parse(_mutate(USER, USER.lower()))
    with pytest.raises(Unauthorized, match="at least 8 ASCII letters and digits"):
        SiweMessage.parse(_mutate("Nonce: abcDEF123456", "Nonce: abc"))


@pytest.mark.parametrize(
    "changes",
    [
        {"issued_at": datetime(2025, 1, 1)},  # naive
        {"nonce": "short"},
        {"address": USER.lower()},
        {"statement": "two\nlines"},
        {"version": "2"},
        {"chain_id": True},
    ],
)
def test_constructor_validates(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        replace(MINIMAL, **changes)


def test_make_nonce() -> None:
    nonces = {make_nonce() for _ in range(100)}
    assert len(nonces) == 100
    for nonce in nonces:
        assert len(nonce) >= 16
        assert nonce.isascii() and nonce.isalnum()


# -- sign-in -----------------------------------------------------------------


async def test_sign_in_and_authenticate(
    auth: Authenticator, store: MemoryAuthStore, clock: Clock
) -> None:
    text = await sign_in_message(auth, clock)
    session = await auth.verify(text, sign(text))

    assert isinstance(session, Session)
    assert session.address == USER
    assert session.expires_at == T0 + timedelta(hours=24)
    assert len(session.token) >= 40
    # Only the token's hash is stored.
    assert list(store.sessions) == [hashlib.sha256(session.token.encode()).hexdigest()]
    assert await auth.authenticate(session.token) == USER


async def test_signature_without_0x_prefix_and_with_v_0_or_1(
    auth: Authenticator, clock: Clock
) -> None:
    text = await sign_in_message(auth, clock)
    signature = sign(text)
    v = int(signature[-2:], 16)
    assert (await auth.verify(text, signature[2:-2] + f"{v - 27:02x}")).address == USER


async def test_session_ends_with_the_message_expiration(
    auth: Authenticator, clock: Clock
) -> None:
    text = await sign_in_message(auth, clock, expiration_time=T0 + timedelta(hours=1))
    session = await auth.verify(text, sign(text))
    assert session.expires_at == T0 + timedelta(hours=1)


async def test_new_nonce_is_stored_with_expiry(
    auth: Authenticator, store: MemoryAuthStore
) -> None:
    nonce = await auth.new_nonce()
    assert store.nonces == {nonce: T0 + timedelta(minutes=5)}


async def test_wrong_domain(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, domain="evil.com")
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "wrong_domain"
    assert error.message == (
        "The message is for domain evil.com, but this server is localhost:8080."
    )


async def test_wrong_scheme(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, scheme="https")
    assert (await refused(auth, text, sign(text))).details["reason"] == "wrong_domain"


@pytest.mark.parametrize(
    "uri",
    ["http://evil.com", "http://localhost:8080.evil.com/", "https://localhost:8080", "http://localhost:9090"],
)
async def test_wrong_uri(auth: Authenticator, clock: Clock, uri: str) -> None:
    text = await sign_in_message(auth, clock, uri=uri)
    assert (await refused(auth, text, sign(text))).details["reason"] == "wrong_uri"


async def test_uri_on_the_same_origin_is_accepted(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, uri="http://LOCALHOST:8080/login?x=1")
    assert (await auth.verify(text, sign(text))).address == USER


async def test_wrong_chain(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, chain_id=1)
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "wrong_chain"
    assert "31337" in error.message


async def test_reused_nonce(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock)
    await auth.verify(text, sign(text))
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "bad_nonce"
    assert "GET /auth/nonce" in error.message


async def test_unknown_nonce(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, nonce="NeverIssued42")
    assert (await refused(auth, text, sign(text))).details["reason"] == "bad_nonce"


async def test_expired_nonce(auth: Authenticator, clock: Clock) -> None:
    nonce = await auth.new_nonce()
    clock.now += timedelta(minutes=6)
    text = await sign_in_message(auth, clock, nonce=nonce)
    assert (await refused(auth, text, sign(text))).details["reason"] == "bad_nonce"


async def test_expired_message(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(
        auth, clock, issued_at=T0 - timedelta(minutes=1), expiration_time=T0 - timedelta(seconds=1)
    )
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "expired"
    assert "expired at" in error.message


async def test_issued_long_ago(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, issued_at=T0 - timedelta(minutes=10))
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "expired"
    assert "more than 5 minutes ago" in error.message


async def test_issued_in_the_future(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, issued_at=T0 + timedelta(minutes=5))
    assert (await refused(auth, text, sign(text))).details["reason"] == "expired"


async def test_small_clock_skew_is_tolerated(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, issued_at=T0 + timedelta(seconds=30))
    assert (await auth.verify(text, sign(text))).address == USER


async def test_not_before_in_the_future(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock, not_before=T0 + timedelta(minutes=1))
    assert (await refused(auth, text, sign(text))).details["reason"] == "not_yet_valid"


async def test_another_signer(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock)
    error = await refused(auth, text, sign(text, OTHER_KEY))
    assert error.details["reason"] == "bad_signature"
    assert Account.from_key(OTHER_KEY).address in error.message
    # The forged attempt did not burn the nonce: the real user can still sign in.
    assert (await auth.verify(text, sign(text))).address == USER


async def test_signature_over_another_text(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock)
    error = await refused(auth, text, sign(text.replace("Sign in to Lunark.", "Sign in.")))
    assert error.details["reason"] == "bad_signature"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0x1234",
        "0x" + "zz" * 65,
        "0x" + "ab" * 64 + " 1b",
        "0x" + "11" * 64 + "05",  # v is neither 0/1 nor 27/28
        "0x" + "00" * 64 + "1b",  # r = s = 0: recovers nothing
    ],
)
async def test_malformed_signature(auth: Authenticator, clock: Clock, signature: str) -> None:
    text = await sign_in_message(auth, clock)
    assert (await refused(auth, text, signature)).details["reason"] == "bad_signature"


async def test_malformed_message(auth: Authenticator) -> None:
    text = "localhost:8080 wants you to sign in with your Ethereum account:\nhello"
    error = await refused(auth, text, sign(text))
    assert error.details["reason"] == "malformed_message"
    assert error.to_dict()["code"] == "unauthorized"


async def test_authenticate_missing_token(auth: Authenticator) -> None:
    for token in (None, ""):
        with pytest.raises(Unauthorized) as info:
            await auth.authenticate(token)
        assert info.value.details["reason"] == "missing_token"


async def test_authenticate_bad_token(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock)
    session = await auth.verify(text, sign(text))
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(session.token + "x")
    assert info.value.details["reason"] == "invalid_token"


async def test_authenticate_expired_session(auth: Authenticator, clock: Clock) -> None:
    text = await sign_in_message(auth, clock)
    session = await auth.verify(text, sign(text))
    clock.now = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert await auth.authenticate(session.token) == USER
    clock.now = T0 + timedelta(hours=24)
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(session.token)
    assert info.value.details["reason"] == "invalid_token"
