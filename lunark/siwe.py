"""Sign-In with Ethereum (EIP-4361) messages: build, render, parse.

No third-party SIWE package: the format is small, and owning the parser lets
it be strict (a malformed message is refused, never guessed at) and raise our
own errors. The layout follows the spec's ABNF exactly::

    {domain} wants you to sign in with your Ethereum account:
    {address}

    {statement}

    URI: {uri}
    Version: 1
    Chain ID: {chain_id}
    Nonce: {nonce}
    Issued At: {issued_at}
    Expiration Time: {expiration_time}      (optional)
    Not Before: {not_before}                (optional)
    Request ID: {request_id}                (optional)
    Resources:                              (optional)
    - {resource}

Per the ABNF (``address LF LF [ statement LF ] LF "URI: "``) a message
without a statement has *two* empty lines between the address and ``URI:``.
Lines are separated by a single LF, and there is no trailing LF.

Example:
    >>> msg = SiweMessage.parse(text)
    >>> msg.to_text() == text   # for messages rendered the canonical way
    True
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from eth_typing import ChecksumAddress
from eth_utils.address import is_checksum_address, to_checksum_address

from lunark.errors import InvalidInput, Unauthorized

__all__ = ["MAX_MESSAGE_CHARS", "MAX_STATEMENT_CHARS", "SiweMessage", "make_nonce"]

MAX_MESSAGE_CHARS = 4096
"""Longest sign-in message accepted: EIP-4361 sets no bound, a server must (a real one is ~400)."""
MAX_STATEMENT_CHARS = 1024
"""Longest statement accepted."""

_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"

# RFC 3986 character classes, ASCII only (the spec's terms are RFC 3986's).
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_GEN_DELIMS = r":/?#\[\]@"
_PCT = r"%[0-9A-Fa-f]{2}"

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# authority = [ userinfo "@" ] host [ ":" port ]; no "/", "?", "#" or spaces.
_DOMAIN_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@\[\]]|{_PCT})+")
_URI_RE = re.compile(
    rf"[A-Za-z][A-Za-z0-9+\-.]*:(?:[{_UNRESERVED}{_SUB_DELIMS}{_GEN_DELIMS}]|{_PCT})*"
)
# statement = *( reserved / unreserved / " " ): printable ASCII without LF or
# the characters RFC 3986 leaves out (", %, <, >, \, ^, `, {, |, }).
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}{_GEN_DELIMS} ]*")
_REQUEST_ID_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})*")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID_RE = re.compile(r"[0-9]+")
_ADDRESS_RE = re.compile(r"0x[0-9A-Fa-f]{40}")
_DATE_TIME_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)

_NONCE_ALPHABET = string.ascii_letters + string.digits
_NONCE_LENGTH = 17  # 17 * log2(62) ≈ 101 bits


class _Malformed(ValueError):
    """One rule of the format is broken; becomes InvalidInput or Unauthorized."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SiweMessage:
    """One EIP-4361 message. Construct it to render it, or ``parse`` a signed one.

    Constructing a message validates every field (``InvalidInput``), so
    ``to_text()`` always yields a message that ``parse`` accepts.
    """

    domain: str
    """RFC 3986 authority asking for the sign-in, e.g. ``localhost:8080``."""
    address: ChecksumAddress
    """The signing account, EIP-55 checksummed."""
    statement: str | None
    """Human-readable ASCII assertion without line breaks; ``None`` leaves it out."""
    uri: str
    """RFC 3986 URI of the resource the sign-in is for, e.g. ``http://localhost:8080``."""
    version: str = "1"
    """Message format version; EIP-4361 defines only ``"1"``."""
    chain_id: int
    """EIP-155 chain id the session is bound to."""
    nonce: str
    """The server's single-use nonce: at least 8 ASCII letters and digits."""
    issued_at: datetime
    """When the message was made (timezone-aware)."""
    expiration_time: datetime | None = None
    """After this instant the message is no longer valid (timezone-aware)."""
    not_before: datetime | None = None
    """Before this instant the message is not yet valid (timezone-aware)."""
    request_id: str | None = None
    """System-specific identifier of the sign-in request (RFC 3986 pchars)."""
    resources: tuple[str, ...] = ()
    """RFC 3986 URIs the user wants resolved as part of the sign-in."""
    scheme: str | None = None
    """Optional URI scheme written before the domain (``https://example.com wants ...``)."""

    def __post_init__(self) -> None:
        try:
            self._validate()
        except _Malformed as exc:
            raise InvalidInput(f"Invalid SIWE message: {exc}") from None

    def _validate(self) -> None:
        if self.scheme is not None and not _SCHEME_RE.fullmatch(self.scheme):
            raise _Malformed(f"scheme {self.scheme!r} is not an RFC 3986 scheme.")
        _check_domain(self.domain)
        _check_address(self.address)
        if self.statement is not None:
            _check_statement(self.statement)
        _check_uri(self.uri, "URI")
        _check_version(self.version)
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int):
            raise _Malformed(f"chain id must be an int, not {self.chain_id!r}.")
        if self.chain_id < 0:
            raise _Malformed(f"chain id must not be negative, got {self.chain_id}.")
        _check_nonce(self.nonce)
        _check_datetime(self.issued_at, "issued_at")
        if self.expiration_time is not None:
            _check_datetime(self.expiration_time, "expiration_time")
        if self.not_before is not None:
            _check_datetime(self.not_before, "not_before")
        if self.request_id is not None and not _REQUEST_ID_RE.fullmatch(self.request_id):
            raise _Malformed(
                f"request id {self.request_id!r} may hold only RFC 3986 path characters."
            )
        if not isinstance(self.resources, tuple):
            raise _Malformed("resources must be a tuple of URIs.")
        for resource in self.resources:
            _check_uri(resource, "resource")

    def to_text(self) -> str:
        """The message exactly as the wallet signs it (EIP-4361 layout, LF line ends)."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme is not None else self.domain
        lines = [f"{origin}{_HEADER_SUFFIX}", self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_format_datetime(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_format_datetime(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_format_datetime(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """Parse a message strictly by the EIP-4361 ABNF.

        Raises ``Unauthorized`` with ``reason="malformed_message"`` and the
        offending line when anything does not conform, including a non-EIP-55
        address, a short nonce, a timestamp that is not RFC 3339, CR line
        ends or a trailing newline.
        """
        try:
            if not isinstance(text, str):
                raise _Malformed("the message must be text.")
            if len(text) > MAX_MESSAGE_CHARS:
                raise _Malformed(f"it is {len(text)} characters long; at most {MAX_MESSAGE_CHARS} are accepted.")
            return _Parser(text).parse()
        except _Malformed as exc:
            raise Unauthorized(
                f"The sign-in message is not a valid EIP-4361 message: {exc}",
                reason="malformed_message",
            ) from None


def make_nonce() -> str:
    """A fresh random nonce: 17 ASCII letters and digits (about 101 bits)."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(_NONCE_LENGTH))


