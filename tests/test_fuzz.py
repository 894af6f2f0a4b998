"""A property-based fuzzer (hypothesis) over every Socket.IO event and HTTP endpoint of a real server.

It generates valid payloads, payloads with one thing wrong, arbitrary JSON and hostile text
(deep nesting, huge numbers, lone surrogates, oversize messages, malformed Socket.IO packets)
and sends them as a signed-in attacker to a real ``lunark serve`` process. Properties:

- every Socket.IO event is answered: a success ack of the event's shape only for a payload
  the protocol model accepts, otherwise an error with one of the protocol's codes;
- every HTTP answer is JSON with a protocol error code (or the endpoint's success), never a 5xx;
- after each batch the process is alive, /healthz is ok, and another user's chat is untouched
  (its events unchanged) and still answers.

Bounded for the suite: ``LUNARK_FUZZ_EXAMPLES`` examples per property (default 120, under a
minute for the three on two cores). The long run, about 10 minutes: ``./dev fuzz``
(``LUNARK_FUZZ_EXAMPLES=6000``; pass another count as its argument).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
from conftest import sign_in
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from server_harness import RawSocketIO, SioClient

from lunark.chain.anvil import Anvil, DevAccount
from lunark.protocol import CLIENT_EVENTS, ErrorCode

EXAMPLES = int(os.environ.get("LUNARK_FUZZ_EXAMPLES", "120"))
BATCH = 20
CODES = {code.value for code in ErrorCode}
T = TypeVar("T")

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
    # Shrinking replays examples that may each take seconds; the first failure says enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values --------------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from([
    "", "\udfff", "\ud800x", "a\u0000b", "x" * 9000, "é" * 3000, "<script>", "../../etc/passwd", "0x" + "f" * 64,
    "%00", "\u202e", "🙂" * 100, " ", "\n", "null", "[", "{", "\\",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40), HOSTILE_TEXT,
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
IDS = st.one_of(st.sampled_from(["", "x" * 129, "a b", "chat\n1", "ü"]), st.from_regex(r"[A-Za-z0-9_.:-]{1,20}",
                                                                                       fullmatch=True))


def raw_texts() -> st.SearchStrategy[str]:
    """JSON-ish text no client library would produce."""
    return st.one_of(
        st.integers(min_value=30, max_value=200_000).map(lambda n: "[" * n + "]" * n),
        st.integers(min_value=30, max_value=50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
        st.integers(min_value=101, max_value=20_000).map(lambda n: "9" * n),
        st.just('"\\udfff"'), st.just('{"content":"\\ud800"}'), st.just("NaN"), st.just("[Infinity]"),
        st.just('"' + "x" * 300_000 + '"'), st.text(max_size=200), st.just("{" * 10),
        JSON.map(json.dumps),
    )


# -- the server and the two users ------------------------------------------------------------------


class Loop:
    """An event loop in a thread of its own: hypothesis calls are synchronous, the clients async."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class World:
    def __init__(self, server: Any, attacker: str, victim: str) -> None:
        self.server = server
        self.attacker_token = attacker
        self.victim_token = victim
        self.attacker: SioClient | None = None
        self.victim: SioClient | None = None
        self.http: aiohttp.ClientSession | None = None
        self.chat = ""  # the attacker's own chat
        self.victim_chat = ""
        self.victim_seq = 0
        self.sent = 0

    async def setup(self) -> None:
        self.http = aiohttp.ClientSession()
        self.attacker = await SioClient(self.server, self.attacker_token).connect()
        self.victim = await SioClient(self.server, self.victim_token).connect()
        self.chat = (await self.attacker.call("join_chat", {}))["chat_id"]
        self.victim_chat = (await self.victim.call("join_chat", {}))["chat_id"]
        await self.victim_says("hello")

    async def victim_says(self, text: str) -> None:
        assert self.victim is not None
        mark = self.victim.mark()
        await self.victim.call("send_message", {"chat_id": self.victim_chat, "content": text,
                                                "client_message_id": f"v{self.victim.mark()}"})
        end = await self.victim.wait_event("message_end", chat_id=self.victim_chat, after=mark)
        assert end["finish_reason"] == "stop"
        self.victim_seq = end["seq"]

    async def attacker_socket(self) -> SioClient:
        if self.attacker is None or not self.attacker.sio.connected:
            self.attacker = await SioClient(self.server, self.attacker_token).connect()
        return self.attacker

    async def checkpoint(self) -> None:
        """The process lives and serves; the victim's chat has exactly the events it made."""
        assert self.server.alive(), f"the server died:\n{self.server.log()[-3000:]}"
        assert self.http is not None
        async with self.http.get(self.server.url + "/healthz") as response:
            assert response.status == 200, await response.text()
        async with self.http.get(self.server.url + f"/api/chats/{self.victim_chat}",
                                 headers={"Authorization": f"Bearer {self.victim_token}"}) as response:
            detail = await response.json()
        assert detail["last_seq"] == self.victim_seq, "another user's chat changed"
        await self.victim_says(f"balance please {self.victim_seq}")

    async def close(self) -> None:
        for client in (self.attacker, self.victim):
            if client is not None:
                await client.close()
        if self.http is not None:
            await self.http.close()

    def count(self, loop: Loop) -> None:
        self.sent += 1
        if self.sent % BATCH == 0:
            loop.run(self.checkpoint())


