"""The settings of a peer's ZooKeeper client server, with ZooKeeper's names and defaults (zoo.cfg)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from embedzk.errors import ConfigurationError
from embedzk.zkwire import DEFAULT_MAX_PACKET

__all__ = ["ClientSettings"]


def _default_whitelist() -> frozenset[str]:
    return frozenset({"srvr"})


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a peer serves ZooKeeper clients; every field has ZooKeeper's default.

    ``tick_time_ms`` (tickTime) is the unit of the session timeouts a client may ask for: between
    ``min_session_timeout_ms`` (minSessionTimeout, 2 ticks) and ``max_session_timeout_ms`` (maxSessionTimeout,
    20 ticks); a request outside is brought inside. ``max_client_cnxns`` (maxClientCnxns) bounds the connections
    from one IP address (0: no bound). ``max_packet`` (jute.maxbuffer) bounds a packet's length in bytes.
    ``four_letter_words`` (4lw.commands.whitelist): the words answered, ``{"*"}`` for all of them; ZooKeeper
    answers only ``srvr`` unless told otherwise. ``handshake_timeout`` is how many seconds a new connection has to
    send its handshake before it is closed. ``max_outstanding`` is how many requests of one connection may wait for
    their answers before the server stops reading from it (ZooKeeper's globalOutstandingLimit, per connection
    here). ``reconfig_enabled`` (reconfigEnabled) lets clients change the membership with ZooKeeper's reconfig;
    off by default, as in ZooKeeper, since without ACLs any client could then remove members.
    """

    tick_time_ms: int = 2000
    min_session_timeout_ms: int | None = None
    max_session_timeout_ms: int | None = None
    max_client_cnxns: int = 60
    max_packet: int = DEFAULT_MAX_PACKET
    four_letter_words: frozenset[str] = field(default_factory=_default_whitelist)
    handshake_timeout: float = 10.0
    max_outstanding: int = 1000
    reconfig_enabled: bool = False

    def __post_init__(self) -> None:
        for name in ("tick_time_ms", "max_packet", "max_outstanding"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"client setting {name} must be a positive int, got {value!r}")
        if isinstance(self.max_client_cnxns, bool) or not isinstance(self.max_client_cnxns, int) or (
            self.max_client_cnxns < 0
        ):
            raise ConfigurationError(f"client setting max_client_cnxns must be an int >= 0, got {self.max_client_cnxns!r}")
        if not (isinstance(self.handshake_timeout, (int, float)) and self.handshake_timeout > 0):
            raise ConfigurationError(
                f"client setting handshake_timeout must be a positive number of seconds, got {self.handshake_timeout!r}"
            )
        low, high = self.session_timeout_bounds
        if not 0 < low <= high:
            raise ConfigurationError(
                f"client session timeouts: min_session_timeout_ms {low} must be positive and at most "
                f"max_session_timeout_ms {high}"
            )
        words = self.four_letter_words
        if isinstance(words, str) or not isinstance(words, Iterable):
            raise ConfigurationError(f"four_letter_words must be a set of words, got {words!r}")
        object.__setattr__(self, "four_letter_words", frozenset(words))

    @property
    def session_timeout_bounds(self) -> tuple[int, int]:
        """(lowest, highest) session timeout in ms a client is given."""
        low = self.min_session_timeout_ms if self.min_session_timeout_ms is not None else 2 * self.tick_time_ms
        high = self.max_session_timeout_ms if self.max_session_timeout_ms is not None else 20 * self.tick_time_ms
        return low, high

    def negotiate(self, asked_ms: int) -> int:
        """The session timeout a client that asked for ``asked_ms`` gets: brought within the bounds."""
        low, high = self.session_timeout_bounds
        return min(max(asked_ms, low), high)