class _Parser:
    """Walks the message line by line; each step names the line it expected."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise _Malformed(f"expected text, got {type(text).__name__}.")
        if "\r" in text:
            raise _Malformed("lines must end with LF only, not CR LF.")
        if text.endswith("\n"):
            raise _Malformed("the message must not end with a newline.")
        self.lines = text.split("\n")
        self.pos = 0

    def _next(self, what: str) -> str:
        if self.pos >= len(self.lines):
            raise _Malformed(f"the message ends where {what} was expected.")
        line = self.lines[self.pos]
        self.pos += 1
        return line

    def _field(self, prefix: str) -> str:
        line = self._next(f"'{prefix}...'")
        if not line.startswith(prefix):
            raise _Malformed(f"line {self.pos} should start with {prefix!r}, got {line!r}.")
        return line[len(prefix) :]

    def _optional_field(self, prefix: str) -> str | None:
        if self.pos < len(self.lines) and self.lines[self.pos].startswith(prefix):
            self.pos += 1
            return self.lines[self.pos - 1][len(prefix) :]
        return None

    def _blank(self) -> None:
        line = self._next("an empty line")
        if line:
            raise _Malformed(f"line {self.pos} should be empty, got {line!r}.")

    def parse(self) -> SiweMessage:
        header = self._next("the header")
        if not header.endswith(_HEADER_SUFFIX):
            raise _Malformed(
                f"line 1 should be '<domain>{_HEADER_SUFFIX}', got {header!r}."
            )
        origin = header[: -len(_HEADER_SUFFIX)]
        scheme: str | None = None
        domain = origin
        if "://" in origin:
            scheme, domain = origin.split("://", 1)
            if not _SCHEME_RE.fullmatch(scheme):
                raise _Malformed(f"line 1: {scheme!r} is not a URI scheme.")
        _check_domain(domain)

        address = self._next("the address")
        _check_address(address)
        self._blank()

        # [ statement LF ] LF: with no statement the next line is already
        # blank and the one after it is "URI: ..."; an empty statement gives
        # two blank lines before "URI: ...".
        statement: str | None
        if (
            self.pos + 1 < len(self.lines)
            and self.lines[self.pos] == ""
            and self.lines[self.pos + 1] != ""
        ):
            statement = None
        else:
            statement = self._next("the statement")
            _check_statement(statement)
        self._blank()

        uri = self._field("URI: ")
        _check_uri(uri, "URI")
        version = self._field("Version: ")
        _check_version(version)
        chain_id_text = self._field("Chain ID: ")
        if not _CHAIN_ID_RE.fullmatch(chain_id_text):
            raise _Malformed(f"chain id {chain_id_text!r} is not a decimal number.")
        nonce = self._field("Nonce: ")
        _check_nonce(nonce)
        issued_at = _parse_datetime(self._field("Issued At: "), "Issued At")

        expiration_text = self._optional_field("Expiration Time: ")
        not_before_text = self._optional_field("Not Before: ")
        request_id = self._optional_field("Request ID: ")
        if request_id is not None and not _REQUEST_ID_RE.fullmatch(request_id):
            raise _Malformed(
                f"request id {request_id!r} may hold only RFC 3986 path characters."
            )
        resources: list[str] = []
        if self._optional_field("Resources:") is not None:
            if self.lines[self.pos - 1] != "Resources:":
                raise _Malformed(f"line {self.pos} should be exactly 'Resources:'.")
            while self.pos < len(self.lines):
                resource = self._field("- ")
                _check_uri(resource, "resource")
                resources.append(resource)
        if self.pos < len(self.lines):
            raise _Malformed(
                f"unexpected line {self.pos + 1}: {self.lines[self.pos]!r}; after Issued At "
                "only Expiration Time, Not Before, Request ID and Resources may follow, "
                "in that order."
            )

        return SiweMessage(
            scheme=scheme,
            domain=domain,
            address=to_checksum_address(address),
            statement=statement,
            uri=uri,
            version=version,
            chain_id=int(chain_id_text),
            nonce=nonce,
            issued_at=issued_at,
            expiration_time=(
                None
                if expiration_text is None
                else _parse_datetime(expiration_text, "Expiration Time")
            ),
            not_before=(
                None if not_before_text is None else _parse_datetime(not_before_text, "Not Before")
            ),
            request_id=request_id,
            resources=tuple(resources),
        )


def _check_domain(domain: str) -> None:
    if not isinstance(domain, str) or not _DOMAIN_RE.fullmatch(domain):
        raise _Malformed(f"domain {domain!r} is not an RFC 3986 authority such as 'example.com'.")


def _check_address(address: str) -> None:
    if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
        raise _Malformed(f"address {address!r} is not '0x' followed by 40 hex digits.")
    if not is_checksum_address(address):
        raise _Malformed(
            f"address {address} is not EIP-55 checksummed; use the mixed-case form "
            "the wallet reports."
        )


def _check_statement(statement: str) -> None:
    if isinstance(statement, str) and len(statement) > MAX_STATEMENT_CHARS:
        raise _Malformed(f"the statement is {len(statement)} characters; at most {MAX_STATEMENT_CHARS} are accepted.")
    if not isinstance(statement, str) or not _STATEMENT_RE.fullmatch(statement):
        raise _Malformed(
            f"statement {statement!r} may hold only ASCII letters, digits, spaces and "
            "RFC 3986 reserved/unreserved characters, on one line."
        )


def _check_uri(uri: str, what: str) -> None:
    if not isinstance(uri, str) or not _URI_RE.fullmatch(uri):
        raise _Malformed(f"{what} {uri!r} is not an RFC 3986 URI such as 'https://example.com'.")


def _check_version(version: str) -> None:
    if version != "1":
        raise _Malformed(f"version {version!r} is not supported; EIP-4361 defines only '1'.")


def _check_nonce(nonce: str) -> None:
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise _Malformed(f"nonce {nonce!r} must be at least 8 ASCII letters and digits.")


def _check_datetime(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise _Malformed(f"{what} must be a datetime, not {type(value).__name__}.")
    offset = value.utcoffset()
    if offset is None:
        raise _Malformed(f"{what} must be timezone-aware (RFC 3339 needs an offset).")
    if offset % timedelta(minutes=1):
        raise _Malformed(f"{what}'s UTC offset must be whole minutes for RFC 3339.")


def _parse_datetime(text: str, what: str) -> datetime:
    match = _DATE_TIME_RE.fullmatch(text)
    if match is None:
        raise _Malformed(
            f"{what} {text!r} is not an RFC 3339 date-time such as '2021-09-30T16:25:24Z'."
        )
    frac = match["frac"] or ""
    offset = match["offset"]
    # Python keeps microseconds; finer fractions are truncated, not refused.
    micro = frac[:6].ljust(6, "0")
    iso = f"{match['date']}T{match['time']}.{micro}"
    try:
        if offset in ("Z", "z"):
            tz = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime.fromisoformat(iso).replace(tzinfo=tz)
    except ValueError:
        raise _Malformed(f"{what} {text!r} is not a valid date and time.") from None


def _format_datetime(value: datetime) -> str:
    micro = value.microsecond
    timespec = "seconds" if not micro else "milliseconds" if micro % 1000 == 0 else "microseconds"
    if value.utcoffset() == timedelta(0):
        return value.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
    return value.isoformat(timespec=timespec)
