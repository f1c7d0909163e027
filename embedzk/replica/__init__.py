"""The replica: requests, sessions, reads and snapshots above consensus, without I/O."""

from embedzk.replica.replica import (
    Completion,
    Replica,
    ReplicaConfig,
    ReplicaOutput,
    ReplicaReady,
)

__all__ = ["Completion", "Replica", "ReplicaConfig", "ReplicaOutput", "ReplicaReady"]
