"""The errors the consensus core raises to its driver."""

from __future__ import annotations

from embedzk.errors import EmbedZKError

__all__ = ["ProposalDroppedError", "ReadyProtocolError"]


class ProposalDroppedError(EmbedZKError):
    """A proposal was refused at once, so the caller can fail fast instead of waiting for a commit that never comes.

    Raised when no leader is known, when a leadership transfer is in progress, when the leader's uncommitted tail
    is over its byte budget, when this node was removed from the cluster, and for a membership change while
    another one is pending (etcd: ``ErrProposalDropped``). A proposal that was *accepted* can still be lost (a
    forwarded one dropped by the network, a leader that loses its term before committing it): only an applied
    entry proves a proposal took effect.
    """


class ReadyProtocolError(EmbedZKError):
    """The driver broke the ready/advance contract: ``ready()`` while a Ready is outstanding, or ``advance()``
    with a Ready that was not the last one handed out."""
