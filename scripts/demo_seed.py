"""Seed the demo on the local testbed, so the dashboard shows two pending UpdateRequests:

* a Deployment ``demo/web`` on the testbed registry (with the pull secret a node would need,
  which Headwind also uses to poll and to verify webhooks), then a newer image pushed;
* a Flux HelmRelease ``demo/podinfo`` on a chart repository served by the testbed (charts made
  with the real helm CLI), with a newer chart version published.

Both use policy ``minor`` with approval required. Run by scripts/demo.sh.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config  # noqa: E402

from tests.testbed.charts import ChartRepo, Helm  # noqa: E402
from tests.testbed.registry import RegistryPusher  # noqa: E402
from tests.waiting import eventually  # noqa: E402

NAMESPACE = "demo"
POLICY = {"headwind.sh/policy": "minor"}


def created(call, *args) -> None:
    try:
        call(*args)
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def main() -> None:
    registry = os.environ["HEADWIND_TESTBED_REGISTRY"]
    user = os.environ["HEADWIND_TESTBED_REGISTRY_USER"]
    password = os.environ["HEADWIND_TESTBED_REGISTRY_PASSWORD"]
    pusher = RegistryPusher(registry, user, password)
    pusher.push_image("demo/web", "1.0.0")
    api = config.new_client_from_config()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    created(core.create_namespace, {"metadata": {"name": NAMESPACE}})
    eventually(lambda: core.list_namespaced_service_account(NAMESPACE).items, 30,
               "the default ServiceAccount")  # made by the controller-manager
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    dockerconfig = json.dumps({"auths": {registry: {"auth": auth}}}).encode()
    created(core.create_namespaced_secret, NAMESPACE, {
        "metadata": {"name": "registry"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(dockerconfig).decode()}})
    created(apps.create_namespaced_deployment, NAMESPACE, {
        "metadata": {"name": "web", "annotations": POLICY},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "imagePullSecrets": [{"name": "registry"}],
                     "containers": [{"name": "web", "image": f"{registry}/demo/web:1.0.0"}]}}},
    })

    # A chart repository with podinfo 6.5.0, and a HelmRelease on it.
    work = Path(tempfile.mkdtemp(prefix="headwind-demo-charts-"))
    helm = Helm.build(work / "home")
    repo = ChartRepo(os.environ["HEADWIND_TESTBED_CHART_REPO_URL"],
                     os.environ["HEADWIND_TESTBED_CHART_REPO_USER"],
                     os.environ["HEADWIND_TESTBED_CHART_REPO_PASSWORD"],
                     Path(os.environ["HEADWIND_TESTBED_CHART_REPO_DIR"]), helm)
    url = repo.publish_http("public/demo", helm.make_chart(work, "podinfo", "6.5.0"))
    created(custom.create_namespaced_custom_object, "source.toolkit.fluxcd.io", "v1", NAMESPACE,
            "helmrepositories", {"apiVersion": "source.toolkit.fluxcd.io/v1",
                                 "kind": "HelmRepository", "metadata": {"name": "charts"},
                                 "spec": {"url": url, "interval": "10m"}})
    created(custom.create_namespaced_custom_object, "helm.toolkit.fluxcd.io", "v2", NAMESPACE,
            "helmreleases", {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                             "metadata": {"name": "podinfo", "annotations": POLICY},
                             "spec": {"interval": "10m", "chart": {"spec": {
                                 "chart": "podinfo", "version": "6.5.0",
                                 "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}})

    # Newer releases: the image by push (webhook), the chart by publishing (polling).
    pusher.push_image("demo/web", "1.1.0")
    repo.publish_http("public/demo", helm.make_chart(work, "podinfo", "6.6.0"))

    def both_waiting() -> bool:
        found = custom.list_namespaced_custom_object("headwind.sh", "v1alpha1", NAMESPACE,
                                                     "updaterequests")["items"]
        kinds = {item["spec"]["targetRef"]["kind"] for item in found}
        if "Deployment" not in kinds:  # the operator may have missed the first notification
            pusher.push_image("demo/web", "1.1.0")
        return {"Deployment", "HelmRelease"} <= kinds

    eventually(both_waiting, 120, "the two UpdateRequests", interval=2)
    print(f"seeded: Deployment {NAMESPACE}/web ({registry}/demo/web 1.0.0 → 1.1.0) and "
          f"HelmRelease {NAMESPACE}/podinfo (podinfo 6.5.0 → 6.6.0 from {url}) are waiting for "
          "approval on the dashboard")


if __name__ == "__main__":
    main()
