"""Group membership (kazoo's Party and ShallowParty): who is alive, as one ephemeral node per member."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from embedzk.errors import NodeExistsError, NoNodeError
from embedzk.recipes._common import (
    Deadline,
    create_owned,
    delete_quietly,
    join,
    normalize_path,
    retry,
)

if TYPE_CHECKING:
    from embedzk.peer import Peer


class _BaseParty:
    def __init__(self, peer: Peer, path: str, identifier: Any, node: str, data: bytes) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        self.data = str(identifier if identifier is not None else "")
        self.node = node
        self.create_path = join(self.path, node)
        self._node_data = data
        self._ensured = False
        #: True between join() and leave() (the node itself goes if the session is lost).
        self.participating = False

    def _ensure_path(self) -> None:
        if not self._ensured:
            retry(self.peer, lambda: self.peer.ensure_path(self.path))
            self._ensured = True

    def join(self) -> None:
        """Join the party (idempotent): an ephemeral node that lasts as long as this peer's session."""
        self._ensure_path()

        def find() -> str | None:
            return self.create_path if self.peer.exists(self.create_path) is not None else None

        try:
            create_owned(self.peer, self.create_path, self._node_data, find, Deadline(self.peer.request_timeout))
        except NodeExistsError:
            pass
        self.participating = True

    def leave(self) -> bool:
        """Leave the party; True if this member was in it."""
        self.participating = False
        return delete_quietly(self.peer, self.create_path, Deadline(self.peer.request_timeout))

    def _children(self) -> list[str]:
        self._ensure_path()
        try:
            return sorted(self.peer.get_children(self.path))
        except NoNodeError:
            return []

    def __len__(self) -> int:
        """The number of members."""
        return len(self._children())

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def watch(self, func: Callable[[list[str]], Any]) -> Any:
        """Call ``func(members)`` now and whenever membership changes (on the peer's dispatch thread); return
        False from ``func`` to stop. Returns the underlying ChildrenWatch."""
        self._ensure_path()
        return self.peer.ChildrenWatch(self.path, lambda _children: func(list(self)))


class Party(_BaseParty):
    """Simple membership: who is in the party, each member's identifier held in its node's data (kazoo's Party).

    Usage::

        party = peer.Party("/members/workers", identifier="worker-3 pid 1234")
        party.join()
        list(party)                         # identifiers of the members: ["worker-1 ...", "worker-3 ..."]
        len(party)
        party.watch(lambda members: print("now", members))
        party.leave()

    Members are ephemeral nodes: a member whose process dies leaves once its session expires.
    """

    _NODE_NAME = "__party__"

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        data = str(identifier if identifier is not None else "")
        super().__init__(peer, path, identifier, uuid.uuid4().hex + self._NODE_NAME, data.encode("utf-8"))

    def _children(self) -> list[str]:
        return [c for c in super()._children() if self._NODE_NAME in c]

    def get_participants(self) -> list[str]:
        """The identifiers of the members."""
        return list(self)

    def __iter__(self) -> Iterator[str]:
        """The identifiers of the members."""
        for child in self._children():
            try:
                data, _stat = self.peer.get(join(self.path, child))
            except NoNodeError:
                continue
            yield data.decode("utf-8", "replace")


class ShallowParty(_BaseParty):
    """Membership with the identifier in the node's name, so listing members reads no data (kazoo's
    ShallowParty). The identifier must be usable in a znode name (no ``/``).

    Usage::

        party = peer.ShallowParty("/members/workers", identifier="worker-3")
        party.join()
        list(party)                         # ["worker-1", "worker-3"]
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        data = str(identifier if identifier is not None else "")
        if "/" in data:
            raise ValueError(f"a ShallowParty identifier cannot contain '/': {data!r}")
        super().__init__(peer, path, identifier, f"{uuid.uuid4().hex}-{data}", b"0")

    def __iter__(self) -> Iterator[str]:
        """The identifiers of the members."""
        for child in self._children():
            yield child[child.find("-") + 1:]
