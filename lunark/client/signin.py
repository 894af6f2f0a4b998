"""Sign-in: Sign-In with Ethereum (EIP-4361) for a session token, signing in again when the token
expires on a reconnection, and the HTTP requests that carry the token.

``SignIn`` is the part of ``LunarkClient`` that holds the token; the client's constructor sets the
state declared on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from eth_account import Account
from eth_account.messages import encode_defunct

from lunark.client.errors import Disconnected, error_from_body
from lunark.errors import InvalidInput, LunarkError, Unauthorized
from lunark.siwe import SiweMessage

__all__ = ["SignIn"]

logger = logging.getLogger(__name__)

_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def _domains(url: str) -> list[str]:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not netloc:
        raise InvalidInput(f"{url!r} is not a URL such as 'http://localhost:8080'.")
    domains = [netloc]
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    port = netloc[len(host):]
    if host.lower() in _LOOPBACK:
        # localhost and 127.0.0.1 are the same local server; it may know itself by either name.
        domains += [alias + port for alias in _LOOPBACK if alias != host.lower()]
    return domains


class SignIn:
    """Signing in and HTTP: the session token, got with a key and renewed with it."""

    url: str
    token: str | None
    address: str | None
    timeout: float
    _signer_key: str | None
    _http: aiohttp.ClientSession | None
    _refreshing: bool

    async def sign_in(self, private_key: str | None = None, *, chain_id: int = 31337, domain: str | None = None) -> str:
        """Sign in with Ethereum (EIP-4361); stores the token and returns the checksummed address.

        Gets a nonce, builds the message for ``domain`` (default: host:port of the URL;
        ``localhost`` and ``127.0.0.1`` are tried both), signs it with ``personal_sign``
        and trades it for a token. ``private_key`` defaults to the constructor's
        ``signer_key`` (and is remembered for signing in again when the token expires).
        """
        key = private_key or self._signer_key
        if key is None:
            raise Unauthorized("No private key to sign in with: pass one to sign_in() or signer_key=.")
        self._signer_key = key
        account = Account.from_key(key)
        candidates = [domain] if domain else _domains(self.url)
        for index, candidate in enumerate(candidates):
            nonce = (await self._request("GET", "/auth/nonce", authenticated=False))["nonce"]
            message = SiweMessage(
                domain=candidate,
                address=account.address,
                statement="Sign in to Lunark.",
                uri=self.url,
                chain_id=chain_id,
                nonce=str(nonce),
                issued_at=datetime.now(UTC),
            ).to_text()
            signature = Account.sign_message(encode_defunct(text=message), key).signature
            body = {"message": message, "signature": "0x" + bytes(signature).hex()}
            try:
                answer = await self._request("POST", "/auth/verify", body, authenticated=False)
            except Unauthorized as exc:
                if exc.details.get("reason") == "wrong_domain" and index + 1 < len(candidates):
                    continue
                raise
            self.token = str(answer["token"])
            self.address = str(answer["address"])
            return self.address
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, authenticated: bool = True
    ) -> Any:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers: dict[str, str] = {}
        if authenticated:
            if self.token is None:
                raise Unauthorized("Sign in first (sign_in() or token=).")
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self._http.request(method, self.url + path, json=body, headers=headers) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Disconnected(f"Could not reach {self.url}: {exc or type(exc).__name__}.") from exc
        if status >= 400:
            if isinstance(answer, dict) and "error" in answer:
                raise error_from_body(answer["error"])
            raise LunarkError(f"{method} {path} failed with HTTP {status}.", status=status)
        return answer

    async def _refresh_token(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        try:
            await self.sign_in()
        except LunarkError as exc:
            logger.warning("signing in again failed: %s", exc)
        finally:
            self._refreshing = False