async def make_world(serve: Any, attacker: DevAccount, victim: DevAccount) -> World:
    big = {"per_minute": 60_000, "burst": 10_000}  # the fuzzer wants the handlers, not only the limiter
    server = await serve(limits={"rate": {"sign_in": big, "create_chat": big, "message": big, "decision": big,
                                          "join": big}})
    return World(server, await sign_in(server, attacker), await sign_in(server, victim))


async def run_in_thread(world: World, body: Any) -> None:
    """Run ``body(loop)`` (the hypothesis test) in a thread with its own event loop."""

    def go() -> None:
        loop = Loop()
        try:
            loop.run(world.setup())
            body(loop)
            loop.run(world.checkpoint())
        finally:
            loop.run(world.close())
            loop.close()

    await asyncio.to_thread(go)


# -- Socket.IO events ----------------------------------------------------------------------------------


def socket_payloads(world: World) -> st.SearchStrategy[tuple[str, Any]]:
    def valid(event: str) -> st.SearchStrategy[dict[str, Any]]:
        chat = st.sampled_from([world.chat, world.victim_chat, "chat_nope"])
        shapes: dict[str, st.SearchStrategy[dict[str, Any]]] = {
            "join_chat": st.fixed_dictionaries({}, optional={"chat_id": chat, "last_seq": st.integers(0, 10**6)}),
            "send_message": st.fixed_dictionaries({"chat_id": chat, "content": st.text(min_size=1, max_size=80),
                                                   "client_message_id": IDS}),
            "resume_decisions": st.fixed_dictionaries({
                "chat_id": chat, "approval_id": IDS,
                "decisions": st.lists(st.one_of(
                    st.fixed_dictionaries({"type": st.just("approve")}),
                    st.fixed_dictionaries({"type": st.just("reject")}, optional={"message": st.text(max_size=30)}),
                    st.fixed_dictionaries({"type": st.just("edit"), "edited_action": st.fixed_dictionaries(
                        {"name": st.sampled_from(["transfer", "switch_network", "x"]),
                         "args": st.dictionaries(st.text(max_size=8), JSON, max_size=3)})}),
                ), min_size=1, max_size=3),
            }),
            "abort": st.fixed_dictionaries({"chat_id": chat}),
            "wallet_changed": st.fixed_dictionaries({"chat_id": chat,
                                                     "chain_id": st.sampled_from([31337, 31338, 1, 5])}),
            "continue_message": st.fixed_dictionaries({"chat_id": chat, "message_id": IDS}),
            "call_tool": st.fixed_dictionaries({
                "chat_id": chat, "name": st.sampled_from(["get_balance", "transfer", "x"]),
                "args": st.dictionaries(st.text(max_size=8), JSON, max_size=3)}),
        }
        return shapes[event]

    def mutated(event: str) -> st.SearchStrategy[Any]:
        return valid(event).flatmap(lambda payload: st.one_of(
            st.just(payload),
            st.builds(lambda k, v: {**payload, k: v}, st.sampled_from([*payload, "extra"]) if payload else
                      st.just("extra"), JSON),
            st.builds(lambda k: {key: v for key, v in payload.items() if key != k},
                      st.sampled_from(list(payload) or ["x"])),
            JSON,
        ))

    names = st.one_of(st.sampled_from(list(CLIENT_EVENTS)), st.sampled_from(["nope", "connect", "message", "x" * 300]))
    return names.flatmap(lambda name: st.tuples(st.just(name), mutated(name) if name in CLIENT_EVENTS else JSON))


