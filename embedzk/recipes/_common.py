"""What the recipes share: their two errors, deadlines, paths, and writes whose outcome may be unknown.

Every recipe is built on the public Peer API alone. Three facts of that API shape the helpers here:

- Reads are local and take microseconds, so recipes read freely; a read may trail the cluster by a few
  milliseconds, which is why a recipe that is about to hand out something exclusive calls ``sync()`` first.
- A write that fails with ConnectionLossError or OperationTimeoutError may still have been applied (its outcome is
  unknown). ZooKeeper's recipes page gives the cure: put a GUID in the node's name, and after such a failure look
  for the node before creating it again. After ``sync()`` the answer is final: a request forwarded in an older term
  is never proposed in a newer one, and an entry of an older term that the current leader does not hold can no
  longer commit.
- SessionExpiredError means the write was not applied (the peer has no open session); the peer opens a new one by
  itself, so recipes wait until it is CONNECTED again and retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from embedzk.errors import (
    BadArgumentsError,
    ConnectionLossError,
    EmbedZKError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from embedzk.model import KeeperState

if TYPE_CHECKING:
    from embedzk.peer import Peer

T = TypeVar("T")

#: Errors after which a write may or may not have been applied.
UNKNOWN_OUTCOME = (ConnectionLossError, OperationTimeoutError)
#: Errors after which an idempotent call can simply be made again (once the peer is connected).
RETRYABLE = (ConnectionLossError, OperationTimeoutError, SessionExpiredError)

_POLL = 0.01


class LockTimeout(EmbedZKError):
    """A lock, semaphore or read/write lock was not acquired within the ``timeout`` given (kazoo's name).

    Usage::

        try:
            lock.acquire(timeout=5)
        except LockTimeout:
            print("busy, try later")
    """


class CancelledError(EmbedZKError):
    """A blocking recipe call was cancelled with ``cancel()`` from another thread (kazoo's name).

    Usage::

        threading.Timer(10, election.cancel).start()
        try:
            election.run(lead)
        except CancelledError:
            print("gave up waiting to lead")
    """


class ArgumentTypeError(BadArgumentsError, TypeError):
    """An argument of the wrong type: a BadArgumentsError, as the Peer's own calls raise, and a TypeError, as
    kazoo's recipes raise, so code written for either catches it."""


class ArgumentValueError(BadArgumentsError, ValueError):
    """An argument of the right type with a wrong value: a BadArgumentsError, as the Peer's own calls raise, and a
    ValueError, as kazoo's recipes raise, so code written for either catches it."""


def normalize_path(path: str) -> str:
    """``path`` without a trailing slash; BadArgumentsError unless it is absolute."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadArgumentsError(f"a recipe path must be an absolute znode path, got {path!r}")
    return path.rstrip("/") or "/"


def join(parent: str, name: str) -> str:
    """The path of ``name`` under ``parent``."""
    return (parent if parent != "/" else "") + "/" + name


def check_name(name: str, what: str) -> str:
    """``name`` if it can be one component of a znode path."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise BadArgumentsError(f"{what} must be a non-empty string without '/', got {name!r}")
    return name


class Deadline:
    """A point in time (``time.monotonic``) after ``timeout`` seconds; None means never."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + max(0.0, float(timeout))

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.at is not None and time.monotonic() >= self.at


def wait_connected(peer: Peer, deadline: Deadline, cancelled: Callable[[], bool] = lambda: False) -> bool:
    """Wait until the peer is CONNECTED with an open session; False if the deadline passes (or cancelled).

    Raises PeerStoppedError if the peer is stopped meanwhile (it would never connect again).
    """
    while not (peer.state is KeeperState.CONNECTED and peer.session_id is not None):
        peer.exists("/")  # a local read: raises PeerStoppedError once the peer is stopped
        if deadline.expired() or cancelled():
            return False
        remaining = deadline.remaining()
        time.sleep(_POLL if remaining is None else min(_POLL, remaining))
    return True


def call_with_deadline(peer: Peer, future_fn: Callable[[], Any], deadline: Deadline) -> Any:
    """Run ``future_fn()`` (a ``*_async`` call) and wait for its result no longer than the deadline.

    Raises OperationTimeoutError if the deadline passes first: the outcome is then unknown, as for any timeout.
    """
    future = future_fn()
    remaining = deadline.remaining()
    wait = peer.request_timeout + 5.0 if remaining is None else remaining
    try:
        return future.result(wait)
    except TimeoutError:
        future.add_done_callback(lambda f: f.exception())  # retrieve it, so nothing is logged as unhandled
        raise OperationTimeoutError(f"no answer within {wait:.3f}s") from None


def retry(peer: Peer, fn: Callable[[], T], deadline: Deadline | None = None) -> T:
    """Call ``fn`` until it does not raise a retryable error; ``fn`` must be safe to repeat.

    Between attempts waits for the peer to be CONNECTED. Raises the last error once the deadline passes.
    """
    deadline = deadline or Deadline(None)
    while True:
        try:
            return fn()
        except RETRYABLE:
            if deadline.expired() or not wait_connected(peer, deadline):
                raise
            time.sleep(_POLL)


def sync(peer: Peer, deadline: Deadline | None = None) -> None:
    """``peer.sync()`` retried until it succeeds (or the deadline passes, raising OperationTimeoutError)."""
    deadline = deadline or Deadline(None)
    while True:
        try:
            call_with_deadline(peer, peer.sync_async, deadline)
            return
        except RETRYABLE:
            if deadline.expired() or not wait_connected(peer, deadline):
                raise OperationTimeoutError("could not sync with the cluster before the deadline") from None


def delete_quietly(peer: Peer, path: str, deadline: Deadline | None = None) -> bool:
    """Delete ``path``; True if this call deleted it, False if it was already gone. Retries when unsure."""
    deadline = deadline or Deadline(None)
    unsure = False
    while True:
        try:
            peer.delete(path)
            return True
        except NoNodeError:
            return unsure  # after an unknown outcome, the earlier attempt may have deleted it
        except RETRYABLE:
            unsure = True
            if deadline.expired() or not wait_connected(peer, deadline):
                raise


def best_effort(fn: Callable[[], Any]) -> None:
    """Call ``fn``, ignoring any embedzk error: clean-up that must not hide the error being raised."""
    try:
        fn()
    except EmbedZKError:
        pass


def create_owned(
    peer: Peer,
    path: str,
    value: bytes,
    find: Callable[[], str | None],
    deadline: Deadline,
    *,
    ephemeral: bool = True,
    sequence: bool = False,
    cancelled: Callable[[], bool] = lambda: False,
) -> str:
    """Create a node whose name holds a GUID (so ``find()`` can recognise it), safely when the outcome is unknown.

    After ConnectionLossError or a timeout, syncs and calls ``find()``, which returns the path of the node if an
    earlier attempt created it, or None, in which case the create is made again. A create abandoned at the deadline
    that lands later is deleted as soon as its answer arrives. Returns the created path.
    """
    while True:
        if cancelled():
            raise CancelledError(f"cancelled while creating {path}")
        future = peer.create_async(path, value, ephemeral=ephemeral, sequence=sequence)
        remaining = deadline.remaining()
        try:
            return future.result(peer.request_timeout + 5.0 if remaining is None else remaining)
        except TimeoutError:
            future.add_done_callback(_delete_if_created(peer))
            raise OperationTimeoutError(f"creating {path}: no answer before the deadline") from None
        except UNKNOWN_OUTCOME:
            sync(peer, deadline)
            found = find()
            if found is not None:
                return found
        except SessionExpiredError:
            if not wait_connected(peer, deadline, cancelled):
                raise
        if deadline.expired():
            raise OperationTimeoutError(f"creating {path}: not done before the deadline")


def _delete_if_created(peer: Peer) -> Callable[[Any], None]:
    def done(future: Any) -> None:
        if future.exception() is None:
            try:
                peer.delete_async(future.result())
            except EmbedZKError:
                pass

    return done


class Waker:
    """A threading.Event that watch callbacks and state changes set; what a blocked recipe call sleeps on.

    Use as a context manager around the wait: it listens to the peer's state while inside, so a call blocked on a
    watch also wakes when the session is suspended or lost (its own ephemeral node may be gone).
    """

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.event = threading.Event()
        #: Set by every change of the peer's state while inside the ``with`` block; the user clears it.
        self.state_changed = False

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Wake the waiter (usable as a watch callback)."""
        self.event.set()

    def _on_state(self, state: KeeperState) -> None:
        self.state_changed = True
        self.event.set()

    def __enter__(self) -> Waker:
        self.peer.add_listener(self._on_state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peer.remove_listener(self._on_state)

    def clear(self) -> None:
        """Forget earlier wake-ups."""
        self.event.clear()

    def wait(self, deadline: Deadline) -> bool:
        """Sleep until woken or the deadline; True if woken."""
        return self.event.wait(deadline.remaining())


def sequence_of(name: str) -> str:
    """The ten-digit sequence suffix ZooKeeper appends to a sequential node's name."""
    return name[-10:]


def is_sequential(name: str) -> bool:
    """True if ``name`` ends with a sequence suffix."""
    return len(name) >= 10 and name[-10:].isdigit()
