"""Raft, as a pure state machine (sans-IO), modelled on etcd-io/raft.

The consensus core never opens a socket, starts a thread, reads a clock, writes to a disk or uses global randomness.
The driver (the peer's loop thread, or the simulator) owns all of that and talks to a :class:`RawNode`. The core
does read its storage (:class:`~embedzk.consensus.storage.LogStorage`: entries and terms it handed out earlier),
through the object the driver gives it.

Starting a node
---------------

A brand-new cluster member starts from a Storage bootstrapped with the initial membership::

    storage = MemoryStorage(ConfState(voters=("a", "b", "c")))   # or the LevelDB storage
    node = RawNode(Config(id="a", rng=random.Random()), storage)

A restarted node passes the same storage (it restores term, vote, commit index, membership and log from it) and
``Config.applied``: the index its state machine already reflects (at least the snapshot's index). Entries up to it
are not handed out again; membership changes between the snapshot and ``applied`` are replayed internally.

A node joining an existing cluster starts from a storage whose ConfState need not list anyone (not even itself):
it cannot campaign until it learns, through the log or a snapshot from the leader, that it is a voter.

Inputs
------

* ``node.tick()`` at a fixed interval (say every 100 ms). Elections take ``Config.election_tick`` ticks
  (randomized up to twice that), heartbeats ``Config.heartbeat_tick``.
* ``node.step(message)`` for every message received from the network. Decode with ``embedzk.codec.decode(...,
  expect=Message)`` first; step raises nothing of its own for a well-typed message, whatever its age, duplicates
  or order (a storage read that fails is another matter: see "Storage errors" below).
* ``node.propose(data)`` / ``node.propose_conf_change(cc)`` to replicate. Raises ProposalDroppedError if the
  proposal cannot be taken (fail fast). An accepted proposal may still be lost: only its application proves it.
* ``node.read_index(ctx)`` for a linearizable read: a ``ReadState(index, ctx)`` comes out in a later Ready once
  the leader proved it was still leader; serve the read when the state machine has applied ``index``.
* ``node.transfer_leadership(to)``, ``node.report_unreachable(id)``, ``node.report_snapshot(id, ok)``.

Inputs may be given at any time, including between ``ready()`` and ``advance()``.

The loop: what the driver must do, and in which order
-----------------------------------------------------

::

    while node.has_ready():
        rd = node.ready()
        # 0. A leader's appends, heartbeats and snapshot chunks may go at once, while its own disk write is under
        #    way (thesis 10.2.1): they promise nothing about this node's disk.
        transport.send_all(rd.early_messages)
        # 1. A snapshot received from the leader: install it, durably, and restore the state machine from it.
        if rd.snapshot is not None:
            meta, chunks = rd.snapshot
            storage.install_snapshot(meta, chunks)
            state_machine.restore(meta, chunks)
        # 2. Entries and hard state: durably, in one atomic write (group commit), BEFORE any message is sent.
        #    rd.entries may start below the last stored index: storage.append truncates there.
        if rd.entries or rd.hard_state is not None:
            storage.append(rd.entries, rd.hard_state)          # synced if rd.must_sync
        # 3. Only now send the messages: votes and append acknowledgements in them promise that 1 and 2 are on
        #    disk (thesis 3.8). A message may be dropped if the peer is unreachable (report_unreachable).
        transport.send_all(rd.messages)
        # 4. Apply committed entries in order. A CONF_CHANGE entry: decode it (decode_conf_change) and call
        #    node.apply_conf_change(cc); keep the ConfState it returns for your next snapshot's meta.
        for entry in rd.committed_entries:
            apply(entry)
        # 5. Reads that became safe: serve each once the state machine has applied rd.read_states[i].index.
        serve_reads(rd.read_states)
        # 6. Tell the node it is all done.
        node.advance(rd)

Rules the core relies on:

* Steps 1-2 complete (durably) before step 3. Breaking this breaks Raft's safety after a crash. Step 0 may go
  before, after or during steps 1-2.
* Only one Ready is outstanding: ``ready()`` again before ``advance()`` raises ReadyProtocolError.
* Committed entries may include entries from this same Ready's ``entries``: that is why they are applied after
  step 2.
* The Ready's entries, snapshot and committed entries, once handed out, are not handed out again. If the driver
  cannot carry out a Ready (a disk error), it must stop the node: restart it from storage.

Storage errors
--------------

The core reads storage in ``step``, ``propose``, ``ready`` and the other inputs. CompactedError and
UnavailableError are answers it handles. Any other exception (a corrupt or unreadable disk) propagates out of the
call that made the read, and leaves the node in an unspecified state: the driver must stop the node and restart it
from storage, as it must after a failed write. The peer's loop does so by failing the peer (every call raises
PeerStoppedError; its session expires on the others); a new Peer restarts it.

Snapshots and compaction
------------------------

The driver decides when to snapshot: at an applied index ``i`` it stores ``storage.save_snapshot(SnapshotMeta(i,
storage.term(i), conf_state), chunks)`` and then ``storage.compact(i)`` (keeping some entries behind ``i`` lets
slow followers catch up from the log instead of a snapshot). When a follower needs entries that were compacted
away, the leader sends ``storage.snapshot_chunks()`` one chunk per SNAP message, each chunk after the previous
one was acknowledged; the follower gathers them and hands the complete snapshot out in ``Ready.snapshot``.

Membership
----------

One server at a time: add a voter or a learner, remove, promote a learner (``propose_conf_change``). Elections and
quorums use the latest configuration in the log as soon as the entry is appended, committed or not (thesis 4.1;
etcd's apply-time switch is unsound, see ``confchange``). The driver still sees each change when it applies the
entry: ``apply_conf_change`` returns the membership as applied, which is what goes into a snapshot's meta. A
leader refuses a change while another one is not applied yet, and before it has applied the first entry of its
term. A leader that removed itself keeps managing the cluster, without counting itself, until the change commits,
then steps down and asks the most up-to-date voter to campaign at once. Learners (observers) receive the log but
never campaign and never count toward a quorum (a learner does answer a vote request, as in etcd: the candidate
counts the answer only if its own configuration, newer than the learner's, lists it as a voter). A node that
joins starts from a storage with an empty ConfState: it learns the membership from the leader (through the log,
whose first append carries the bootstrap membership, or through a snapshot). ``Ready.snapshot`` may then hold the
bootstrap snapshot at index 0 with no chunks: restore the empty state.
"""

from embedzk.consensus.confchange import apply_change, decode_conf_change, encode_conf_change
from embedzk.consensus.errors import ProposalDroppedError, ReadyProtocolError
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.raft import Config, ReadState, SoftState, StateRole
from embedzk.consensus.rawnode import ProgressStatus, RawNode, Ready, Status
from embedzk.consensus.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    SnapshotMeta,
)

__all__ = [
    "Config",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ProgressStatus",
    "ProposalDroppedError",
    "RawNode",
    "ReadState",
    "Ready",
    "ReadyProtocolError",
    "SnapshotMeta",
    "SoftState",
    "StateRole",
    "Status",
    "apply_change",
    "decode_conf_change",
    "encode_conf_change",
]
