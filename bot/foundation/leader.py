"""One writer: a coordination.k8s.io/v1 Lease decides which instance acts.

SQLite allows one writer, and two bots would post every alert twice, so exactly one instance
may act. The algorithm is client-go's leaderelection: create the Lease or renew it every
duration/3 with an optimistic-concurrency update (resourceVersion); take it over only when its
holder has not renewed for a whole lease duration. An instance that cannot renew for a whole
duration stops acting before another can take over. Outside Kubernetes (no `lease.cluster`
configured and not in a pod) there is nothing to elect and this instance always acts.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta, timezone

from bot.foundation.context import Context
from bot.foundation.kube import LEASES, KubeError, KubeGateway, parse_time

log = logging.getLogger("deckhand.leader")
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _micro(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: KubeGateway, cluster: str, namespace: str, name: str, duration: timedelta,
                 identity: str | None = None, clock=lambda: datetime.now(timezone.utc), on_change=None):
        self.kube, self.cluster, self.namespace, self.name = kube, cluster, namespace, name
        self.duration = duration
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.clock = clock
        self.on_change = on_change
        self._renewed_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    problem: str | None = None  # a misconfiguration that keeps every instance from leading (see /readyz)

    def is_leader(self) -> bool:
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.duration

    def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        seconds = max(1, int(self.duration.total_seconds()))
        try:
            lease = self.kube.get(self.cluster, LEASES, self.namespace, self.name)
            if lease is None:
                self.kube.create(self.cluster, LEASES, self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": seconds,
                             "acquireTime": _micro(now), "renewTime": _micro(now), "leaseTransitions": 0},
                })
                return self._won(now)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
            held_for = timedelta(seconds=int(spec.get("leaseDurationSeconds") or seconds))
            if holder and holder != self.identity and renewed and now - renewed < held_for:
                return self._lost(f"held by {holder}")
            if holder != self.identity:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
                spec["acquireTime"] = _micro(now)
                log.info("taking over lease %s/%s from %s", self.namespace, self.name, holder or "nobody")
            spec.update({"holderIdentity": self.identity, "renewTime": _micro(now), "leaseDurationSeconds": seconds})
            lease["spec"] = spec
            self.kube.replace(self.cluster, LEASES, self.namespace, lease)  # 409 if someone else wrote first
            return self._won(now)
        except KubeError as exc:
            if exc.not_found and "namespace" in exc.message:
                # The API server answers 404 `namespaces "x" not found` for a create in a namespace that does
                # not exist: no instance can ever lead, so say what to fix instead of a generic warning.
                problem = (f"lease.namespace {self.namespace!r} does not exist in cluster {self.cluster!r}: create it "
                           "or set lease.namespace to the namespace deckhand runs in; no instance can act until then")
                if problem != self.problem:
                    log.error("leader election: %s", problem)
                self.problem = problem
            else:
                self.problem = None
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            if self._renewed_at is not None and not self.is_leader():
                # Not renewed for a whole duration: another instance may hold it now. Say so, so
                # what only the leader may hold (the Socket Mode connection) is let go.
                return self._lost(f"could not renew for {self.duration.total_seconds():.0f}s")
            return self.is_leader()

    def _won(self, now: datetime) -> bool:
        self.problem = None
        if not self.is_leader():
            log.info("this instance (%s) is the leader", self.identity)
            # Before is_leader() turns true: a request accepted in between would find the locks
            # of the dead leader still there (on_change drops them) and be told "busy".
            if self.on_change:
                self.on_change(True)
        self._renewed_at = now
        return True

    def _lost(self, why: str) -> bool:
        if self._renewed_at is not None:
            log.warning("lost leadership: %s; standing by", why)
            self._renewed_at = None
            if self.on_change:
                self.on_change(False)
        return False

    def release(self) -> None:
        """On clean shutdown, give the lease up so a successor need not wait a whole duration."""
        if not self.is_leader():
            return
        try:
            lease = self.kube.get(self.cluster, LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                self.kube.replace(self.cluster, LEASES, self.namespace, lease)
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)
        self._renewed_at = None

    def run(self) -> None:
        period = max(0.2, self.duration.total_seconds() / 3)
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(period)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.release()


def start_leader_election(ctx: Context, on_leading=None) -> LeaderElector | None:
    """Elect, or act alone outside Kubernetes. `on_leading(True/False)` is told when this instance
    starts or stops leading (at once with True when there is nothing to elect)."""
    lease = ctx.settings.lease
    cluster = lease.cluster
    namespace = lease.namespace
    if cluster is None:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            ctx.metrics.leader.set(1)
            ctx.store.drop_foreign_locks()
            if on_leading:
                on_leading(True)
            return None  # outside Kubernetes: a single local instance always acts
        cluster = "in-cluster"
        from bot.foundation.config import Cluster

        # The in-cluster API server, reached with the pod's ServiceAccount.
        ctx.kube.clusters.setdefault(cluster, Cluster(name=cluster, prometheus_url="http://unused"))
    if namespace is None:
        try:
            namespace = open(SA_NAMESPACE).read().strip()
        except OSError:
            namespace = "deckhand"
    def on_change(leading: bool) -> None:
        ctx.metrics.leader.set(1 if leading else 0)
        if leading:
            ctx.store.drop_foreign_locks()
        if on_leading:
            on_leading(leading)

    elector = LeaderElector(ctx.kube, cluster, namespace, lease.name, lease.duration,
                            identity=os.environ.get("POD_NAME"), on_change=on_change)
    ctx.is_leader = elector.is_leader
    ctx.leader_problem = lambda: elector.problem
    elector.try_acquire_or_renew()
    elector.start()
    return elector
