"""The pure part of rollouts: state annotations, the rules that read a rollout, and how bad
versions and holds change a decision. The same rules run against real controllers in
tests/integration/test_rollouts.py."""

from __future__ import annotations

import json

import pytest

from operator_app.core import rollout
from operator_app.core.images import parse_image
from operator_app.core.policy import InvalidPolicy, PolicySpec, decide
from operator_app.core.rollout import Progress, RolloutRecord, RolloutState, Signals

POLICY = {"headwind.sh/policy": "minor"}


def deployment(generation=2, observed=2, wanted=2, **status):
    return {"metadata": {"generation": generation}, "spec": {"replicas": wanted},
            "status": {"observedGeneration": observed, **status}}


@pytest.mark.parametrize(("obj", "progress", "words"), [
    (deployment(observed=1), Progress.WAITING, "not seen"),
    (deployment(updatedReplicas=1, replicas=2), Progress.WAITING, "1 of 2 replicas updated"),
    (deployment(updatedReplicas=2, replicas=3), Progress.WAITING, "old replicas"),
    (deployment(updatedReplicas=2, replicas=2, availableReplicas=1), Progress.WAITING,
     "1 of 2 updated replicas available"),
    (deployment(updatedReplicas=2, replicas=2, availableReplicas=2), Progress.SUCCEEDED,
     "2 of 2"),
    (deployment(updatedReplicas=1, conditions=[{"type": "Progressing", "status": "False",
                                                "reason": "ProgressDeadlineExceeded",
                                                "message": "RS app-1 has timed out"}]),
     Progress.FAILED, "ProgressDeadlineExceeded: RS app-1 has timed out"),
])
def test_deployment_rules(obj, progress, words):
    verdict = rollout.deployment(obj)
    assert verdict.progress is progress and words in verdict.reason
    assert not verdict.signal


def test_a_deadline_exceeded_before_the_rollout_started_is_an_earlier_rollouts():
    """Rolling back to a ReplicaSet that still exists leaves the broken rollout's
    ProgressDeadlineExceeded in place until the controller makes progress."""
    from datetime import UTC, datetime

    stale = deployment(updatedReplicas=0, conditions=[{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "lastUpdateTime": "2026-11-27T12:00:05Z", "message": "RS app-2 has timed out"}])
    same_second = datetime(2026, 11, 27, 12, 0, 5, 700_000, tzinfo=UTC)
    assert rollout.deployment(stale, since=same_second).progress is Progress.WAITING
    assert rollout.deployment(stale, since=datetime(2026, 11, 27, 12, 1, tzinfo=UTC)
                              ).progress is Progress.WAITING
    earlier = datetime(2026, 11, 27, 12, 0, 4, 999_000, tzinfo=UTC)
    assert rollout.deployment(stale, since=earlier).progress is Progress.FAILED
    assert rollout.deployment(stale).progress is Progress.FAILED


def test_statefulset_rules():
    base = {"metadata": {"generation": 3}, "spec": {"replicas": 2}}
    waiting = {**base, "status": {"observedGeneration": 3, "readyReplicas": 2,
                                  "updatedReplicas": 1, "currentRevision": "a",
                                  "updateRevision": "b"}}
    done = {**base, "status": {"observedGeneration": 3, "readyReplicas": 2,
                               "updatedReplicas": 2, "currentRevision": "b",
                               "updateRevision": "b"}}
    assert rollout.statefulset(waiting).progress is Progress.WAITING
    assert rollout.statefulset(done).progress is Progress.SUCCEEDED
    on_delete = {**base, "spec": {"replicas": 2, "updateStrategy": {"type": "OnDelete"}},
                 "status": {"observedGeneration": 3}}
    assert rollout.statefulset(on_delete).progress is Progress.SUCCEEDED
    partitioned = {**base, "spec": {"replicas": 4, "updateStrategy": {
        "type": "RollingUpdate", "rollingUpdate": {"partition": 3}}},
        "status": {"observedGeneration": 3, "updatedReplicas": 1}}
    assert rollout.statefulset(partitioned).progress is Progress.SUCCEEDED


def test_daemonset_rules():
    obj = {"metadata": {"generation": 1}, "status": {
        "observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
        "numberAvailable": 2, "numberUnavailable": 1}}
    assert rollout.daemonset(obj).progress is Progress.WAITING
    obj["status"].update(numberAvailable=3, numberUnavailable=0)
    assert rollout.daemonset(obj).progress is Progress.SUCCEEDED


