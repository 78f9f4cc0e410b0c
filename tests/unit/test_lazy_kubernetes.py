"""operator_app.lazy_kubernetes: the Kubernetes client's generated classes load on first use,
and are then the very objects the library's own modules define."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, sys
    def rss():
        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS'))
    before = rss()
    from operator_app import kube
    loaded = sorted(m for m in sys.modules if m.startswith('kubernetes.client.'))
    import kubernetes
    from kubernetes import client, config, watch
    from kubernetes.client import V1ObjectMeta
    from kubernetes.client.models.v1_object_meta import V1ObjectMeta as Real
    from kubernetes.client.api.custom_objects_api import CustomObjectsApi as RealApi
    pod = client.ApiClient()._ApiClient__deserialize(
        {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "c", "image": "reg/app:1.0"}]}}, "V1Pod")
    print(json.dumps({
        "models_before_use": sum(m.startswith('kubernetes.client.models.') for m in loaded),
        "apis_before_use": sum(m.startswith('kubernetes.client.api.') for m in loaded),
        "kib": rss() - before,
        "same_class": V1ObjectMeta is Real and client.models.V1ObjectMeta is Real,
        "same_api": client.CustomObjectsApi is RealApi,
        "pod": [type(pod).__name__, pod.metadata.name, pod.spec.containers[0].image],
        "version": kubernetes.__version__ == client.__version__ != "",
        "watch": watch.Watch.__name__, "config": callable(config.load_kube_config),
        "unknown": hasattr(client, "NoSuchThing"),
        "listed": "AppsV1Api" in dir(client),
    }))
""")


def test_generated_classes_load_when_used_and_are_the_librarys_own():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    # The models and APIs (about 840 modules) are not imported by importing operator_app.kube.
    assert seen["models_before_use"] < 5 and seen["apis_before_use"] < 5, seen
    assert seen["kib"] < 30 * 1024, seen  # the whole library would be some 55 MB
    assert seen["same_class"] and seen["same_api"], seen
    assert seen["pod"] == ["V1Pod", "p", "reg/app:1.0"]
    assert seen["version"] and seen["watch"] == "Watch" and seen["config"]
    assert seen["unknown"] is False and seen["listed"] is True
