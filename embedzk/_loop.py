"""The peer's loop thread: the only thread that touches the replica, the storage and the transport.

One iteration: wait on the transport until a frame arrives, an application thread wakes it, or the next tick is
due; step every frame that arrived into the replica; run the application's queued calls (at most a slice of them);
tick if due; then drain the replica: send a leader's appends, persist (one synced batch for everything gathered in
the iteration: group commit), send the rest (one frame per recipient: a bundle when there are several messages),
store snapshots, answer requests and hand watch events to the dispatcher.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from embedzk.codec import decode
from embedzk.errors import DecodeError, EmbedZKError, PeerStoppedError
from embedzk.persist.base import Storage
from embedzk.replica import Completion, Replica, ReplicaOutput
from embedzk.replica.messages import pack
from embedzk.transport.base import Transport
from embedzk.tree.txn import Op

log = logging.getLogger(__name__)

Hook = Callable[[ReplicaOutput], None]


@dataclass(slots=True)
class _Call:
    """What an application thread queues for the loop: a function to run there (``fn``), or a request for the
    replica: an operation (``op``), a read barrier (neither), or a member change (``change``)."""

    future: Future[Any]
    fn: Callable[[], Any] | None = None
    op: Op | None = None
    #: (kind, peer id, address, voter) of an add_member ("add") or remove_member ("remove").
    change: tuple[str, str, str, bool] | None = None
    transform: Callable[[Any], Any] | None = None
    errors_as_values: bool = False
    timeout: float = 0.0
    #: The session an operation is asked in (None: the peer's own): a ZooKeeper client's, for the client server.
    session_id: int | None = None
    #: The requester's identities for the ACL checks, (scheme, id) pairs.
    ids: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Waiting:
    """A request handed to the replica, until its completion comes out."""

    future: Future[Any]
    transform: Callable[[Any], Any] | None
    began: float
    errors_as_values: bool


# The application's calls one iteration takes in, at most. A burst of thousands then flows through the cluster in
# slices: while the leader persists and replicates one slice, this peer already forwards the next, and every
# member's loop stays busy instead of taking turns with one huge batch.
_CALLS_PER_ITERATION = 128


class Loop:
    """Runs a replica over a transport and a storage on a thread of its own."""

    def __init__(
        self,
        replica: Replica,
        storage: Storage,
        transport: Transport,
        *,
        tick_interval: float,
        on_output: Hook,
        name: str,
        on_crash: Callable[[BaseException], None] | None = None,
        new_future: Callable[[], Future[Any]] = Future,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.replica = replica
        self.storage = storage
        self.transport = transport
        self.tick_interval = tick_interval
        self._on_output = on_output
        self._on_crash = on_crash
        # Run by the loop thread as its very last act: it owns the storage and the transport, so it releases them
        # (never another thread while this one may still use them).
        self._on_exit = on_exit
        # How the futures handed to callers are made (a Peer's run their callbacks off this thread).
        self._new_future = new_future
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._wake_pending = False
        # Calls still queued after an iteration took its share: the next iteration does not wait for frames.
        self._calls_left = False
        # Output the replica has ready that the last iteration left for the next (see _pump).
        self._pump_left = False
        self._waiting: dict[int, _Waiting] = {}
        # Request ids start at a random point: the leader drops a forwarded request whose (origin, id) it already
        # proposed in the current term, and a peer restarted within one term must not look like its own copy.
        self._next_request = random.randrange(1, 1 << 48)
        self._running = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.crashed: BaseException | None = None
        self.write_latencies: collections.deque[float] = collections.deque(maxlen=2048)
        self.decode_errors = 0

    # -- any thread ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread."""
        self._running = True
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop thread and fail whatever still waits (PeerStoppedError); True once it has stopped (False:
        still running after ``timeout``, or called on the loop thread itself; it stops at its next iteration)."""
        self._running = False
        self.transport.wake()
        if threading.current_thread() is self._thread:
            return False
        if self._thread.ident is None:
            return True  # never started
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def outstanding(self) -> int:
        """Requests started and not yet answered (read it on the loop thread)."""
        return len(self._waiting)

    @property
    def thread(self) -> threading.Thread:
        """The loop thread."""
        return self._thread

    def _future(self, given: Future[Any] | None) -> Future[Any]:
        # The application's futures run their done-callbacks on the dispatch thread, never on the loop's (a callback
        # may block). Library code may give a plain Future of its own instead, its callbacks attached beforehand:
        # they then run on the loop thread the moment it completes, in the loop's own order (the client server's
        # replies must leave in the same order as the watch events the loop hands it directly), and must only hand
        # the result on.
        return given if given is not None else self._new_future()

    def call(self, fn: Callable[[], Any], *, future: Future[Any] | None = None) -> Future[Any]:
        """Run ``fn`` on the loop thread; the future (``future`` if given, see _future) holds its result."""
        future = self._future(future)
        self._put(_Call(future, fn=fn))
        return future

    def submit(
        self,
        op: Op,
        timeout: float,
        transform: Callable[[Any], Any] | None = None,
        errors_as_values: bool = False,
        session_id: int | None = None,
        ids: tuple[tuple[str, str], ...] = (),
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        """Submit ``op`` to the replica; the future resolves when its completion comes out (once applied here).

        ``transform`` turns the completion's value into what the caller gets (None: the value itself); it runs on
        the loop thread, so it may read the replica. With ``errors_as_values`` a failed request whose completion
        still carries a value (a multi's per-operation results) resolves to that value. ``session_id`` is the
        session the operation is asked in (None: the peer's own), ``ids`` the requester's identities for the ACL
        checks. ``future``: see :meth:`_future`.
        """
        future = self._future(future)
        self._put(
            _Call(
                future,
                op=op,
                transform=transform,
                errors_as_values=errors_as_values,
                timeout=timeout,
                session_id=session_id,
                ids=ids,
            )
        )
        return future

    def sync(self, timeout: float, *, future: Future[Any] | None = None) -> Future[Any]:
        """Ask the replica for a read barrier (read-index); the future resolves to None once it is passed here."""
        future = self._future(future)
        self._put(_Call(future, timeout=timeout))
        return future

    def member_change(
        self, kind: str, peer_id: str, address: str, voter: bool, timeout: float, *, future: Future[Any] | None = None
    ) -> Future[Any]:
        """Ask the leader (through the replica) for an add_member ("add") or remove_member ("remove"); the future
        resolves to None once it is made."""
        future = self._future(future)
        self._put(_Call(future, change=(kind, peer_id, address, voter), timeout=timeout))
        return future

    def _put(self, item: _Call) -> None:
        if not self._running:
            item.future.set_exception(PeerStoppedError("the peer is not running"))
            return
        self._calls.put(item)
        # One wake per batch of calls: the loop clears the flag before it drains the queue, so a call queued
        # after the drain began always wakes it again.
        if not self._wake_pending:
            self._wake_pending = True
            self.transport.wake()
        if not self._running:  # stopped meanwhile: the loop may have drained the queue for the last time
            self._fail_calls(PeerStoppedError("the peer stopped"))

    # -- the loop thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        replica = self.replica
        # How long taking calls, and draining the replica, may go on before the loop looks at the network and the
        # clock again: a leader must tick (and send heartbeats) well within an election timeout however much work
        # is queued.
        budget = self.tick_interval
        try:
            self._pump()
            while self._running:
                now = time.monotonic()
                # Queued calls, the replica's own work in slices (a snapshot being installed), or output not drained
                # yet: look for frames without waiting, then go on with the work.
                idle = not (self._calls_left or replica.busy or self._pump_left)
                frames = self.transport.receive(max(0.0, next_tick - now) if idle else 0.0)
                for frm, frame in frames:
                    self._receive(frm, frame)
                self._run_calls(time.monotonic() + budget)
                if replica.busy:
                    replica.work()
                now = time.monotonic()
                if now >= next_tick:
                    replica.tick(now, int(time.time() * 1000))
                    next_tick += self.tick_interval
                    if next_tick < now:  # we fell behind (a long stall): don't tick in a burst to catch up
                        next_tick = now + self.tick_interval
                self._pump(time.monotonic() + budget)
        except BaseException as exc:  # the loop must never die silently: whoever waits is told
            self.crashed = exc
            log.exception("the peer's loop thread failed")
            if self._on_crash is not None:
                try:
                    self._on_crash(exc)
                except Exception:
                    log.exception("reporting the loop's failure failed")
        finally:
            self._running = False
            self._fail_all(PeerStoppedError("the peer stopped"))
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("releasing the loop's storage and transport failed")

    def _receive(self, frm: str, frame: bytes) -> None:
        try:
            msg = decode(frame)
        except DecodeError as exc:
            self.decode_errors += 1
            log.warning("dropping a frame from %s: %s", frm, exc)
            return
        self.replica.receive(frm, msg)

    def _run_calls(self, deadline: float) -> None:
        self._wake_pending = False
        self._calls_left = False
        get = self._calls.get_nowait
        replica = self.replica
        clock = time.monotonic
        for _ in range(_CALLS_PER_ITERATION):
            if clock() >= deadline:
                break  # large calls (transactions of many operations): the rest in the next iteration
            try:
                item = get()
            except queue.Empty:
                return
            future = item.future
            if not future.set_running_or_notify_cancel():
                continue
            if item.fn is not None:
                try:
                    future.set_result(item.fn())
                except BaseException as exc:
                    future.set_exception(exc)
                continue
            self._next_request += 1
            request_id = self._next_request
            self._waiting[request_id] = _Waiting(future, item.transform, time.monotonic(), item.errors_as_values)
            if item.op is not None:
                immediate = replica.submit(request_id, item.op, item.timeout, item.session_id, item.ids)
            elif item.change is not None:
                kind, peer_id, address, voter = item.change
                immediate = replica.member_change(request_id, kind, peer_id, address, voter, item.timeout)
            else:
                immediate = None
                replica.sync(request_id, item.timeout)
            if immediate is not None:
                self._complete(immediate)
        self._calls_left = True

    def _pump(self, deadline: float | None = None) -> None:
        """Drain the replica's output, ready by ready; with a ``deadline``, start no new ready once it has passed
        (``_pump_left`` says whether output is left for the next iteration)."""
        replica = self.replica
        storage = self.storage
        self._pump_left = False
        while replica.has_ready():
            if deadline is not None and time.monotonic() >= deadline:
                self._pump_left = True
                return
            rd = replica.ready()
            if rd.record is not None:
                storage.save_member_record(rd.record)
            raft = rd.raft
            if raft is not None:
                if raft.early_messages:
                    # A leader's appends leave before its own fsync, so that its followers' overlaps it.
                    self._send(rd.early_messages)
                if raft.snapshot is not None:
                    storage.install_snapshot(raft.snapshot[0], raft.snapshot[1])
                if raft.entries or raft.hard_state is not None:
                    storage.append(raft.entries, raft.hard_state, sync=raft.must_sync)
            out = replica.advance(rd)
            if out.messages:
                self._send(out.messages)
            if out.snapshot is not None:
                storage.save_snapshot(*out.snapshot)
                storage.compact(out.compact_to)
            # The output first: the watch events a change fires are handed out before the answer to the request
            # that made it, as ZooKeeper sends a client the notification before the reply (and a reader woken by
            # its answer finds the tree this output installed).
            self._on_output(out)
            for completion in out.completions:
                self._complete(completion)

    def _send(self, messages: list[tuple[str, Any]]) -> None:
        send = self.transport.send
        for to, frame in pack(messages):
            send(to, frame)

    def _complete(self, completion: Completion) -> None:
        waiting = self._waiting.pop(completion.request_id, None)
        if waiting is None:
            return
        future, transform = waiting.future, waiting.transform
        self.write_latencies.append(time.monotonic() - waiting.began)
        if completion.error is not None and not (waiting.errors_as_values and completion.value is not None):
            future.set_exception(completion.error)
            return
        try:
            future.set_result(completion.value if transform is None else transform(completion.value))
        except EmbedZKError as exc:
            future.set_exception(exc)

    def _fail_all(self, error: EmbedZKError) -> None:
        for waiting in self._waiting.values():
            if not waiting.future.done():
                waiting.future.set_exception(error)
        self._waiting.clear()
        self._fail_calls(error)

    def _fail_calls(self, error: EmbedZKError) -> None:
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)