def test_job_and_helmrelease_rules():
    job = {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    assert rollout.job(job).failed and "BackoffLimitExceeded" in rollout.job(job).reason
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert rollout.job(job).progress is Progress.SUCCEEDED

    release = {"metadata": {"generation": 4}, "status": {
        "observedGeneration": 4, "lastAttemptedRevision": "1.2.0",
        "conditions": [{"type": "Ready", "status": "True", "message": "Helm upgrade "
                                                                       "succeeded"}]}}
    assert rollout.helmrelease(release, "1.2.0").progress is Progress.SUCCEEDED
    assert rollout.helmrelease(release, "1.3.0").progress is Progress.WAITING
    release["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "RollbackSucceeded"},
        {"type": "Remediated", "status": "True", "reason": "RollbackSucceeded",
         "message": "Helm rollback to previous release succeeded"}]
    verdict = rollout.helmrelease(release, "1.2.0")
    assert verdict.failed and "Flux remediated" in verdict.reason


def pod(name, *, waiting=None, restarts=0):
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {"metadata": {"name": name}, "status": {"containerStatuses": [
        {"name": "app", "state": state, "restartCount": restarts}]}}


def test_pod_signals():
    assert rollout.pods([pod("a"), pod("b", restarts=2)]) is None
    crash = rollout.pods([pod("a"), pod("b", waiting="CrashLoopBackOff")])
    assert crash.failed and crash.signal and "pod b container app: CrashLoopBackOff" in \
        crash.reason
    assert rollout.pods([pod("a", restarts=3)]).failed
    assert rollout.pods([pod("a", waiting="ContainerCreating")]) is None


def test_signals_must_repeat():
    signals = Signals(retries=2)
    failed = rollout.pods([pod("a", waiting="ErrImagePull")])
    assert not signals.count("k", failed)
    assert not signals.count("k", None)  # seen fine in between: counting starts again
    assert not signals.count("k", failed)
    assert signals.count("k", failed)


def test_record_round_trip_and_dump():
    record = RolloutRecord(slot="app", to="r/a:2", from_="r/a:1", started="2026-01-01T00:00:00Z",
                           deadline="2026-01-01T00:10:00Z", auto_rollback=True, request="ur-1")
    text = rollout.dump({"app": record})
    assert rollout.rollouts({rollout.ANNOTATION_ROLLOUT: text}) == {"app": record}
    data = json.loads(text)["app"]
    assert data["from"] == "r/a:1" and data["autoRollback"] is True and data["state"] == \
        "watching"
    done = record.finish(RolloutState.SUCCEEDED, "ok", "2026-01-01T00:01:00Z")
    assert done.final and not record.final


@pytest.mark.parametrize("text", ["[]", "{not json", '{"app": 1}', '{"app": {"to": "x"}}'])
def test_unreadable_rollout_annotations(text):
    with pytest.raises(rollout.InvalidState):
        rollout.rollouts({rollout.ANNOTATION_ROLLOUT: text})


def test_bad_versions_and_holds_steer_decide():
    current = parse_image("r/a:1.2.0")
    candidates = {"1.3.0": None, "1.2.5": None}
    spec = PolicySpec.from_annotations({**POLICY, "headwind.sh/bad-versions":
                                        '{"app": ["1.3.0"]}'})
    assert decide(spec, current, candidates, slot="app").tag == "1.2.5"
    assert decide(spec, current, candidates, slot="sidecar").tag == "1.3.0"
    assert decide(spec, current, {"1.3.0": None}, slot="app") is None
    held = PolicySpec.from_annotations({**POLICY, "headwind.sh/hold":
                                        '{"app": {"version": "1.2.0", "by": "alice"}}'})
    assert decide(held, current, candidates, slot="app") is None
    assert decide(held, current, candidates, slot="other").tag == "1.3.0"


def test_digest_policy_marks_digests_bad():
    digest = "sha256:" + "b" * 64
    current = parse_image("r/a:latest@sha256:" + "a" * 64)
    spec = PolicySpec.from_annotations({"headwind.sh/policy": "digest",
                                        "headwind.sh/bad-versions": json.dumps({"app": [digest]})})
    assert decide(spec, current, {"latest": digest}, slot="app") is None
    assert decide(spec, current, {"latest": "sha256:" + "c" * 64}, slot="app") is not None
    assert spec.version_key(parse_image(f"r/a:latest@{digest}")) == digest


def test_rollout_settings():
    spec = PolicySpec.from_annotations({**POLICY, "headwind.sh/auto-rollback": "true",
                                        "headwind.sh/rollback-timeout": "90"})
    assert spec.auto_rollback and spec.rollout_timeout_seconds == 90
    spec = PolicySpec.from_annotations({**POLICY, "headwind.sh/rollout-timeout": "30",
                                        "headwind.sh/rollback-timeout": "90"})
    assert spec.rollout_timeout_seconds == 30  # the new name wins
    assert PolicySpec.from_annotations(POLICY).rollout_timeout_seconds == 600
    for bad in ({"headwind.sh/rollout-timeout": "0"}, {"headwind.sh/health-check-retries": "0"},
                {"headwind.sh/bad-versions": '{"app": "1.0"}'},
                {"headwind.sh/hold": '{"app": {}}'}):
        with pytest.raises(InvalidPolicy):
            PolicySpec.from_annotations({**POLICY, **bad})
