"""The rules a peer's settings must follow, in one place: the Peer checks them when it is made (and says what is
wrong with a ConfigurationError), the replica holds its own settings to the same timing rules, and the transport
the same address rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedzk.errors import ConfigurationError
from embedzk.membership.versions import PROTOCOL_MIN, check_range

__all__ = [
    "check_election",
    "check_endpoint",
    "check_id",
    "check_membership_settings",
    "check_peer_settings",
    "peer_map",
]


def check_election(tick_interval: float, election_tick: int, heartbeat_tick: int, session_timeout: float) -> None:
    """Raise ConfigurationError unless the timings can work together: the timing rules the replica holds its own
    settings to as well."""
    if not tick_interval > 0 or heartbeat_tick < 1 or election_tick <= heartbeat_tick:
        raise ConfigurationError(
            f"tick_interval must be > 0 and election_tick > heartbeat_tick >= 1 (got {tick_interval}, "
            f"{election_tick}, {heartbeat_tick})"
        )
    election = tick_interval * election_tick
    if session_timeout < 2 * election:
        raise ConfigurationError(
            f"session_timeout {session_timeout}s is too small: it must be at least twice the election timeout "
            f"(tick_interval {tick_interval}s x election_tick {election_tick} = {election:.2f}s), or sessions "
            f"would expire during an ordinary election"
        )


def check_peer_settings(
    id: Any,
    bind: Any,
    peers: dict[str, str],
    observer: bool,
    session_timeout: Any,
    tick_interval: Any,
    election_tick: Any,
    request_timeout: Any,
) -> None:
    """Raise ConfigurationError naming the first thing wrong with a Peer's settings."""
    check_id(id, "peer id")
    if id in peers:
        raise ConfigurationError(
            f"peers lists this peer's own id {id!r}: peers are the *other* members (give this one bind=...)"
        )
    for other, address in peers.items():
        check_id(other, "the id of a member in peers")
        check_endpoint(address, f"the address of peer {other!r}")
    if bind is not None:
        check_endpoint(bind, "bind")
    if peers and bind is None:
        raise ConfigurationError("a peer with other members must say where it listens (bind=...)")
    by_address: dict[str, str] = {}
    for other, address in [(id, bind), *peers.items()]:
        if address is None or address.startswith("tcp://") and address.rsplit(":", 1)[-1] in ("0", "*"):
            continue  # a port chosen at bind time cannot collide
        if address in by_address:
            raise ConfigurationError(f"peers {by_address[address]!r} and {other!r} have the same address {address!r}")
        by_address[address] = other
    if observer and not peers:
        raise ConfigurationError("an observer (observer=True) needs the voting members in peers={...}")
    for name, value in (("session_timeout", session_timeout), ("tick_interval", tick_interval),
                        ("request_timeout", request_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if isinstance(election_tick, bool) or not isinstance(election_tick, int) or election_tick < 2:
        raise ConfigurationError(f"election_tick must be an int >= 2, got {election_tick!r}")
    check_election(tick_interval, election_tick, 1, session_timeout)


def check_id(value: Any, what: str) -> None:
    """Raise ConfigurationError unless ``value`` can be a peer id."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    if "://" in value:
        raise ConfigurationError(f"{what} must not contain '://' (that is how addresses are told from ids): {value!r}")
    if len(value) > 128 or not value.isprintable():
        raise ConfigurationError(f"{what} must be printable and at most 128 characters, got {value!r}")


def check_endpoint(address: Any, what: str) -> None:
    """Raise ConfigurationError unless ``address`` is a tcp://HOST:PORT, ipc:// or inproc:// endpoint."""
    if not isinstance(address, str):
        raise ConfigurationError(f"{what} must be a string such as 'tcp://127.0.0.1:7001', got {address!r}")
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise ConfigurationError(f"{what} must start with tcp://, ipc:// or inproc://, got {address!r}")
    if not rest:
        raise ConfigurationError(f"{what} {address!r} names no {'host' if scheme == 'tcp' else 'endpoint'}")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host:
            raise ConfigurationError(f"{what} {address!r} must be tcp://HOST:PORT")
        if port != "*" and not (port.isdigit() and 0 <= int(port) <= 65535):
            raise ConfigurationError(f"{what} {address!r} has no valid port (0-65535): {port!r}")


def peer_map(peers: Any) -> dict[str, str]:
    """``peers`` as a dict: a mapping, or pairs of (id, address) in which no id may repeat."""
    if peers is None:
        return {}
    if isinstance(peers, Mapping):
        return dict(peers)
    if isinstance(peers, (str, bytes)):
        raise ConfigurationError(f"peers must map member ids to addresses, got {peers!r}")
    result: dict[str, str] = {}
    try:
        pairs = list(peers)
    except TypeError:
        raise ConfigurationError(f"peers must map member ids to addresses, got {peers!r}") from None
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ConfigurationError(f"peers must map member ids to addresses; {pair!r} is not an (id, address) pair")
        other, address = pair
        if other in result:
            raise ConfigurationError(f"duplicate peer id {other!r} in peers ({result[other]!r} and {address!r})")
        result[other] = address
    return result


def check_membership_settings(
    bind: Any,
    peers: dict[str, str],
    seeds: Any,
    observer: bool,
    voters: Any,
    member_timeout: Any,
    tick_interval: Any,
    election_tick: Any,
    protocol_version: Any,
) -> list[str] | None:
    """Raise ConfigurationError naming what is wrong with the membership settings; return the seed list."""
    election_timeout = (
        tick_interval * election_tick
        if isinstance(tick_interval, (int, float)) and isinstance(election_tick, int)
        else 0.0
    )
    if protocol_version is not None:
        if isinstance(protocol_version, bool) or not isinstance(protocol_version, int):
            raise ConfigurationError(f"protocol_version must be an int, got {protocol_version!r}")
        problem = check_range(PROTOCOL_MIN, protocol_version)
        if problem:
            raise ConfigurationError(f"protocol_version={protocol_version}: {problem}")
    if isinstance(voters, bool) or voters not in (1, 3, 5, 7):
        raise ConfigurationError(f"voters must be 1, 3, 5 or 7 (an odd number: a majority of it decides), got {voters!r}")
    if isinstance(member_timeout, bool) or not isinstance(member_timeout, (int, float)) or not member_timeout > 0:
        raise ConfigurationError(f"member_timeout must be a positive number of seconds, got {member_timeout!r}")
    if member_timeout < 3 * election_timeout:
        raise ConfigurationError(
            f"member_timeout {member_timeout}s is too short: at least three election timeouts "
            f"({3 * election_timeout:.2f}s), or members are removed during an ordinary election"
        )
    if seeds is None:
        return None
    if isinstance(seeds, (str, bytes)):
        raise ConfigurationError(f"seeds must be a list of addresses, got the string {seeds!r}")
    if peers:
        raise ConfigurationError(
            "give either peers= (a static membership) or seeds= (an elastic cluster), not both"
        )
    if observer:
        raise ConfigurationError(
            "observer=True is for static memberships (peers=); with seeds= the autopilot decides who votes"
        )
    try:
        seed_list = list(seeds)
    except TypeError:
        raise ConfigurationError(f"seeds must be a list of addresses, got {seeds!r}") from None
    for seed in seed_list:
        check_endpoint(seed, "a seed address")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigurationError(f"seeds lists an address twice: {seed_list}")
    if bind is None:
        raise ConfigurationError("a peer of an elastic cluster must say where it listens (bind=...)")
    if bind in seed_list and bind.startswith("tcp://") and bind.rsplit(":", 1)[-1] in ("0", "*"):
        raise ConfigurationError(f"a seed must have a fixed port; bind {bind!r} is among the seeds")
    return seed_list