async def call_event(world: World, event: str, payload: Any) -> None:
    sio = await world.attacker_socket()
    try:
        ack = await sio.call(event, payload, timeout=30)
    except (TypeError, ValueError):
        return  # the client library itself refuses to encode it (e.g. a lone surrogate in a key)
    assert isinstance(ack, dict), f"{event}: ack {ack!r}"
    if "error" in ack:
        error = ack["error"]
        assert error.get("code") in CODES and isinstance(error.get("message"), str) and error["message"], ack
        return
    assert event in CLIENT_EVENTS, f"{event} is no event, yet acked {ack!r}"
    model, ack_model = CLIENT_EVENTS[event]
    try:
        model.model_validate(payload if payload is not None else {})
    except ValidationError as exc:
        raise AssertionError(f"{event} {payload!r} is invalid ({exc.errors()[0]['msg']}), yet acked {ack!r}") from None
    ack_model.model_validate(ack)
    if event == "send_message":  # let the turn end so the next one is not only "busy"
        await sio.call("abort", {"chat_id": payload["chat_id"]}, timeout=30)


async def test_fuzz_socket_events(serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount) -> None:
    world = await make_world(serve, mallory, alice)

    def body(loop: Loop) -> None:
        @FUZZ_SETTINGS
        @given(data=st.data())
        def events(data: st.DataObject) -> None:
            event, payload = data.draw(socket_payloads(world))
            loop.run(call_event(world, event, payload))
            world.count(loop)

        events()

    await run_in_thread(world, body)


# -- raw Socket.IO packets -------------------------------------------------------------------------------


def raw_packets(world: World) -> st.SearchStrategy[str]:
    event_names = st.sampled_from([*CLIENT_EVENTS, "nope"])
    return st.one_of(
        st.builds(lambda n, e, t: f"42{n}[{json.dumps(e)},{t}]", st.integers(0, 10**6), event_names, raw_texts()),
        st.builds(lambda t: "40" + t, raw_texts()),
        st.builds(lambda t: "4" + t, raw_texts()),
        st.builds(lambda t: "2" + t, raw_texts()),
        st.builds(lambda n, t: f"451-{n}" + t, st.integers(0, 10**9), raw_texts()),
        st.builds(lambda t: "42" + t, st.text(max_size=100)),
        st.integers(1_048_577, 1_300_000).map(lambda n: '427["send_message",{"content":"' + "x" * n + '"}]'),
        st.text(max_size=60),
    )


async def send_raw(world: World, frame: str) -> None:
    raw = RawSocketIO(world.server.url)
    await raw.open()
    try:
        assert (await raw.connect(json.dumps({"token": world.attacker_token}))).startswith("0")
        try:
            await raw.send(frame)
            if frame.startswith("41") or not frame.startswith("4"):
                # A Socket.IO DISCONNECT (the client left), or an Engine.IO packet of another type
                # (close, ping, pong, upgrade: nothing is owed; malformed: the WebSocket closes).
                return
            # Still answered afterwards (or closed by the server: for frames past the transport's cap).
            # (an ack id the fuzzed frames never use: they stay below 10**6)
            await raw.send('427777777["join_chat",{"chat_id":"' + world.chat + '"}]')
            while True:
                try:
                    answer = await raw.recv_message(timeout=15)
                except TimeoutError:
                    raise AssertionError(f"no answer after {frame[:120]!r} ({len(frame)} chars); server log:\n"
                                         f"{world.server.log()[-3000:]}") from None
                if answer.startswith("37777777["):
                    assert json.loads(answer[8:])[0]["chat_id"] == world.chat, answer
                    break
        except (EOFError, ConnectionError, asyncio.IncompleteReadError):
            assert len(frame) > 1_048_576 or frame[:1] != "4", f"closed after {frame[:80]!r}"
    finally:
        raw.close()


