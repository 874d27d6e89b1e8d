"""One replica at a time talks to Tableau: the holder of the cluster's `tableau` lease.

Tableau keeps one session per PAT: a sign-in ends the PAT's earlier session
(401002), so replicas that each signed in would take turns logging each
other out. The replicas sharing a database elect one instead: the holder of
the `tableau` lease (the `leases` table, runs.py). It alone claims refresh
and lineage jobs, and it alone signs in. Every replica receives webhooks.

- The holder renews the lease every third of `worker.leader_lease_seconds`
  and counts itself the leader until 4/5 of a lease after its last renewal
  began: it stops a fifth of a lease before any other replica may take over.
- The others read when the lease runs out and try to take it then, so a
  killed or cut-off leader is replaced within one lease period.
- The replica that gains the lease takes over every job another worker had
  claimed (their job leases end now): only the leader claims, so they belong
  to a leader that is gone. Its first call signs in, which ends the old
  leader's session: a refresh the old leader was sending reached Tableau
  before that sign-in and is found and adopted (worker.py), or comes after
  it and is refused.
- A replica that loses the lease stops claiming at once, lets its calls in
  flight end, forgets its session (no sign-out: the new leader's sign-in
  ends it) and does not sign in while it does not lead (`NotLeaderError`).
- Stopping, the leader finishes its calls and signs out before it releases
  the lease (service.py): the next leader signs in after that sign-out, and
  nobody meets a 401.

On SQLite (one process) the same code runs: the lease is simply always free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import Gauge
from sqlalchemy import update

from dbt_tableau_relay.runs import LineageJob, read_lease, release_lease, take_lease
from dbt_tableau_relay.states import IN_FLIGHT
from dbt_tableau_relay.store import RefreshJob, Store, utcnow

log = logging.getLogger(__name__)

LEASE: Final = "tableau"
STEP_DOWN: Final = 0.8  # of a lease: how long after a renewal began this replica still leads
SOONEST: Final = 0.05  # seconds: the shortest wait between two attempts to take the lease

LEADER = Gauge("relay_tableau_leader", "1 while this replica holds the tableau lease.")


def _nothing() -> None:
    return None


class Leadership:
    """Takes and renews the `tableau` lease on a thread of its own; `leading()` says if held."""

    def __init__(
        self,
        store: Store,
        holder: str,
        seconds: float,
        *,
        on_gained: Callable[[], None] = _nothing,
        on_lost: Callable[[], None] = _nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.holder, self.seconds = store, holder, seconds
        self.on_gained, self.on_lost = on_gained, on_lost
        self._clock = clock
        self._deadline = 0.0  # clock time until which this replica leads
        self._reported = False  # what the callbacks were last told
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def leading(self) -> bool:
        """Whether this replica holds the lease now (and may claim work and sign in)."""
        return self._clock() < self._deadline

    def leader(self) -> str | None:
        """The replica that holds (or last held) the lease, if the database can say."""
        try:
            found = read_lease(self.store, LEASE)
        except Exception:  # noqa: BLE001 - only for the log
            return None
        return found[0] if found else None

    def start(self) -> None:
        """One attempt now (a lone replica leads from its first moment), then the heartbeat."""
        wait = self.beat()
        if not self.leading():
            log.info("cluster.following", extra={"replica": self.holder, "leader": self.leader()})
        self._thread = threading.Thread(
            target=self._loop, args=(wait,), name="relay-leadership", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the heartbeat; release the lease if held, so the next leader need not wait."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._reported:
            self._deadline = 0.0
            try:
                release_lease(self.store, LEASE, self.holder)
            except Exception as exc:  # noqa: BLE001 - it then runs out by itself
                log.warning("cluster.release_failed", extra={"error": type(exc).__name__})
            self._report()

    def _loop(self, wait: float) -> None:
        while not self._stopping.wait(wait):
            wait = self.beat()

    def beat(self) -> float:
        """One attempt to take or renew the lease; the seconds until the next one."""
        began = self._clock()
        try:
            held: bool | None = take_lease(self.store, LEASE, self.holder, self.seconds)
        except Exception as exc:  # noqa: BLE001 - the database is away: lead until the deadline
            log.warning("cluster.lease_unreachable", extra={"error": type(exc).__name__})
            held = None
        if held:
            self._deadline = began + STEP_DOWN * self.seconds
        elif held is False:
            self._deadline = 0.0
        if (took := self._clock() - began) > self.seconds / 3:  # a starved thread, a slow database
            log.warning("cluster.slow_heartbeat", extra={"seconds": round(took, 1)})
        self._report()
        return self.seconds / 3 if held or held is None else self._until_free()

    def _until_free(self) -> float:
        """Seconds until the other holder's lease runs out (at most a third of a lease)."""
        try:
            found = read_lease(self.store, LEASE)
        except Exception:  # noqa: BLE001 - try again after the usual wait
            return self.seconds / 3
        left = 0.0 if found is None else (found[1] - utcnow()).total_seconds()
        return min(max(left + SOONEST, SOONEST), self.seconds / 3)

    def _report(self) -> None:
        """Tell the callbacks once of each change."""
        now = self.leading()
        if now == self._reported:
            return
        self._reported = now
        LEADER.set(1 if now else 0)
        log.info("cluster.leading" if now else "cluster.lead_lost", extra={"replica": self.holder})
        try:
            (self.on_gained if now else self.on_lost)()
        except Exception:  # a bug or the database: the job leases still run out by themselves
            log.exception("cluster.change_failed")


def take_over(store: Store, holder: str) -> int:
    """End the job leases of every other worker: only the leader claims, so theirs are orphans.

    Their jobs are then claimed at once, instead of when each job's own lease
    (`worker.lease_seconds`) would have run out. A `sending` one is claimed as
    resumed: its refresh may have reached Tableau, and is looked for first.
    """
    now = utcnow()
    rj, lj = RefreshJob, LineageJob
    with store.session() as session:
        refreshes = session.execute(
            update(rj)
            .where(rj.state.in_(IN_FLIGHT), rj.claimed_by != holder, rj.lease_until > now)
            .values(lease_until=now)
        )
        lineage = session.execute(
            update(lj)
            .where(lj.state == "resolving", lj.claimed_by != holder, lj.lease_until > now)
            .values(lease_until=now)
        )
        taken = int(refreshes.rowcount + lineage.rowcount)  # type: ignore[attr-defined]
    if taken:
        log.warning("cluster.took_over", extra={"jobs": taken, "replica": holder})
    return taken
