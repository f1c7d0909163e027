"""What Raft peers say to each other: one :class:`Message` type, tagged by :class:`MessageType`.

The shape follows etcd-io/raft's ``raftpb.Message``: every message carries the sender's term, and the remaining
fields mean what the type says they mean. Snapshots travel in chunks (one :attr:`MessageType.SNAP` per chunk of
``Storage.snapshot_chunks()``), acknowledged one at a time with :attr:`MessageType.SNAP_RESP`, so that a large
snapshot never has to fit in one frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from embedzk.codec import message
from embedzk.consensus.types import Entry, SnapshotMeta

__all__ = ["Message", "MessageType", "RESPONSE_TYPES"]


class MessageType(enum.IntEnum):
    """What a :class:`Message` is.

    Field use per type (fields not listed are left at their defaults):

    ``APP``              ``index``/``log_term``: the entry just before ``entries``; ``entries``; ``commit``;
                         when ``index`` is 0, ``snapshot``: the bootstrap snapshot's meta (the membership the
                         log starts from, for a node that joined with an empty configuration).
    ``APP_RESP``         ``index``: the last index known to match (accept) or the rejected ``index`` (reject);
                         ``reject``; on reject ``reject_hint``/``log_term``: the follower's guess of the last
                         matching entry (etcd's findConflictByTerm).
    ``VOTE``             ``term``: the candidate's term; ``index``/``log_term``: its last entry;
                         ``context``: ``b"transfer"`` for an election forced by a leadership transfer.
    ``PRE_VOTE``         as ``VOTE``, with ``term`` the term the pre-candidate *would* campaign in.
    ``VOTE_RESP``        ``reject``; ``term`` is the term of the request when granted.
    ``PRE_VOTE_RESP``    as ``VOTE_RESP``.
    ``HEARTBEAT``        ``commit``: min(follower's match, leader's commit); ``context``: read-index context.
    ``HEARTBEAT_RESP``   ``context``: echoed.
    ``SNAP``             ``snapshot``: the meta; ``chunk_index``/``chunk_count``/``chunk``: one chunk.
    ``SNAP_RESP``        ``index``/``log_term``: the snapshot's index and term; ``chunk_index``: the chunk
                         acknowledged; ``reject``: the follower cannot continue the transfer (restart at 0).
                         The last chunk is answered with ``APP_RESP`` once the snapshot is restored.
    ``PROP``             ``entries``: proposed entries forwarded by a follower (term, index filled by the leader).
    ``READ_INDEX``       ``context``: the read request, forwarded by a follower.
    ``READ_INDEX_RESP``  ``index``: the read index; ``context``: the request.
    ``TRANSFER_LEADER``  forwarded by a follower: ``frm`` is the transferee (etcd's convention).
    ``TIMEOUT_NOW``      the leader tells the transferee to campaign at once.
    """

    APP = 1
    APP_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9
    SNAP_RESP = 10
    PROP = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13
    TRANSFER_LEADER = 14
    TIMEOUT_NOW = 15


#: Responses: a leader ignores them from a sender it has no progress for (etcd: ErrStepPeerNotFound).
RESPONSE_TYPES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.SNAP_RESP,
    }
)


@message(40)
@dataclass(frozen=True, slots=True)
class Message:
    """One message between Raft peers. Immutable, and safe to deliver twice or out of order."""

    type: MessageType
    to: str
    frm: str
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None
    chunk_index: int = 0
    chunk_count: int = 0
    chunk: bytes = b""

    def __repr__(self) -> str:
        parts = [f"{self.type.name} {self.frm}->{self.to} t{self.term}"]
        if self.index or self.log_term:
            parts.append(f"i{self.index}/lt{self.log_term}")
        if self.entries:
            parts.append(f"ents[{self.entries[0].index}..{self.entries[-1].index}]")
        if self.commit:
            parts.append(f"c{self.commit}")
        if self.reject:
            parts.append(f"reject(hint={self.reject_hint})")
        if self.context:
            parts.append(f"ctx={self.context!r}")
        if self.snapshot is not None:
            parts.append(f"snap@{self.snapshot.index}/{self.snapshot.term} {self.chunk_index + 1}/{self.chunk_count}")
        elif self.type == MessageType.SNAP_RESP:
            parts.append(f"chunk {self.chunk_index}")
        return f"<Message {' '.join(parts)}>"
