"""A linearizability checker for histories of registers: the Wing and Gong search with Lowe's
memoization, as Porcupine (github.com/anishathalye/porcupine) implements it.

A history is a list of `Op`s, each a call and a return observed by one client: a write of a
value to a key, or a read of a key that saw a value (`None`: the key was never written). A
history is linearizable when some total order of its operations, keeping every operation that
returned before another was called ahead of it, is a legal sequence for registers: every read
sees the value of the last write before it. Registers are independent, so a history is
linearizable exactly when each key's part is (the locality of linearizability), and each key
is checked on its own.

An operation whose outcome is unknown (a write whose answer was lost: a timeout, a connection
closed) may have taken effect at any time after its call, or never: it is given a return at
infinity, so the search may place it anywhere after its call, including after everything else
(the same as never). A read whose answer was lost tells nothing and is left out by the caller.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable

WRITE = "write"
READ = "read"


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation as a client saw it: `call` and `ret` are times on one clock (a return
    of `math.inf` when the outcome is unknown); `value` is what was written or what was read."""

    key: Hashable
    kind: str
    value: Any
    call: float
    ret: float
    client: int = 0


class _Node:
    __slots__ = ("op", "is_call", "match", "prev", "next")

    def __init__(self, op: int, is_call: bool):
        self.op = op
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


def _step(state, op: Op):
    """The register's transition: whether `op` is legal in `state`, and the state after."""
    if op.kind == WRITE:
        return True, op.value
    return op.value == state, state


def check_key(ops: list[Op], initial=None) -> tuple[bool, int]:
    """Whether one register's history is linearizable; with the number of search steps taken.
    On failure, the longest prefix the search linearized is not reported: the caller prints
    the history."""
    for op in ops:
        assert op.call <= op.ret, op
    events = []
    for i, op in enumerate(ops):
        # At equal times a call sorts before a return: the operations then overlap, which
        # is the weaker claim (a return at the same instant as a call is not "before" it).
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort()
    head = _Node(-1, False)
    calls: dict[int, _Node] = {}
    last = head
    for _, is_return, i in events:
        node = _Node(i, not is_return)
        if is_return:
            node.match = calls[i]
            calls[i].match = node
        else:
            calls[i] = node
        node.prev = last
        last.next = node
        last = node

    def lift(call: _Node) -> None:
        call.prev.next = call.next
        call.next.prev = call.prev
        ret = call.match
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev

    def unlift(call: _Node) -> None:
        ret = call.match
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
        call.prev.next = call
        call.next.prev = call

    state = initial
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[_Node, Any]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if entry.is_call:
            ok, after = _step(state, ops[entry.op])
            if ok:
                marked = linearized | (1 << entry.op)
                if (marked, after) not in cache:
                    cache.add((marked, after))
                    stack.append((entry, state))
                    state = after
                    linearized = marked
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return reached with its call not yet placed: the operations placed so far
            # cannot be ordered so, undo the last choice.
            if not stack:
                return False, steps
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op)
            unlift(entry)
            entry = entry.next
    return True, steps


def check(ops: list[Op], initial=None) -> dict:
    """Checks every key of a history; returns {key: (linearizable, steps)}.

    A write of unknown outcome whose value no read of its key saw is left out first: it can
    always be placed after everything else, where it changes nothing, so the answer is the
    same; but left in, each such write doubles the orders the search may have to try."""
    by_key: dict[Hashable, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    out = {}
    for key, part in by_key.items():
        seen = {op.value for op in part if op.kind == READ}
        part = [op for op in part
                if not (op.kind == WRITE and op.ret == float("inf") and op.value not in seen)]
        out[key] = check_key(part, initial)
    return out

