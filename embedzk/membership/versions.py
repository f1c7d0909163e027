"""Protocol versions: what a peer speaks, what the cluster runs, and when a newer message may be used.

Every frame carries the protocol version it is written in (the frame header's version byte, see
:mod:`embedzk.transport.zmq`), and a peer accepts frames of every version it speaks. Every member tells the leader
the range it speaks (:class:`~embedzk.membership.messages.Presence`, :class:`~embedzk.membership.messages.JoinRequest`);
the leader raises the **cluster version**, a replicated value, to the highest version every member speaks, and
never lowers it. A new message type or layout is used only once the cluster version allows it, so a cluster can be
upgraded one peer at a time (CockroachDB's cluster version is the model). A peer that cannot speak the cluster's
version (too old), or speaks only versions above it (too new), is refused when it asks to join, with both versions
in the error.

Versions:

* 2: the base protocol of this release: founding, joining, presence, removal notices, member changes;
* 3: the leader sends :class:`~embedzk.membership.messages.MemberStatus` to every member, so that
  ``members()`` on any peer reports what the leader sees (reachability and lag);
* 4: ACLs: the transactions :class:`~embedzk.tree.txn.WithACL`, :class:`~embedzk.tree.txn.SetACLOp` and
  :class:`~embedzk.tree.txn.Authorized`, and the ACL records of snapshots, which a peer of version 3 cannot decode;
  until every member speaks 4, a request that needs them is refused (UnimplementedError saying why);
* 5: :class:`~embedzk.membership.messages.JoinChallenge` and :class:`~embedzk.membership.messages.JoinProof`: before
  the leader removes a member on behalf of a joiner that claims its id, a joiner that speaks 5 must answer a
  challenge at the address it gave (a join request of a process gone since, delayed or replayed, cannot). These
  pass between the leader and the joiner only, so the cluster's version does not matter; a joiner that speaks at
  most 4 is replaced on its request alone, as before;
* 6: :class:`~embedzk.membership.messages.LivenessProbe` and :class:`~embedzk.membership.messages.LivenessEcho`:
  the leader judges a member that speaks 6 reachable only by its echoes of the leader's probes, never by any other
  frame, which may be a late copy of one sent before the member died (crash-heavy seed 32920: a replayed frame made
  a dead learner look alive, and the autopilot gave it a vote). These pass between the leader and one member, so
  the cluster's version does not matter; a member that speaks at most 5 is judged by any frame from it, as before.
"""

from __future__ import annotations

__all__ = ["ACLS", "JOIN_PROOF", "LIVENESS_PROBES", "PROTOCOL_MAX", "PROTOCOL_MIN", "MEMBER_STATUS", "join_refusal", "check_range"]

#: The oldest protocol version this build speaks.
PROTOCOL_MIN = 2
#: The newest protocol version this build speaks.
PROTOCOL_MAX = 6
#: The version from which the leader broadcasts MemberStatus.
MEMBER_STATUS = 3
#: The version from which ACLs may be replicated.
ACLS = 4
#: The version from which a joiner proves it is alive before a member is replaced on its behalf.
JOIN_PROOF = 5
#: The version from which the leader judges a member's liveness by echoes of its probes only.
LIVENESS_PROBES = 6


def check_range(min_version: int, max_version: int) -> str | None:
    """Why a peer cannot be configured to speak ``min_version .. max_version`` (None if it can)."""
    if not PROTOCOL_MIN <= min_version <= max_version <= PROTOCOL_MAX:
        return (
            f"protocol versions {min_version}..{max_version} are not within what this build speaks "
            f"({PROTOCOL_MIN}..{PROTOCOL_MAX})"
        )
    return None


def join_refusal(peer: str, min_version: int, max_version: int, cluster_version: int) -> str | None:
    """Why the leader refuses a joiner that speaks ``min_version .. max_version`` into a cluster running
    ``cluster_version`` (None if it may join)."""
    if max_version < cluster_version:
        return (
            f"peer {peer} is too old for the cluster: it speaks protocol versions {min_version}..{max_version}, "
            f"the cluster runs version {cluster_version}"
        )
    if min_version > cluster_version:
        return (
            f"peer {peer} is too new for the cluster: it speaks protocol versions {min_version}..{max_version}, "
            f"the cluster runs version {cluster_version}"
        )
    return None
