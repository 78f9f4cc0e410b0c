"""Engine decisions over the in-memory cache (pure logic: no cluster needed)."""

from __future__ import annotations

import pytest

from operator_app.cache import WorkloadCache
from operator_app.core.events import EventSource, ImagePushEvent
from operator_app.engine import Engine
from operator_app.workloads import DEPLOYMENT, STATEFULSET, project

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


class Recorder:
    def __init__(self) -> None:
        self.proposed, self.applied = [], []

    def propose(self, plan) -> None:
        self.proposed.append(plan)

    def apply(self, plan) -> None:
        self.applied.append(plan)


def obj(name: str, containers: dict[str, str], annotations: dict, init: dict | None = None,
        namespace: str = "team") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "resourceVersion": "1", "annotations": annotations},
            "spec": {"template": {"spec": {
                "containers": [{"name": k, "image": v} for k, v in containers.items()],
                "initContainers": [{"name": k, "image": v} for k, v in (init or {}).items()],
            }}}}


@pytest.fixture
def world():
    cache, recorder = WorkloadCache(), Recorder()
    return cache, recorder, Engine(cache, recorder)


def add(cache, kind=DEPLOYMENT, **kwargs):
    cache.upsert(project(kind, obj(**kwargs)))


def test_images_annotation_restricts_to_named_containers(world):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": "nginx:1.2.3", "proxy": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "minor", "headwind.sh/images": "proxy",
                     "headwind.sh/require-approval": "false"})
    engine.handle(ImagePushEvent("docker.io/library/nginx", "1.3.0"))
    assert [(p.container, p.new_image) for p in recorder.applied] == [("proxy", "nginx:1.3.0")]


def test_init_containers_are_updated_too(world):
    cache, recorder, engine = world
    add(cache, kind=STATEFULSET, name="db", containers={"db": "postgres:16.1"},
        init={"migrate": "ghcr.io/acme/migrate:2.0.0"},
        annotations={"headwind.sh/policy": "patch"})
    engine.handle(ImagePushEvent("ghcr.io/acme/migrate", "2.0.1"))
    (plan,) = recorder.proposed
    assert (plan.workload.kind, plan.container, plan.new_image) == (
        "StatefulSet", "migrate", "ghcr.io/acme/migrate:2.0.1")


@pytest.mark.parametrize(("setting", "source", "acts"), [
    ("webhook", EventSource.WEBHOOK, True), ("webhook", EventSource.POLLING, False),
    ("polling", EventSource.WEBHOOK, False), ("polling", EventSource.POLLING, True),
    ("both", EventSource.POLLING, True), ("none", EventSource.WEBHOOK, False),
])
def test_event_source_is_honoured(world, setting, source, acts):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "minor", "headwind.sh/event-source": setting})
    engine.handle(ImagePushEvent("docker.io/library/nginx", "1.3.0", source=source))
    assert bool(recorder.proposed) is acts


def test_invalid_policy_skips_only_that_workload(world):
    cache, recorder, engine = world
    add(cache, name="bad", containers={"app": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "sometimes"})
    add(cache, name="good", containers={"app": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "minor"})
    engine.handle(ImagePushEvent("docker.io/library/nginx", "1.3.0"))
    assert [p.workload.name for p in recorder.proposed] == ["good"]


def test_other_repositories_and_registries_do_not_match(world):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "all"})
    engine.handle(ImagePushEvent("ghcr.io/library/nginx", "9.0.0"))
    engine.handle(ImagePushEvent("docker.io/library/nginx-unprivileged", "9.0.0"))
    assert recorder.proposed == []


def test_each_workload_picks_its_own_best_tag_among_candidates(world):
    cache, recorder, engine = world
    add(cache, name="careful", containers={"app": "quay.io/org/api:1.2.3"},
        annotations={"headwind.sh/policy": "patch"})
    add(cache, name="eager", containers={"app": "quay.io/org/api:1.2.3"},
        annotations={"headwind.sh/policy": "minor"})
    engine.handle_candidates("quay.io/org/api", {"1.2.4": None, "1.3.1": None, "2.0.0": None,
                                                 "1.3.2-rc.1": None}, EventSource.POLLING)
    assert {p.workload.name: p.new_image for p in recorder.proposed} == {
        "careful": "quay.io/org/api:1.2.4", "eager": "quay.io/org/api:1.3.1"}


def test_digest_policy_pins_then_follows_rebuilds(world):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": "localhost:5000/team/web:latest"},
        annotations={"headwind.sh/policy": "digest"})
    engine.handle(ImagePushEvent("localhost:5000/team/web", "latest", DIGEST_A))
    assert recorder.proposed[-1].new_image == f"localhost:5000/team/web:latest@{DIGEST_A}"

    add(cache, name="web", containers={"app": f"localhost:5000/team/web:latest@{DIGEST_A}"},
        annotations={"headwind.sh/policy": "digest"})
    engine.handle(ImagePushEvent("localhost:5000/team/web", "latest", DIGEST_A))  # same build
    engine.handle(ImagePushEvent("localhost:5000/team/web", "stable", DIGEST_B))  # other tag
    assert len(recorder.proposed) == 1
    engine.handle(ImagePushEvent("localhost:5000/team/web", "latest", DIGEST_B))
    assert recorder.proposed[-1].new_image == f"localhost:5000/team/web:latest@{DIGEST_B}"


def test_a_digest_pin_is_kept_on_a_version_update(world):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": f"nginx:1.2.3@{DIGEST_A}"},
        annotations={"headwind.sh/policy": "minor"})
    engine.handle(ImagePushEvent("docker.io/library/nginx", "1.3.0", DIGEST_B))
    assert recorder.proposed[-1].new_image == f"nginx:1.3.0@{DIGEST_B}"


def test_removing_a_workload_removes_it_from_the_index(world):
    cache, recorder, engine = world
    add(cache, name="web", containers={"app": "nginx:1.2.3"},
        annotations={"headwind.sh/policy": "minor"})
    cache.remove(("Deployment", "team", "web"))
    engine.handle(ImagePushEvent("docker.io/library/nginx", "1.3.0"))
    assert recorder.proposed == [] and len(cache) == 0 and cache.count("Deployment") == 0
