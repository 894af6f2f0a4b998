"""The model of the benchmarks: Lunark's offline planner, plus a paced token stream.

A user message ``bench M RATE`` makes it stream M stamped tokens (``benchmarks.tokens``)
at RATE tokens/s (0: as fast as possible, yielding to the event loop between
tokens, as a model read off a socket does). Anything else goes to the planner,
so transfers are proposed and answers composed as in the product.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from benchmarks.tokens import make_token
from lunark.models.planner import OfflinePlanner


def parse_bench(text: str) -> tuple[int, float] | None:
    parts = text.split()
    if len(parts) == 3 and parts[0] == "bench":
        return int(parts[1]), float(parts[2])
    return None


async def paced_tokens(count: int, rate: float) -> AsyncIterator[str]:
    """``count`` stamped tokens at ``rate`` per second (0: as fast as possible), on an absolute schedule."""
    start = time.monotonic()
    for index in range(count):
        if rate:
            wait = start + index / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        else:
            await asyncio.sleep(0)
        yield make_token(index)


class BenchModel(OfflinePlanner):
    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        last = messages[-1] if messages else None
        spec = parse_bench(last.text) if isinstance(last, HumanMessage) else None
        if spec is None:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        async for token in paced_tokens(*spec):
            yield ChatGenerationChunk(message=AIMessageChunk(content=token))
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", response_metadata={"finish_reason": "stop"}, chunk_position="last")
        )
