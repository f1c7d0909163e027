"""Membership changes, one server at a time (thesis 4.1; etcd: confchange/confchange.go, ``Simple``).

Two views of the membership exist on every node:

* the configuration *in force* for elections and quorums is the latest one in the log, committed or not (thesis
  4.1). etcd instead switches when the entry is applied, which its maintainers found unsound (etcd-io/etcd#7625,
  #11284: a node that has not applied two consecutive changes can win an election in the old configuration while
  another node wins the same term in the new one);
* the configuration *as applied* is what the driver sees through ``RawNode.apply_conf_change`` when it applies a
  membership entry (etcd's model), and what goes into its snapshots.

Only one change may be in the log unapplied, and a new leader may propose one only after applying the first entry
of its term (the fix to the single-server change bug, thesis 4.1 and Ongaro's 2015 raft-dev note), so the two
views differ by at most the change in flight. Applying must give every replica the same result from the same
ConfState, so :func:`apply_change` never fails: a change that makes no sense in the configuration it meets (remove
a stranger, promote a voter, remove the last voter) changes nothing. The leader refuses such changes when they are
proposed (:func:`validate_change`).
"""

from __future__ import annotations

from embedzk.codec import decode, encode
from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState, Entry, EntryType
from embedzk.errors import DecodeError

__all__ = ["apply_change", "validate_change", "decode_conf_change", "encode_conf_change"]


def apply_change(cs: ConfState, cc: ConfChange) -> ConfState:
    """The membership after ``cc``; ``cs`` itself when the change is meaningless (see the module docstring)."""
    voters = list(cs.voters)
    learners = list(cs.learners)
    n = cc.node_id
    if cc.type == ConfChangeType.ADD_VOTER:
        if n in voters:
            return cs
        if n in learners:
            learners.remove(n)
        voters.append(n)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        if n in learners:
            return cs
        if n in voters:
            # A demotion; never of the last voter (a cluster without voters can elect no one).
            if len(voters) == 1:
                return cs
            voters.remove(n)
        learners.append(n)
    elif cc.type == ConfChangeType.REMOVE:
        if n in voters:
            if len(voters) == 1:
                return cs
            voters.remove(n)
        elif n in learners:
            learners.remove(n)
        else:
            return cs
    elif cc.type == ConfChangeType.PROMOTE:
        if n not in learners:
            return cs
        learners.remove(n)
        voters.append(n)
    else:  # pragma: no cover - the enum has no other member
        return cs
    return ConfState(voters=tuple(voters), learners=tuple(learners))


def validate_change(cs: ConfState, cc: ConfChange) -> str | None:
    """Why ``cc`` should be refused in ``cs`` (None if it is acceptable)."""
    if not cc.node_id:
        return "a member id cannot be empty"
    if apply_change(cs, cc) == cs:
        return f"{cc.type.name} {cc.node_id!r} changes nothing in {cs}"
    return None


def encode_conf_change(cc: ConfChange) -> bytes:
    """The data of a CONF_CHANGE entry."""
    return encode(cc)


def decode_conf_change(entry: Entry) -> ConfChange | None:
    """The ConfChange a CONF_CHANGE entry holds; None for any other entry or undecodable data (such an entry is
    applied as a no-op everywhere, so replicas still agree)."""
    if entry.type != EntryType.CONF_CHANGE:
        return None
    try:
        cc: ConfChange = decode(entry.data, expect=ConfChange)
    except DecodeError:
        return None
    return cc
