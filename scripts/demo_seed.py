"""Seed the demo: an opted-in Deployment on the local testbed registry, then a newer push, so
the dashboard shows a pending UpdateRequest to approve. Run by scripts/demo.sh."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config  # noqa: E402

from tests.testbed.registry import RegistryPusher  # noqa: E402

NAMESPACE = "demo"


def main() -> None:
    registry = os.environ["HEADWIND_TESTBED_REGISTRY"]
    pusher = RegistryPusher(registry, os.environ["HEADWIND_TESTBED_REGISTRY_USER"],
                            os.environ["HEADWIND_TESTBED_REGISTRY_PASSWORD"])
    pusher.push_image("demo/web", "1.0.0")
    api = config.new_client_from_config()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    for _ in range(100):  # the controller-manager creates the default ServiceAccount
        if core.list_namespaced_service_account(NAMESPACE).items:
            break
        time.sleep(0.1)
    body = {
        "metadata": {"name": "web", "annotations": {"headwind.sh/policy": "minor"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "containers": [{"name": "web", "image": f"{registry}/demo/web:1.0.0"}]}}},
    }
    try:
        apps.create_namespaced_deployment(NAMESPACE, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    time.sleep(2)  # let the operator's watch see the Deployment before the push arrives
    pusher.push_image("demo/web", "1.1.0")
    print(f"seeded: Deployment {NAMESPACE}/web runs {registry}/demo/web:1.0.0 (policy minor, "
          "approval required); 1.1.0 was pushed, so an UpdateRequest is waiting")


if __name__ == "__main__":
    main()
