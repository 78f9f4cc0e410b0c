"""Leader election on a coordination.k8s.io/v1 Lease: with several replicas, one acts.

Timings (docs/engine.md, "Leadership"): the Lease lasts ``lease_seconds`` (10) and the holder
renews it every ``renew_seconds`` (2). A standby tries every ``renew_seconds`` too, so after a
leader dies (kill -9: no release) another takes over within lease + one try, at most 12 s; on a
clean shutdown the Lease is released and the takeover takes one try (≤ 2 s). A leader whose
renewals fail stops acting after ``lease_seconds - renew_seconds`` (8 s) by its own clock, before
anyone else may take over.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from . import kube, metrics

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _format(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElector(threading.Thread):
    def __init__(self, api, namespace: str, name: str = "headwind-operator", *,
                 identity: str | None = None, lease_seconds: int = 10, renew_seconds: float = 2,
                 stop: threading.Event) -> None:
        super().__init__(name="leader-elector", daemon=True)
        self.api = api
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.stop_event = stop
        self.is_leader = threading.Event()
        self._renewed_at = float("-inf")  # monotonic start of the last successful renewal

    def leading(self) -> bool:
        """Leader now, judged by our own clock: a renewal that hangs must not leave us acting
        after another replica may have taken over (lease minus one renew period of margin)."""
        margin = self.lease_seconds - self.renew_seconds
        return self.is_leader.is_set() and time.monotonic() - self._renewed_at < margin

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                leading = self.try_acquire_or_renew()
            except kube.KubeError as exc:
                log.warning("leader election: %s", exc)
                leading = False
            except Exception:  # noqa: BLE001 - the elector must never die while leading
                log.exception("leader election failed unexpectedly")
                leading = False
            if leading:
                self._renewed_at = started
            if leading and not self.is_leader.is_set():
                log.info("became leader as %s", self.identity)
            if not leading and self.is_leader.is_set():
                log.warning("lost leadership")
            self.is_leader.set() if leading else self.is_leader.clear()
            metrics.LEADER.set(1 if leading else 0)
            self.stop_event.wait(self.renew_seconds)
        if self.is_leader.is_set():
            self.release()

    def try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = kube.request(self.api, "GET", f"{self.path}/{self.name}",
                                 timeout=self.renew_seconds)
        except kube.KubeError as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        expired = renewed is None or now > renewed + dt.timedelta(seconds=duration)
        if holder and holder != self.identity and not expired:
            return False
        new_spec = dict(spec, holderIdentity=self.identity, leaseDurationSeconds=self.lease_seconds,
                        renewTime=_format(now))
        if holder != self.identity:
            new_spec["acquireTime"] = _format(now)
            new_spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:  # resourceVersion in the body makes this a compare-and-swap
            kube.request(self.api, "PUT", f"{self.path}/{self.name}", body=lease,
                         timeout=self.renew_seconds)
        except kube.KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self, now: dt.datetime) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": self.lease_seconds,
                         "acquireTime": _format(now), "renewTime": _format(now),
                         "leaseTransitions": 0}}
        try:
            kube.request(self.api, "POST", self.path, body=body, timeout=self.renew_seconds)
        except kube.KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Hand over at once on a clean shutdown instead of making the next leader wait."""
        try:
            lease = kube.request(self.api, "GET", f"{self.path}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                kube.request(self.api, "PUT", f"{self.path}/{self.name}", body=lease)
        except kube.KubeError as exc:
            log.info("could not release the lease: %s", exc)
        self.is_leader.clear()
        metrics.LEADER.set(0)
