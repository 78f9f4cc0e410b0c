"""The fault suite's shared pieces: workloads to update, notifications to deliver, and the
figures each scenario reports (printed at the end of the run)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from operator_app import kube
from operator_app.workloads import KINDS

FIGURES: list[tuple[str, dict]] = []

DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("Headwind fault suite: figures")
    for scenario, figures in FIGURES:
        text = ", ".join(f"{key}={value}" for key, value in figures.items())
        terminalreporter.write_line(f"{scenario}: {text}")


def report(scenario: str, **figures) -> None:
    FIGURES.append((scenario, figures))


@pytest.fixture(scope="module")
def quiet_relay(notification_sink):
    """The registry's notifications are not relayed to the session's operators while a fault
    scenario runs: its own installation is the only Headwind that hears anything."""
    relayed, notification_sink.forward_to = notification_sink.forward_to, None
    yield
    notification_sink.forward_to = relayed


@dataclass
class Target:
    name: str
    repository: str
    image: str  # without tag


class Fleet:
    """``count`` Deployments, each on its own repository of the basic-auth registry."""

    def __init__(self, kube_api, namespace: str, testbed, push_image, count: int,
                 annotations: dict | None = None) -> None:
        self.kube_api, self.namespace, self.testbed = kube_api, namespace, testbed
        self.push_image = push_image
        self.targets = [Target(f"app-{i}", f"{namespace}/app-{i}",
                               f"{testbed.registry}/{namespace}/app-{i}") for i in range(count)]
        for target in self.targets:
            push_image(target.repository, "1.0.0")
            pod = {"metadata": {"labels": {"app": target.name}},
                   "spec": {"containers": [{"name": "app", "image": f"{target.image}:1.0.0"}]}}
            kube.request(kube_api, "POST", KINDS["Deployment"].collection_path(namespace), body={
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": target.name, "annotations": annotations or DIRECT},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": target.name}},
                         "template": pod}})

    def notification(self, target: Target, tag: str, digest: str) -> bytes:
        return json.dumps({"events": [{
            "id": f"{target.name}-{tag}-{time.time_ns()}", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "repository": target.repository, "tag": tag, "digest": digest},
            "request": {"host": self.testbed.registry}}]}).encode()

    def deployment(self, target: Target) -> dict:
        return kube.request(self.kube_api, "GET",
                            KINDS["Deployment"].object_path(self.namespace, target.name))

    def image(self, target: Target) -> str:
        return self.deployment(target)["spec"]["template"]["spec"]["containers"][0]["image"]

    def updated(self, tag: str) -> int:
        return sum(self.image(t) == f"{t.image}:{tag}" for t in self.targets)

    def tally(self, tag: str) -> tuple[int, int]:
        """(lost, doubled): targets not at ``tag``, and extra history entries moving to it."""
        lost = doubled = 0
        for target in self.targets:
            obj = self.deployment(target)
            if obj["spec"]["template"]["spec"]["containers"][0]["image"] != f"{target.image}:{tag}":
                lost += 1
            history = json.loads((obj["metadata"].get("annotations") or {}).get(
                "headwind.sh/update-history", "[]"))
            moves = [h for h in history if h.get("to") == f"{target.image}:{tag}"]
            doubled += max(0, len(moves) - 1)
        return lost, doubled

    def known_by(self, bed) -> None:
        """Wait until the installation's leader has every Deployment in its cache: a forged
        digest for the running tag is logged as ignored only for a repository some workload
        runs."""
        from tests.waiting import eventually

        forged = "sha256:" + "1" * 64
        pending = list(self.targets)

        def all_known() -> bool:
            for target in list(pending):
                bed.deliver(self.notification(target, "1.0.0", forged))
            bed.stream_drained()
            logs = "".join(p.log() for n, p in bed.processes.items() if n.startswith("operator"))
            for target in list(pending):
                if f"webhook claims {target.image}:1.0.0 is {forged}" in logs:
                    pending.remove(target)
            return not pending

        eventually(all_known, 90, "the leader knowing every Deployment", interval=0.5)
