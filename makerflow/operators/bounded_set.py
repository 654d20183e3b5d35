"""A set with a bounded memory, for the ids kept to drop repeated events."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class BoundedSet:
    """A set that forgets its oldest members past ``size``."""

    __slots__ = ("_order", "_set")

    def __init__(self, size: int, items: Iterable[object] = ()) -> None:
        self._order: deque[object] = deque(maxlen=size)
        self._set: set[object] = set()
        for item in items:
            self.add(item)

    def __contains__(self, item: object) -> bool:
        return item in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, item: object) -> None:
        if item in self._set:
            return
        if len(self._order) == self._order.maxlen:
            self._set.discard(self._order[0])
        self._order.append(item)
        self._set.add(item)

    def items(self) -> tuple[object, ...]:
        return tuple(self._order)
