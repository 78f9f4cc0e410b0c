"""Following every applied update until the new version runs, and rolling back when it fails.

The apply task writes the rollout to follow into the target's ``headwind.sh/rollout``
annotation in the same patch as the new image (see :mod:`operator_app.core.rollout`), so the
state lives in the cluster: whichever replica leads, after any restart, reads it back.

The :class:`RolloutWatcher` runs in every ``run_operator`` replica and acts on the leader:

* the informers hand it every object they see (:meth:`RolloutWatcher.observe`); a target with an
  open rollout is checked at once when it changes (a Deployment's status moving is a watch
  event), and every ``interval`` seconds in any case (pods, deadlines);
* a check reads the target's status with the rules of ``kubectl rollout status`` and the pods
  of the new revision (found through the Deployment's ReplicaSet, the StatefulSet's and
  DaemonSet's ControllerRevision, or the CronJob's next Job; never by label guesswork alone):
  a waiting reason such as ``CrashLoopBackOff`` or too many restarts is a failure signal, which
  must be seen on ``headwind.sh/health-check-retries`` consecutive checks;
* the outcome goes to the annotation, an Event, metrics and the UpdateRequest's status
  (``RolledOut``, ``Failed`` with the reason, or ``RolledBack``);
* a failed rollout with ``headwind.sh/auto-rollback: "true"`` is marked ``rollingBack`` and a
  rollback queued to the same idempotent, resourceVersion-guarded Celery task as updates; the
  rollback itself refuses to run over a change someone else made meanwhile. A rollback queued
  but not carried out within ``requeue_after`` seconds is queued again (a lost message).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from . import metrics, notify, proposals, recorder
from .apply import UpdateCommand, api_sources, precise_time
from .core import rollout
from .core.policy import DEFAULT_HEALTH_CHECK_RETRIES, InvalidPolicy, PolicySpec
from .core.rollout import Progress, RolloutRecord, RolloutState, Signals, Verdict
from .kube import KubeError, request
from .proposals import Phase, PhaseConflict, StatusContention, parse_rfc3339, rfc3339
from .target_state import StateContention, update_annotations
from .workloads import (
    CRONJOB,
    DAEMONSET,
    DEPLOYMENT,
    HELMRELEASE,
    STATEFULSET,
    TargetKind,
    kind_of,
)

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
#: Who the history and Events name for an automatic rollback.
AUTO_ROLLBACK_ACTOR = "headwind-auto-rollback"


def _open(annotations: dict) -> bool:
    """Does this object carry a rollout still to be followed?"""
    if rollout.ANNOTATION_ROLLOUT not in annotations:
        return False
    try:
        return any(not record.final for record in rollout.rollouts(annotations).values())
    except rollout.InvalidState:
        return False


class RolloutWatcher(threading.Thread):
    """See the module docstring. ``queue`` hands a rollback to the apply task."""

    def __init__(self, api, queue: Callable[[UpdateCommand], None], stop: threading.Event,
                 is_leader: Callable[[], bool], *, interval: float = 2.0,
                 requeue_after: float = 60.0) -> None:
        super().__init__(name="rollouts", daemon=True)
        self.api = api
        self.queue = queue
        self.stop_event = stop
        self.is_leader = is_leader
        self.interval = interval
        self.requeue_after = requeue_after
        self._lock = threading.Lock()
        self._targets: set[Key] = set()
        self._dirty: set[Key] = set()
        self._wake = threading.Event()
        self._signals: dict[int, Signals] = {}
        self.checks = 0  # target checks done (tests wait on it)

    # -- fed by the informers ----------------------------------------------------------------

    def observe(self, kind: TargetKind, event_type: str, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = (kind.kind, meta.get("namespace", ""), meta.get("name", ""))
        following = event_type != "DELETED" and _open(meta.get("annotations") or {})
        with self._lock:
            if following:
                self._targets.add(key)
                self._dirty.add(key)
            else:
                self._targets.discard(key)
                self._dirty.discard(key)
        if following:
            self._wake.set()

    def following(self) -> set[Key]:
        with self._lock:
            return set(self._targets)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        next_full = 0.0
        while not self.stop_event.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.stop_event.is_set():
                return
            if not self.is_leader():
                continue
            full = time.monotonic() >= next_full
            with self._lock:
                due = set(self._targets) if full else set(self._dirty)
                self._dirty.clear()
                metrics.ROLLOUTS_WATCHED.set(len(self._targets))
            if full:
                next_full = time.monotonic() + self.interval
            for key in sorted(due):
                try:
                    self.check(key)
                except Exception:  # noqa: BLE001 - one target must not stop the others
                    log.exception("rollout check of %s %s/%s failed", *key)

    def check(self, key: Key, now: datetime | None = None) -> None:
        """Check every open rollout of one target once."""
        now = now or datetime.now(UTC)
        kind = kind_of(key[0])
        try:
            obj = request(self.api, "GET", kind.object_path(key[1], key[2]))
        except KubeError as exc:
            if exc.status == 404:
                self._forget(key)
                return
            log.info("rollout check of %s %s/%s postponed: %s", *key, exc)
            return
        self.checks += 1
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            records = rollout.rollouts(annotations)
        except rollout.InvalidState as exc:
            log.warning("%s %s/%s: %s; not followed", *key, exc)
            self._forget(key)
            return
        open_records = [record for record in records.values() if not record.final]
        if not open_records:
            self._forget(key)
            return
        try:
            retries = PolicySpec.from_annotations(annotations).health_check_retries
        except InvalidPolicy:
            retries = DEFAULT_HEALTH_CHECK_RETRIES
        for record in open_records:
            try:
                self._check_record(kind, obj, record, retries, now)
            except (KubeError, StateContention, StatusContention) as exc:
                log.info("rollout of %s %s/%s %s postponed: %s", *key, record.slot, exc)

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._targets.discard(key)
            self._dirty.discard(key)

    # -- one rollout ---------------------------------------------------------------------------

    def _check_record(self, kind: TargetKind, obj: dict, record: RolloutRecord, retries: int,
                      now: datetime) -> None:
        meta = obj["metadata"]
        live = next((c.image for c in kind.containers(obj, api_sources(self.api))
                     if c.name == record.slot), None)
        if live != record.to:
            what = f"runs {live}" if live else "is gone"
            self._finish(kind, obj, record, RolloutState.SUPERSEDED,
                         f"{record.slot} {what}, not {record.to}: changed by someone else; "
                         "the rollout is no longer followed", now)
            return
        if record.state is RolloutState.ROLLING_BACK:
            queued = parse_rfc3339(record.queued)
            if queued is None or (now - queued).total_seconds() >= self.requeue_after:
                self._roll_back(kind, obj, record, record.reason, now, again=True)
            return
        if record.rollback and kind is STATEFULSET:
            self._delete_stuck_pods(obj, record)
        verdict, deadline = self._evaluate(kind, obj, record, now)
        metrics.HEALTH_CHECKS.labels(kind.kind).inc()
        signal_key = (meta.get("uid"), record.slot, record.to, record.started)
        signals = self._signals.setdefault(retries, Signals(retries))
        if verdict.progress is Progress.SUCCEEDED:
            signals.forget(signal_key)
            self._finish(kind, obj, record, RolloutState.SUCCEEDED, verdict.reason, now)
            return
        if verdict.failed:
            metrics.HEALTH_FAILURES.labels(kind.kind).inc()
        if verdict.failed and (not verdict.signal or signals.count(signal_key, verdict)):
            signals.forget(signal_key)
            self._failed(kind, obj, record, verdict.reason, now)
            return
        if not verdict.failed:
            signals.forget(signal_key)
        if deadline is not None and now >= deadline:
            signals.forget(signal_key)
            self._failed(kind, obj, record, f"not rolled out by its deadline "
                                            f"({rfc3339(deadline)}): {verdict.reason}", now)

    def _evaluate(self, kind: TargetKind, obj: dict, record: RolloutRecord,
                  now: datetime) -> tuple[Verdict, datetime | None]:
        """The verdict now, and the deadline that applies to it (None: none yet)."""
        deadline = parse_rfc3339(record.deadline)
        if kind is HELMRELEASE:
            version = kind.parse_artifact(record.to).version  # type: ignore[attr-defined]
            return rollout.helmrelease(obj, version), deadline
        if kind is CRONJOB:
            job = self._next_job(obj, record)
            if job is None:
                return Verdict(Progress.WAITING, "waiting for the next Job"), None
            started, created = parse_rfc3339(record.started), parse_rfc3339(
                (job.get("metadata") or {}).get("creationTimestamp"))
            if deadline is not None and started is not None and created is not None:
                deadline = max(deadline, created + (deadline - started))
            verdict = rollout.job(job)
            pods = self._owned_pods(job, {"batch.kubernetes.io/controller-uid":
                                          job["metadata"]["uid"]})
        else:
            if kind is DEPLOYMENT:
                verdict = rollout.deployment(obj, since=parse_rfc3339(record.started))
            else:
                verdict = {STATEFULSET.kind: rollout.statefulset,
                           DAEMONSET.kind: rollout.daemonset}[kind.kind](obj)
            pods = self._new_pods(kind, obj) if verdict.progress is Progress.WAITING else []
        if verdict.progress is Progress.WAITING:
            signal = rollout.pods(pods)
            if signal is not None:
                return signal, deadline
        return verdict, deadline

    # -- pods of the new revision ----------------------------------------------------------

    def _list(self, path: str, namespace: str, labels: dict[str, str]) -> list[dict]:
        """``path`` (with ``{namespace}``) listed by a label selector narrowing the answer;
        ownership, not labels, decides what belongs to the target."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        query = {"labelSelector": selector} if selector else None
        return request(self.api, "GET", path.format(namespace=namespace),
                       query=query).get("items") or []

    def _owned(self, items: list[dict], owner_uid: str) -> list[dict]:
        return [item for item in items
                if any(ref.get("uid") == owner_uid
                       for ref in (item.get("metadata") or {}).get("ownerReferences") or [])]

    def _match_labels(self, obj: dict) -> dict[str, str]:
        return dict(((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})

    def _owned_pods(self, owner: dict, labels: dict[str, str]) -> list[dict]:
        meta = owner["metadata"]
        return self._owned(self._list("/api/v1/namespaces/{namespace}/pods", meta["namespace"],
                                      labels), meta["uid"])

    def _new_pods(self, kind: TargetKind, obj: dict) -> list[dict]:
        meta = obj["metadata"]
        labels = self._match_labels(obj)
        if kind is DEPLOYMENT:
            revision = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
            sets = self._owned(self._list("/apis/apps/v1/namespaces/{namespace}/replicasets",
                                          meta["namespace"], labels), meta["uid"])
            current = next((rs for rs in sets if ((rs["metadata"].get("annotations") or {})
                            .get("deployment.kubernetes.io/revision")) == revision), None)
            if current is None or revision is None:
                return []
            template_hash = (current["metadata"].get("labels") or {}).get("pod-template-hash")
            return self._owned_pods(current, {**labels, "pod-template-hash": template_hash})
        if kind is STATEFULSET:
            revision = (obj.get("status") or {}).get("updateRevision")
            if not revision:
                return []
            return self._owned_pods(obj, {**labels, "controller-revision-hash": revision})
        revisions = self._owned(self._list(
            "/apis/apps/v1/namespaces/{namespace}/controllerrevisions", meta["namespace"],
            labels), meta["uid"])
        if not revisions:
            return []
        newest = max(revisions, key=lambda item: int(item.get("revision") or 0))
        revision_hash = (newest["metadata"].get("labels") or {}).get("controller-revision-hash")
        if not revision_hash:
            return []
        return self._owned_pods(obj, {**labels, "controller-revision-hash": revision_hash})

    def _delete_stuck_pods(self, statefulset: dict, record: RolloutRecord) -> None:
        """Finish a StatefulSet rollback. With the default OrderedReady policy the controller
        never replaces a pod of the bad revision that is not Ready, even once the template is
        back: Kubernetes documents this "forced rollback" as manual work (delete those pods).
        Headwind deletes exactly the pods that run the version it rolled back from and are not
        Ready, each guarded by its uid."""
        meta = statefulset["metadata"]
        for pod in self._owned_pods(statefulset, self._match_labels(statefulset)):
            spec = pod.get("spec") or {}
            images = {c.get("name"): c.get("image") for c in
                      [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
            conditions = {c.get("type"): c.get("status")
                          for c in (pod.get("status") or {}).get("conditions") or []}
            pod_meta = pod["metadata"]
            if images.get(record.slot) != record.from_ or conditions.get("Ready") == "True" \
                    or pod_meta.get("deletionTimestamp"):
                continue
            try:
                request(self.api, "DELETE",
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{pod_meta['name']}",
                        body={"preconditions": {"uid": pod_meta["uid"]}})
            except KubeError as exc:
                if exc.status not in (404, 409):
                    raise
                continue
            self._event(STATEFULSET, statefulset, "Normal", "StuckPodDeleted",
                        f"pod {pod_meta['name']} runs {record.from_} and is not Ready: deleted "
                        "so the StatefulSet recreates it from the rolled-back template")
            log.info("StatefulSet %s/%s: deleted stuck pod %s of the rolled-back version",
                     meta["namespace"], meta["name"], pod_meta["name"])

    def _next_job(self, cronjob: dict, record: RolloutRecord) -> dict | None:
        """The newest Job of this CronJob started from the new template."""
        meta = cronjob["metadata"]
        started = parse_rfc3339(record.started)
        jobs = []
        for item in self._owned(self._list("/apis/batch/v1/namespaces/{namespace}/jobs",
                                           meta["namespace"], {}), meta["uid"]):
            created = parse_rfc3339((item.get("metadata") or {}).get("creationTimestamp"))
            if started is not None and created is not None and \
                    created < started - timedelta(seconds=1):
                continue
            template = (((item.get("spec") or {}).get("template") or {}).get("spec")) or {}
            images = {c.get("name"): c.get("image") for c in
                      [*(template.get("initContainers") or []), *(template.get("containers")
                                                                   or [])]}
            if images.get(record.slot) == record.to:
                jobs.append(item)
        return max(jobs, key=lambda item: item["metadata"].get("creationTimestamp", ""),
                   default=None)

    # -- outcomes --------------------------------------------------------------------------

    def _write(self, kind: TargetKind, obj: dict, record: RolloutRecord,
               updated: RolloutRecord) -> bool:
        """Replace ``record`` by ``updated`` if the target still holds ``record`` unchanged."""
        meta = obj["metadata"]

        def change(fresh: dict) -> dict | None:
            annotations = (fresh.get("metadata") or {}).get("annotations") or {}
            try:
                records = rollout.rollouts(annotations)
            except rollout.InvalidState:
                return None
            if records.get(record.slot) != record:
                return None
            records[record.slot] = updated
            return {rollout.ANNOTATION_ROLLOUT: rollout.dump(records)}

        try:
            written = update_annotations(self.api, kind.object_path(meta["namespace"],
                                                                    meta["name"]), change)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return written is not None

    def _finish(self, kind: TargetKind, obj: dict, record: RolloutRecord, state: RolloutState,
                reason: str, now: datetime) -> None:
        if not self._write(kind, obj, record, record.finish(state, reason, rfc3339(now))):
            return
        meta = obj["metadata"]
        outcome = {RolloutState.SUCCEEDED: "succeeded", RolloutState.FAILED: "failed",
                   RolloutState.SUPERSEDED: "superseded"}.get(state, state.value)
        metrics.ROLLOUTS.labels(kind.kind, meta["namespace"], outcome).inc()
        what = "rollback" if record.rollback else "rollout"
        message = f"{what} of {record.slot} {record.from_} → {record.to} {outcome}: {reason}"
        self._event(kind, obj, "Warning" if state is RolloutState.FAILED else "Normal",
                    {RolloutState.SUCCEEDED: "RolloutSucceeded",
                     RolloutState.FAILED: "RolloutFailed"}.get(state, "RolloutSuperseded"),
                    message)
        log.info("%s %s/%s: %s", kind.kind, meta["namespace"], meta["name"], message)
        event = {(False, RolloutState.SUCCEEDED): notify.Event.ROLLED_OUT,
                 (False, RolloutState.FAILED): notify.Event.UPDATE_FAILED,
                 (True, RolloutState.FAILED): notify.Event.ROLLBACK_FAILED,
                 }.get((record.rollback, state))
        if event is not None:
            self._notify(event, kind, obj, record, reason)
        if record.request and not record.rollback and state in (RolloutState.SUCCEEDED,
                                                                 RolloutState.FAILED):
            phase = Phase.ROLLED_OUT if state is RolloutState.SUCCEEDED else Phase.FAILED
            self._set_request(meta["namespace"], record, phase, message, now)

    def _failed(self, kind: TargetKind, obj: dict, record: RolloutRecord, reason: str,
                now: datetime) -> None:
        if record.auto_rollback and record.from_ and not record.rollback:
            self._roll_back(kind, obj, record, reason, now)
        else:
            self._finish(kind, obj, record, RolloutState.FAILED, reason, now)

    def _roll_back(self, kind: TargetKind, obj: dict, record: RolloutRecord, reason: str,
                   now: datetime, *, again: bool = False) -> None:
        """Mark the rollout rollingBack first, then queue: a crash in between is found by the
        next check (a rollback queued long ago and not done is queued again), and a rollback
        queued twice is applied once (the task re-checks the live image)."""
        updated = replace(record, state=RolloutState.ROLLING_BACK, reason=reason,
                          queued=precise_time(now))
        if not self._write(kind, obj, record, updated):
            return
        meta = obj["metadata"]
        self.queue(UpdateCommand(
            kind=kind.kind, namespace=meta["namespace"], name=meta["name"],
            container=record.slot, new_image=record.from_, expected_image=record.to,
            request=record.request, actor=AUTO_ROLLBACK_ACTOR, purpose="rollback",
            mark_bad=True, reason=reason))
        if again:
            log.warning("%s %s/%s: rollback of %s queued again (not done within %.0fs)",
                        kind.kind, meta["namespace"], meta["name"], record.slot,
                        self.requeue_after)
            return
        metrics.ROLLOUTS.labels(kind.kind, meta["namespace"], "failed").inc()
        message = (f"rollout of {record.slot} {record.from_} → {record.to} failed: {reason}; "
                   f"rolling back to {record.from_}")
        self._event(kind, obj, "Warning", "RolloutFailed", message)
        self._notify(notify.Event.ROLLBACK_TRIGGERED, kind, obj, record, reason)
        log.warning("%s %s/%s: %s", kind.kind, meta["namespace"], meta["name"], message)

    def _set_request(self, namespace: str, record: RolloutRecord, phase: Phase, message: str,
                     now: datetime) -> None:
        try:
            proposals.set_phase(self.api, namespace, record.request or "", phase,
                                message=message,
                                extra_status={"rollout": {"finishedAt": rfc3339(now),
                                                          "message": message}},
                                expect_phases={Phase.COMPLETED})
        except PhaseConflict as exc:
            log.info("UpdateRequest left as it is: %s", exc)
        except KubeError as exc:
            if exc.status != 404:
                raise

    def _notify(self, event: notify.Event, kind: TargetKind, obj: dict, record: RolloutRecord,
                reason: str) -> None:
        meta = obj["metadata"]
        annotations = meta.get("annotations") or {}
        notify.emit(notify.Notice(
            event=event, kind=kind.kind, namespace=meta["namespace"], name=meta["name"],
            slot=record.slot, from_ref=record.from_, to_ref=record.to,
            policy=annotations.get("headwind.sh/policy", ""), actor=record.by, reason=reason,
            request=record.request, annotations=annotations))

    def _event(self, kind: TargetKind, obj: dict, event_type: str, reason: str,
               message: str) -> None:
        meta = obj["metadata"]
        recorder.record_event(self.api, api_version=kind.api_version, kind=kind.kind,
                              namespace=meta["namespace"], name=meta["name"],
                              uid=meta.get("uid"), event_type=event_type, reason=reason,
                              message=message)
