"""A LocalCluster for test modules that share one cluster among their tests (a module-scoped fixture)."""

from __future__ import annotations

from embedzk.testing.cluster import LocalCluster


class SharedCluster(LocalCluster):
    """A LocalCluster whose members stop without closing their sessions: the whole cluster goes, and the last
    members would otherwise wait for a quorum that is gone."""

    def stop(self) -> None:
        for pid in self.ids:
            self.stop_member(pid, close_session=False)
