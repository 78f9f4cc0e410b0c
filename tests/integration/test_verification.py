"""Webhook verification end to end: a whole Headwind with verification on (its own processes
and Redis database), real registries, real notifications.

* with a pull secret (the basic-auth registry): a forged tag and a forged digest are dropped,
  the real push is applied;
* without one (a public repository on the bearer-token registry): the same, anonymously;
* a notification that arrives before the registry serves the tag is retried, not dropped.
"""

from __future__ import annotations

import json

import pytest

from operator_app import kube
from operator_app.workloads import KINDS
from tests.waiting import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


@pytest.fixture(scope="module")
def verifying(installation, notification_sink):
    """The installation under test, and no relay of the registry's notifications to the
    session's own (non-verifying) operators meanwhile: only this installation hears them."""
    relayed, notification_sink.forward_to = notification_sink.forward_to, None
    try:
        yield installation(operators=1, workers=1, verify=True)
    finally:
        notification_sink.forward_to = relayed


def deployment(kube_api, namespace: str, image: str) -> None:
    pod = {"metadata": {"labels": {"app": "app"}},
           "spec": {"containers": [{"name": "app", "image": image}]}}
    kube.request(kube_api, "POST", KINDS["Deployment"].collection_path(namespace), body={
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "annotations": DIRECT},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}}, "template": pod}})


def image_of(kube_api, namespace: str) -> str:
    obj = kube.request(kube_api, "GET", KINDS["Deployment"].object_path(namespace, "app"))
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def notification(host: str, repository: str, tag: str, digest: str) -> bytes:
    """What docker-registry sends (the distribution notification envelope)."""
    return json.dumps({"events": [{
        "id": f"{repository}-{tag}-{digest[-6:]}", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": repository, "tag": tag, "digest": digest},
        "request": {"host": host}}]}).encode()


def settled(bed, kube_api, namespace: str, operator_log_has: str) -> None:
    """The leader has decided on everything delivered so far."""
    bed.stream_drained()
    eventually(lambda: operator_log_has in bed.processes["operator-0"].log(), 30,
               f"the operator logging {operator_log_has!r}")


@pytest.mark.parametrize("with_secret", [True, False], ids=["pull-secret", "anonymous"])
def test_forged_pushes_are_dropped_and_real_ones_applied(with_secret, verifying, kube_api,
                                                         namespace, testbed, push_image,
                                                         token_registry_pusher, request):
    if with_secret:
        request.getfixturevalue("registry_pull_access")
        host, pusher = testbed.registry, None
        repository = f"{namespace}/app"
    else:  # a public repository: anonymous pulls, no secret anywhere
        host, pusher = testbed.token_registry, token_registry_pusher
        repository = f"public/{namespace}/app"
    push = pusher.push_image if pusher else push_image
    image = f"{host}/{repository}"
    push(repository, "1.0.0")
    deployment(kube_api, namespace, f"{image}:1.0.0")
    known(verifying, host, repository, image)

    forged_digest = "sha256:" + "0" * 64
    real = push(repository, "1.2.0")
    assert verifying.deliver(notification(host, repository, "9.9.9", real)).status_code == 202
    assert verifying.deliver(notification(host, repository, "1.2.0",
                                          forged_digest)).status_code == 202
    settled(verifying, kube_api, namespace, f"webhook claims {image}:1.2.0 is {forged_digest}")
    assert f"webhook claims {image}:9.9.9, which the registry does not have" in \
        verifying.processes["operator-0"].log()
    assert image_of(kube_api, namespace) == f"{image}:1.0.0"

    def applied() -> bool:  # the real one (redelivered until the informer has the Deployment)
        verifying.deliver(notification(host, repository, "1.2.0", real))
        verifying.stream_drained()
        return image_of(kube_api, namespace) == f"{image}:1.2.0"

    eventually(applied, 60, "the real push applied", interval=0.5)


def known(bed, host: str, repository: str, image: str) -> None:
    """Wait until the leader's cache has the Deployment: a forged digest for the current tag is
    logged as ignored only when some workload runs that repository."""
    forged = "sha256:" + "1" * 64

    def decided() -> bool:
        bed.deliver(notification(host, repository, "1.0.0", forged))
        bed.stream_drained()
        return f"webhook claims {image}:1.0.0 is {forged}" in bed.processes["operator-0"].log()

    eventually(decided, 60, "the operator deciding on this Deployment", interval=0.5)


def test_a_notification_before_the_tag_is_readable_is_retried(verifying, kube_api, namespace,
                                                              testbed, push_image,
                                                              registry_pull_access):
    repository = f"{namespace}/early"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    deployment(kube_api, namespace, f"{image}:1.0.0")
    known(verifying, testbed.registry, repository, image)

    # The same content makes the same manifest: learn 1.1.0's digest before it exists here.
    digest = push_image(f"{namespace}/scratch", "x", "release 1.1.0")
    assert verifying.deliver(notification(testbed.registry, repository, "1.1.0",
                                          digest)).status_code == 202
    eventually(lambda: f"{image}:1.1.0 not readable yet" in
               verifying.processes["operator-0"].log(), 20, "a retry scheduled, not a drop")
    assert push_image(repository, "1.1.0", "release 1.1.0") == digest  # now it is readable
    eventually(lambda: image_of(kube_api, namespace) == f"{image}:1.1.0", 30,
               "the early notification applied once the tag was readable")
    assert f"webhook claims {image}:1.1.0, which the registry does not have" not in \
        verifying.processes["operator-0"].log()
