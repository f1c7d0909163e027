"""An independent model of the znode tree, small enough to trust: what the committed log must produce.

:class:`TreeModel` replays the transactions of the committed log (decoded from the entries, in index order) and
answers what each one returns and what every read at a given index must see. It is written from ZooKeeper's
semantics as :mod:`embedzk.tree.datatree` documents them, not from its code: nested paths (a create needs its
parent, a delete needs no children), sequential names from the number of children the parent has had created, a
cversion that counts creations and deletions (ZooKeeper 3.8's Stat), ephemeral nodes owned by a session and deleted when it closes, makepath, versions, and multis that apply all or
nothing. Containers and TTL nodes are outside it (the simulator's workload creates none).

Results use the shapes of :mod:`embedzk.testing.history`: ``("ok", value)`` or ``("err", code)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedzk.tree.txn import (
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteOp,
    MultiOp,
    SetDataOp,
)

__all__ = ["ModelNode", "TreeModel", "UnsupportedOp"]

Result = tuple[str, Any]


class UnsupportedOp(Exception):
    """The log holds an operation this model does not know (a workload the model was not written for)."""


@dataclass(slots=True)
class ModelNode:
    """One znode: its data, version, how many children it has had created and deleted, owner session (0:
    persistent), children."""

    data: bytes
    version: int = 0
    creations: int = 0
    deletions: int = 0
    owner: int = 0
    children: set[str] = field(default_factory=set)

    @property
    def cversion(self) -> int:
        """Stat.cversion: every change of the children, a creation or a deletion (ZooKeeper 3.8 counts both)."""
        return self.creations + self.deletions

    def copy(self) -> ModelNode:
        return ModelNode(self.data, self.version, self.creations, self.deletions, self.owner, set(self.children))


class _Failed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _parent(path: str) -> tuple[str, str]:
    cut = path.rfind("/")
    return (path[:cut] or "/"), path[cut + 1 :]


class TreeModel:
    """The tree and its sessions, as the committed log builds them."""

    def __init__(self) -> None:
        self.nodes: dict[str, ModelNode] = {"/": ModelNode(b"")}
        #: session id -> (owner peer, timeout in ms)
        self.sessions: dict[int, tuple[str, int]] = {}

    # --- reads -------------------------------------------------------------------------------------------------

    def get(self, path: str) -> Result:
        """``("ok", (data, version))`` or NoNode."""
        node = self.nodes.get(path)
        return ("err", "NoNode") if node is None else ("ok", (node.data, node.version))

    def children(self, path: str) -> Result:
        """``("ok", sorted child names)`` or NoNode."""
        node = self.nodes.get(path)
        return ("err", "NoNode") if node is None else ("ok", tuple(sorted(node.children)))

    def ephemerals(self, session_id: int) -> list[str]:
        """The paths ``session_id`` owns, sorted."""
        return sorted(p for p, n in self.nodes.items() if n.owner == session_id)

    # --- writes ------------------------------------------------------------------------------------------------

    def apply(self, op: Any, session_id: int) -> Result:
        """Apply one transaction's operation for ``session_id``; a failure changes nothing."""
        saved_nodes = {p: n.copy() for p, n in self.nodes.items()}
        saved_sessions = dict(self.sessions)
        try:
            if isinstance(op, MultiOp):
                for sub in op.ops:
                    self._one(sub, session_id)
                return ("ok", None)
            return ("ok", self._one(op, session_id))
        except _Failed as failed:
            self.nodes, self.sessions = saved_nodes, saved_sessions
            return ("err", failed.code)

    def _one(self, op: Any, session_id: int) -> Any:
        if isinstance(op, CreateOp):
            return self._create(op, session_id)
        if isinstance(op, SetDataOp):
            node = self._existing(op.path, op.version)
            node.data = op.data
            node.version += 1
            return node.version
        if isinstance(op, DeleteOp):
            node = self._existing(op.path, op.version)
            if node.children:
                raise _Failed("NotEmpty")
            self._remove(op.path)
            return None
        if isinstance(op, CheckOp):
            self._existing(op.path, op.version)
            return None
        if isinstance(op, CreateSessionOp):
            if op.session_id in self.sessions:
                raise _Failed("BadArgumentsError")
            self.sessions[op.session_id] = (op.owner, op.timeout_ms)
            return None
        if isinstance(op, CloseSessionOp):
            if op.session_id not in self.sessions:
                raise _Failed("SessionExpired")
            for path in self.ephemerals(op.session_id):
                self._remove(path)
            del self.sessions[op.session_id]
            return None
        raise UnsupportedOp(f"the model does not know {type(op).__name__}")

    def _existing(self, path: str, version: int) -> ModelNode:
        node = self.nodes.get(path)
        if node is None:
            raise _Failed("NoNode")
        if version != -1 and version != node.version:
            raise _Failed("BadVersion")
        return node

    def _create(self, op: CreateOp, session_id: int) -> str:
        if op.container or op.ttl is not None:
            raise UnsupportedOp("containers and TTL nodes are outside the model")
        if op.ephemeral and session_id not in self.sessions:
            raise _Failed("SessionExpired")
        path = op.path
        parent_path, name = _parent(path)
        if parent_path not in self.nodes:
            if not op.makepath:
                raise _Failed("NoNode")
            self._make_ancestors(parent_path)
        parent = self.nodes[parent_path]
        if op.sequential:
            suffix = f"{parent.creations:010d}"  # deletions never move it, so a sequential name never repeats
            path += suffix
            name += suffix
        if path in self.nodes:
            raise _Failed("NodeExists")
        if parent.owner > 0:
            raise _Failed("NoChildrenForEphemerals")
        self._attach(parent, name, path, ModelNode(op.data, owner=session_id if op.ephemeral else 0))
        return path

    def _make_ancestors(self, parent_path: str) -> None:
        path = ""
        for name in parent_path.split("/")[1:]:
            above = path or "/"
            path = f"{path}/{name}"
            if path not in self.nodes:
                parent = self.nodes[above]
                if parent.owner > 0:
                    raise _Failed("NoChildrenForEphemerals")
                self._attach(parent, name, path, ModelNode(b""))

    def _attach(self, parent: ModelNode, name: str, path: str, node: ModelNode) -> None:
        parent.children.add(name)
        parent.creations += 1
        self.nodes[path] = node

    def _remove(self, path: str) -> None:
        parent_path, name = _parent(path)
        del self.nodes[path]
        parent = self.nodes[parent_path]
        parent.children.discard(name)
        parent.deletions += 1