async def test_fuzz_raw_socket_packets(serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount) -> None:
    world = await make_world(serve, mallory, alice)

    def body(loop: Loop) -> None:
        @FUZZ_SETTINGS
        @given(data=st.data())
        def packets(data: st.DataObject) -> None:
            loop.run(send_raw(world, data.draw(raw_packets(world))))
            world.count(loop)

        packets()

    await run_in_thread(world, body)


# -- HTTP ---------------------------------------------------------------------------------------------


def http_requests(world: World) -> st.SearchStrategy[tuple[str, str, Any, dict[str, str]]]:
    chat = st.sampled_from([world.chat, world.victim_chat, "chat_nope", "bad%20id", "x" * 200])
    routes = st.one_of(
        st.tuples(st.just("GET"), st.just("/auth/nonce")),
        st.tuples(st.just("POST"), st.just("/auth/verify")),
        st.tuples(st.just("POST"), st.just("/auth/logout")),
        st.tuples(st.sampled_from(["GET", "POST"]), st.just("/api/chats")),
        st.tuples(st.just("GET"), chat.map(lambda c: f"/api/chats/{c}")),
        st.tuples(st.just("POST"), st.tuples(chat, st.sampled_from(["messages", "decisions", "abort", "wallet"]))
                  .map(lambda p: f"/api/chats/{p[0]}/{p[1]}")),
        st.tuples(st.just("GET"), chat.map(lambda c: f"/api/chats/{c}/events")),
        st.tuples(st.just("GET"), st.just("/healthz")),
        st.tuples(st.sampled_from(["PUT", "DELETE", "PATCH"]), st.just("/api/chats")),
    )
    bodies = st.one_of(st.none(), raw_texts(), JSON.map(json.dumps), st.binary(max_size=100),
                       st.fixed_dictionaries({"content": st.text(min_size=1, max_size=50),
                                              "client_message_id": IDS}).map(json.dumps))
    headers = st.fixed_dictionaries({}, optional={
        "Last-Event-ID": st.one_of(st.integers(-5, 2**70).map(str),
                                   st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)),
        "Authorization": st.sampled_from(["Bearer ", "Bearer nope", "Basic x", "bearer " + world.attacker_token]),
    })
    return st.builds(lambda r, b, h: (r[0], r[1], b, h), routes, bodies, headers)


async def call_http(world: World, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
    assert world.http is not None
    headers = {"Authorization": f"Bearer {world.attacker_token}", **headers}
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    async with world.http.request(method, world.server.url + path, data=data, headers=headers,
                                  timeout=aiohttp.ClientTimeout(total=30)) as response:
        assert response.status < 500, f"{method} {path}: {response.status} {await response.text()}"
        if response.content_type == "text/event-stream":
            assert response.status == 200 and path.endswith("/events")
            return
        assert response.content_type == "application/json", (method, path, response.status)
        answer = await response.json()
        if response.status >= 400:
            assert answer["error"]["code"] in CODES and answer["error"]["message"], answer
        elif path.endswith("/messages"):
            await world.http.post(world.server.url + path.replace("/messages", "/abort"), headers=headers)


async def test_fuzz_http(serve: Any, anvil: Anvil, alice: DevAccount, mallory: DevAccount) -> None:
    world = await make_world(serve, mallory, alice)

    def body(loop: Loop) -> None:
        @FUZZ_SETTINGS
        @given(request=st.data())
        def requests(request: st.DataObject) -> None:
            method, path, payload, headers = request.draw(http_requests(world))
            loop.run(call_http(world, method, path, payload, headers))
            world.count(loop)

        requests()

    await run_in_thread(world, body)
