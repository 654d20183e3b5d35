"""Which blocks of one contract to read, and what to emit: :class:`BlockPoller`."""

from __future__ import annotations

import logging
from typing import Any

from web3 import AsyncWeb3

from makerflow.sources.web3_config import Web3SourceConfig
from makerflow.sources.web3_readers import NS, ChainEvent, Reader

log = logging.getLogger(__name__)


class BlockPoller:
    """Follows one contract block by block from a cursor (the last block fully emitted)."""

    def __init__(self, reader: Reader, config: Web3SourceConfig, cursor: int | None) -> None:
        self.reader = reader
        self.config = config
        self.cursor = cursor
        self.last_emit: int | None = None
        self.ready = False
        self._block_ts: dict[int, int] = {}

    async def _ts(self, w3: AsyncWeb3[Any], block: int) -> int:
        ts = self._block_ts.get(block)
        if ts is None:
            ts = int((await w3.eth.get_block(block))["timestamp"]) * NS
            if len(self._block_ts) > 256:
                self._block_ts.clear()
            self._block_ts[block] = ts
        return ts

    async def step(self, w3: AsyncWeb3[Any]) -> tuple[int, list[ChainEvent], bool]:
        """One poll: ``(new cursor, events, caught_up)``. Raises on RPC failure, leaving the
        cursor where it was so the next try reads the same blocks."""
        if not self.ready:
            await self.reader.setup(w3)
            self.ready = True
        head = int(await w3.eth.block_number) - self.config.confirmations
        if head < 0:
            return (self.cursor or 0, [], True)
        if self.cursor is None or head < self.cursor:
            if self.cursor is not None:
                log.warning(
                    "%s %s: head %d is behind the resume block %d (re-organised or another "
                    "chain); starting again from the head",
                    self.reader.step, self.reader.address, head, self.cursor,
                )  # fmt: skip
            event = await self.reader.read_state(head, await self._ts(w3, head))
            self.cursor = self.last_emit = head
            return (head, [event], True)
        if head == self.cursor:
            return (head, [], True)
        to = min(head, self.cursor + self.config.max_block_range)
        logs = await w3.eth.get_logs(
            {
                "address": self.reader.address,  # type: ignore[typeddict-item]
                "fromBlock": self.cursor + 1,
                "toBlock": to,
                "topics": [self.reader.topic],
            }
        )
        ordered = sorted(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        events: list[ChainEvent] = []
        for entry in ordered:
            ts = await self._ts(w3, int(entry["blockNumber"]))
            events.append(self.reader.from_log(entry, ts))
        if events:
            self.last_emit = int(ordered[-1]["blockNumber"])
        elif self.last_emit is None or to - self.last_emit >= self.config.heartbeat_blocks:
            events.append(await self.reader.read_state(to, await self._ts(w3, to)))
            self.last_emit = to
        self.cursor = to
        return (to, events, to == head)
