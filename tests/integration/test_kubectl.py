"""``kubectl headwind`` end to end: the real kubectl (tests/testbed/tools/kubectl, v1.37.2) runs
the installed ``kubectl-headwind`` console script from PATH, against the testbed, as
ServiceAccounts with and without rights, each with a kubeconfig of its own.

Approvals go through the Kubernetes API (the admission policy proves who approves) and are
carried out by the session's real operators and worker; rejects, rollbacks and the radar go
through Headwind's API (a live server) with the user's own bearer token. Every run also checks
that no Python traceback reaches the user.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from operator_app import kube
from operator_app import proposals as ur
from operator_app.apply import UpdateCommand
from operator_app.tasks import queue_update
from tests.waiting import eventually

from .test_engine_e2e import create as create_object
from .test_engine_e2e import image_of, push_and_deliver, read, wait_image, workload
from .test_proposals import create, propose

pytestmark = pytest.mark.testbed

REPO = "reg.example/team/app"
OLD, NEW = f"{REPO}:1.2.0", f"{REPO}:1.3.0"
POLICY = {"headwind.sh/policy": "minor", "headwind.sh/min-update-interval": "0"}
DIRECT = {**POLICY, "headwind.sh/require-approval": "false"}

# What each kind of user is given (Role rules in the test's namespace).
READ = {"apiGroups": ["headwind.sh"], "resources": ["updaterequests"], "verbs": ["get", "list"]}
WRITE_STATUS = {"apiGroups": ["headwind.sh"], "resources": ["updaterequests/status"],
                "verbs": ["get", "update", "patch"]}  # get, patch: for `kubectl patch` itself
PATCH_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"],
                     "verbs": ["get", "patch"]}
GET_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}
LIST_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}


# --------------------------------------------------------------------------------------------
# Running kubectl as a user
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    status: int
    out: str
    err: str


def ok(run: Run) -> Run:
    assert run.status == 0, f"exit {run.status}: {run.err}"
    return run


def fails(run: Run, *texts: str) -> Run:
    assert run.status != 0, f"succeeded: {run.out}"
    for text in texts:
        assert text in run.err, f"{text!r} not in: {run.err}"
    return run


@pytest.fixture(scope="session")
def run(kubectl, tmp_path_factory):
    """``run(*args, kubeconfig=None, env=None) -> Run``: the real kubectl, with nothing but
    kubectl and the installed kubectl-headwind on PATH (and a HOME of its own)."""
    script = Path(sys.executable).parent / "kubectl-headwind"
    if not script.exists():
        pytest.fail(f"{script} is missing: install the console script with "
                    f"{sys.executable} -m pip install --no-deps -e .", pytrace=False)
    bin_dir = tmp_path_factory.mktemp("kubectl-bin")
    (bin_dir / "kubectl").symlink_to(kubectl)
    (bin_dir / "kubectl-headwind").symlink_to(script)
    home = tmp_path_factory.mktemp("kubectl-home")

    def call(*args: str, kubeconfig: str | Path | None = None, env: dict | None = None) -> Run:
        environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        if kubeconfig is not None:
            environ["KUBECONFIG"] = str(kubeconfig)
        environ.update(env or {})
        proc = subprocess.run([str(bin_dir / "kubectl"), *args], env=environ,
                              capture_output=True, text=True, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return call


def write_kubeconfig(path: Path, testbed, contexts: dict[str, tuple[str, str]],
                     current: str) -> Path:
    """A kubeconfig for the testbed: ``contexts`` maps a name to (bearer token, namespace)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {"server": testbed.apiserver_url,
                                                     "certificate-authority": testbed.ca_file}}],
        "users": [{"name": name, "user": {"token": token}}
                  for name, (token, _) in contexts.items()],
        "contexts": [{"name": name, "context": {"cluster": "testbed", "user": name,
                                                "namespace": namespace}}
                     for name, (_, namespace) in contexts.items()],
        "current-context": current}))
    return path


@dataclass
class Person:
    username: str  # as the API server knows them
    token: str
    kubeconfig: Path


def _allowed(api, namespace: str, rule: dict) -> bool:
    for resource in rule["resources"]:
        name, _, sub = resource.partition("/")
        for verb in rule["verbs"]:
            review = kube.request(api, "POST",
                                  "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                  body={"apiVersion": "authorization.k8s.io/v1",
                                        "kind": "SelfSubjectAccessReview",
                                        "spec": {"resourceAttributes": {
                                            "namespace": namespace, "verb": verb,
                                            "group": rule["apiGroups"][0], "resource": name,
                                            "subresource": sub}}})
            if not review["status"].get("allowed"):
                return False
    return True


@pytest.fixture
def person(kube_user, namespace, testbed, tmp_path):
    """``person(name, *rules) -> Person``: a ServiceAccount with exactly ``rules`` in the test's
    namespace and a kubeconfig (token, context namespace = the test's) of its own; returned once
    the API server applies its rights."""
    def make(name: str, *rules: dict) -> Person:
        user = kube_user(name, list(rules))
        eventually(lambda: all(_allowed(user.api, namespace, rule) for rule in rules), 15,
                   f"RBAC for {name} in effect")
        config = write_kubeconfig(tmp_path / f"{name}.kubeconfig", testbed,
                                  {name: (user.token, namespace)}, name)
        return Person(user.username, user.token, config)

    return make


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


def names_in(table: str) -> list[str]:
    return [row[0] for row in rows(table)[1:]]


def fields_of(described: str) -> dict[str, str]:
    """``Label:  value`` lines of ``show`` (the indented approvals table left out)."""
    lines = [line for line in described.splitlines() if not line.startswith(" ")]
    return {label: value.strip() for label, _, value in (line.partition(":") for line in lines)}


# --------------------------------------------------------------------------------------------
# The plugin itself
# --------------------------------------------------------------------------------------------


def test_kubectl_finds_the_plugin_and_its_commands(run):
    listed = ok(run("plugin", "list"))
    assert "kubectl-headwind" in listed.out
    help_text = ok(run("headwind", "--help")).out
    for command in ("list", "show", "approve", "reject", "history", "rollback", "radar"):
        assert f"    {command} " in help_text
    assert ok(run("version", "--client")).out.startswith("Client Version: v1.37.2")
    # A usage error is a usage error (exit 2), with no traceback.
    fails(run("headwind", "history", "web"), "KIND/NAME")
    assert run("headwind", "frobnicate").status == 2


def test_the_plugin_imports_no_django():
    probe = ("import sys, approvals.kubectl.cli, approvals.kubectl.commands; "
             "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# list and show
# --------------------------------------------------------------------------------------------


def two_requests(kube_api, namespace) -> tuple[str, str]:
    """A Deployment with two proposals: one Pending, one Rejected; their names."""
    obj = create(kube_api, namespace, "Deployment", "web",
                 {"app": OLD, "sidecar": f"{REPO}-sidecar:2.0.0"}, POLICY)
    pending = propose(kube_api, obj, NEW)
    rejected = propose(kube_api, obj, f"{REPO}-sidecar:2.1.0", container="sidecar")
    ur.set_phase(kube_api, namespace, rejected.name, ur.Phase.REJECTED, message="not now",
                 expect_phases={ur.Phase.PENDING})
    return pending.name, rejected.name


def test_list_has_the_columns_of_kubectl_get_ur(run, kube_api, namespace, person):
    pending, rejected = two_requests(kube_api, namespace)
    reader = person("reader", READ)

    def same_as_kubectl_get(*args: str) -> str:
        plugin = ok(run("headwind", "list", *args, kubeconfig=reader.kubeconfig))
        get = ok(run("get", "ur", *args, kubeconfig=reader.kubeconfig))
        return plugin.out if plugin.out == get.out else ""  # the AGE may tick in between

    table = eventually(lambda: same_as_kubectl_get(), 30, "list == kubectl get ur",
                       interval=0.5)
    assert rows(table)[0] == ["NAME", "KIND", "TARGET", "CONTAINER", "NEW", "POLICY", "PHASE",
                              "AGE"]
    assert sorted(names_in(table)) == sorted([pending, rejected])
    by_name = {row[0]: row for row in rows(table)[1:]}
    assert by_name[pending][1:7] == ["Deployment", "web", "app", NEW, "minor", "Pending"]
    assert by_name[rejected][6] == "Rejected"

    wide = eventually(lambda: same_as_kubectl_get("-o", "wide"), 30, "wide == kubectl get",
                      interval=0.5)
    assert rows(wide)[0] == ["NAME", "KIND", "TARGET", "CONTAINER", "CURRENT", "NEW", "CHART",
                             "VERSION", "POLICY", "PHASE", "AGE"]

    assert names_in(ok(run("headwind", "list", "--pending",
                           kubeconfig=reader.kubeconfig)).out) == [pending]

    listed = json.loads(ok(run("headwind", "-o", "json", "list",
                               kubeconfig=reader.kubeconfig)).out)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == sorted([pending, rejected])
    assert {i["kind"] for i in listed["items"]} == {"UpdateRequest"}
    assert {i["apiVersion"] for i in listed["items"]} == {"headwind.sh/v1alpha1"}
    only = json.loads(ok(run("headwind", "list", "--pending", "-o", "json",
                             kubeconfig=reader.kubeconfig)).out)
    assert [i["metadata"]["name"] for i in only["items"]] == [pending]
    as_yaml = yaml.safe_load(ok(run("headwind", "list", "-oyaml",
                                    kubeconfig=reader.kubeconfig)).out)
    assert as_yaml["kind"] == "List" and len(as_yaml["items"]) == 2
    assert ok(run("headwind", "list", "--pending", "-o", "name",
                  kubeconfig=reader.kubeconfig)).out == f"updaterequest.headwind.sh/{pending}\n"


def test_namespace_context_and_kubeconfig_flags(run, kube_api, namespace, person, testbed,
                                                tmp_path):
    pending, rejected = two_requests(kube_api, namespace)
    reader = person("reader", READ)
    # The current context points at "default", where the reader may list nothing.
    config = write_kubeconfig(tmp_path / "two.kubeconfig", testbed,
                              {"elsewhere": (reader.token, "default"),
                               "here": (reader.token, namespace)}, current="elsewhere")
    fails(run("headwind", "list", kubeconfig=config),
          "Error from server (Forbidden)", 'in the namespace "default"')
    for args in (["--context", "here", "list"], ["list", "--context=here"],
                 ["list", "-n", namespace], ["-n", namespace, "list"], [f"-n={namespace}", "list"],
                 ["list", "--namespace", namespace, "--pending"]):
        listed = ok(run("headwind", *args, kubeconfig=config))
        assert pending in names_in(listed.out), args
    # --kubeconfig instead of $KUBECONFIG; a context that is not there is a clear error.
    listed = ok(run("headwind", "list", "--kubeconfig", str(config), "--context", "here"))
    assert sorted(names_in(listed.out)) == sorted([pending, rejected])
    fails(run("headwind", "list", "--kubeconfig", str(config), "--context", "nowhere"),
          "context 'nowhere' is not in it")
    fails(run("headwind", "list"), "no usable Kubernetes credentials in ~/.kube/config")

    # -A: a namespaced Role cannot list across namespaces; the admin can, as kubectl does.
    fails(run("headwind", "list", "-A", kubeconfig=reader.kubeconfig),
          "Error from server (Forbidden)")

    def same_as_kubectl_get() -> str:
        plugin = ok(run("headwind", "list", "-A", kubeconfig=testbed.kubeconfig))
        get = ok(run("get", "ur", "-A", kubeconfig=testbed.kubeconfig))
        return plugin.out if plugin.out == get.out else ""

    everywhere = eventually(same_as_kubectl_get, 30, "list -A == kubectl get ur -A",
                            interval=0.5)
    assert rows(everywhere)[0][:2] == ["NAMESPACE", "NAME"]
    assert [namespace, pending] in [row[:2] for row in rows(everywhere)]
    fails(run("headwind", "show", pending, "-A", kubeconfig=testbed.kubeconfig),
          "applies to list and radar only")

    # Nothing there: kubectl's own words, on stderr, and success.
    empty = ok(run("headwind", "list", "-n", "kube-public", kubeconfig=testbed.kubeconfig))
    assert empty.out == "" and empty.err == ok(run("get", "ur", "-n", "kube-public",
                                                   kubeconfig=testbed.kubeconfig)).err
    assert empty.err == "No resources found in kube-public namespace.\n"


def test_show_prints_one_request(run, kube_api, namespace, person):
    pending, _ = two_requests(kube_api, namespace)
    reader = person("reader", READ)
    fields = fields_of(ok(run("headwind", "show", pending, kubeconfig=reader.kubeconfig)).out)
    assert fields["Name"] == pending and fields["Namespace"] == namespace
    assert fields["Target"] == f"Deployment {namespace}/web" and fields["Container"] == "app"
    assert fields["Current"] == OLD and fields["New"] == NEW and fields["Policy"] == "minor"
    assert fields["Phase"] == "Pending" and fields["Approvals"] == "0 of 1"
    assert fields["Expires"].endswith("(in 23h)")  # the default approval timeout, 24 h

    obj = json.loads(ok(run("headwind", "show", pending, "-o", "json",
                            kubeconfig=reader.kubeconfig)).out)
    assert obj["metadata"]["name"] == pending and obj["spec"]["newImage"] == NEW
    assert yaml.safe_load(ok(run("headwind", "show", pending, "-o", "yaml",
                                 kubeconfig=reader.kubeconfig)).out)["spec"] == obj["spec"]
    fails(run("headwind", "show", "no-such-request", kubeconfig=reader.kubeconfig),
          f'"no-such-request" not found in namespace "{namespace}"')


# --------------------------------------------------------------------------------------------
# approve (Kubernetes API, proven by admission) and reject (Headwind's API)
# --------------------------------------------------------------------------------------------


def test_two_approvals_with_kubectl_are_carried_out_by_the_operator(
        run, kube_api, namespace, person, operators, celery_worker):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {**POLICY, "headwind.sh/approvals-required": "2"})
    proposal = propose(kube_api, obj, NEW)
    alice = person("alice", READ, WRITE_STATUS, PATCH_DEPLOYMENTS)
    bob = person("bob", READ, WRITE_STATUS, PATCH_DEPLOYMENTS)

    first = ok(run("headwind", "approve", proposal.name, "--comment", "tested in staging",
                   kubeconfig=alice.kubeconfig))
    assert first.out == (f"updaterequest.headwind.sh/{proposal.name} approved by "
                         f"{alice.username} (1 of 2 approvals; 1 more needed)\n")
    status = ur.get(kube_api, namespace, proposal.name)["status"]
    assert [(a["user"], a.get("comment")) for a in status["approvals"]] == [
        (alice.username, "tested in staging")]
    assert status["phase"] == "Pending"
    fails(run("headwind", "approve", proposal.name, kubeconfig=alice.kubeconfig),
          f"{alice.username} already approved")

    second = ok(run("headwind", "approve", proposal.name, "-o", "json",
                    kubeconfig=bob.kubeconfig))
    assert [a["user"] for a in json.loads(second.out)["status"]["approvals"]] == [
        alice.username, bob.username]

    # The leader's pass (every HEADWIND_EXPIRY_INTERVAL, 60 s here) sees two proven approvals,
    # marks the request Approved and queues the update; the worker patches the Deployment.
    wait_image(kube_api, namespace, "Deployment", "web", NEW, timeout=150)
    done = ur.get(kube_api, namespace, proposal.name)["status"]
    assert done["approvedBy"] == f"{alice.username}, {bob.username}"
    eventually(lambda: ur.phase_of(ur.get(kube_api, namespace, proposal.name)) in (
        ur.Phase.COMPLETED, ur.Phase.ROLLED_OUT), 30, "the request Completed")
    shown = ok(run("headwind", "show", proposal.name, kubeconfig=alice.kubeconfig)).out
    assert fields_of(shown)["Approved by"].startswith(f"{alice.username}, {bob.username} at ")
    assert fields_of(shown)["Approvals"] == "2 of 2"
    fails(run("headwind", "approve", proposal.name, kubeconfig=bob.kubeconfig),
          "only Pending requests can be approved")


def test_forged_approvers_and_users_without_rights_are_refused(run, kube_api, namespace,
                                                               person):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD}, POLICY)
    proposal = propose(kube_api, obj, NEW)
    owner = person("owner", READ, WRITE_STATUS, PATCH_DEPLOYMENTS)
    mallory = person("mallory", READ, WRITE_STATUS)  # may write the status, not the Deployment
    reader = person("reader", READ)

    # The plugin always writes the caller's own name; kubectl itself can try another's, and the
    # admission policy refuses it.
    forged = json.dumps([{"op": "add", "path": "/status/approvals",
                          "value": [{"user": "system:serviceaccount:kube-system:admin",
                                     "at": "2026-11-27T10:00:00Z"}]}])
    fails(run("patch", "ur", proposal.name, "--subresource=status", "--type=json", "-p", forged,
              kubeconfig=owner.kubeconfig),
          "ValidatingAdmissionPolicy 'headwind-updaterequests'", "must name its author")
    fails(run("headwind", "approve", proposal.name, kubeconfig=mallory.kubeconfig),
          "Error from server (Forbidden)", "may propose or approve updates for it")
    fails(run("headwind", "approve", proposal.name, kubeconfig=reader.kubeconfig),
          "Error from server (Forbidden)", 'cannot update resource "updaterequests/status"')
    assert not ur.get(kube_api, namespace, proposal.name)["status"].get("approvals")

    # Only a Pending request can be approved.
    ur.set_phase(kube_api, namespace, proposal.name, ur.Phase.REJECTED, message="no",
                 expect_phases={ur.Phase.PENDING})
    fails(run("headwind", "approve", proposal.name, kubeconfig=owner.kubeconfig),
          "is Rejected; only Pending requests can be approved")


@pytest.mark.django_db(transaction=True)
def test_reject_goes_through_headwinds_api(run, kube_api, namespace, person, live_server,
                                           testbed):
    from approvals import cluster
    from approvals.models import AuditEvent

    cluster.use(None)  # the live server's client: the testbed's admin, from the settings
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD}, POLICY)
    proposal = propose(kube_api, obj, NEW)
    owner = person("owner", READ, GET_DEPLOYMENTS, PATCH_DEPLOYMENTS)
    mallory = person("mallory", READ, GET_DEPLOYMENTS)

    refused = fails(run("headwind", "reject", proposal.name, "--reason", "no",
                        "--headwind-url", live_server.url, kubeconfig=mallory.kubeconfig),
                    "Headwind refused (403 forbidden)", f"does not allow {mallory.username} "
                    "to patch deployments.apps")
    assert refused.out == ""
    assert ur.phase_of(ur.get(kube_api, namespace, proposal.name)) == ur.Phase.PENDING

    # What is missing is said plainly, before anything is sent.
    fails(run("headwind", "reject", proposal.name, kubeconfig=owner.kubeconfig),
          "--reason")
    fails(run("headwind", "reject", proposal.name, "--reason", "no",
              kubeconfig=owner.kubeconfig), "pass --headwind-url")
    fails(run("headwind", "reject", proposal.name, "--reason", "no", "--headwind-url",
              "http://headwind.example", kubeconfig=owner.kubeconfig),
          "refusing to send your Kubernetes token to http://headwind.example over plain HTTP")
    fails(run("headwind", "reject", proposal.name, "-n", namespace, "--reason", "no",
              "--headwind-url", live_server.url, kubeconfig=testbed.kubeconfig),
          "has no bearer token", "client certificate")

    rejected = ok(run("headwind", "reject", proposal.name, "--reason", "1.3.0 breaks login",
                      kubeconfig=owner.kubeconfig, env={"HEADWIND_URL": live_server.url}))
    assert rejected.out == (f"updaterequest.headwind.sh/{proposal.name} rejected by "
                            f"{owner.username}: 1.3.0 breaks login\n")
    status = ur.get(kube_api, namespace, proposal.name)["status"]
    assert (status["phase"], status["rejectedBy"], status["message"]) == (
        "Rejected", owner.username, "1.3.0 breaks login")
    assert AuditEvent.objects.filter(actor=owner.username, action="reject",
                                     result="success").exists()
    fails(run("headwind", "reject", proposal.name, "--reason", "again", "--headwind-url",
              live_server.url, kubeconfig=owner.kubeconfig),
          "Headwind refused (409 conflict)", "only Pending requests")


# --------------------------------------------------------------------------------------------
# history and rollback
# --------------------------------------------------------------------------------------------

HISTORY = [
    {"at": "2026-11-27T10:05:00Z", "container": "app", "from": f"{REPO}:1.2.0",
     "to": f"{REPO}:1.1.0", "by": "alice", "request": None, "rollback": True,
     "reason": "1.2 leaks memory"},
    {"at": "2026-11-26T09:00:00Z", "container": "app", "from": f"{REPO}:1.1.0",
     "to": f"{REPO}:1.2.0", "by": "bob", "request": "web-1-2-0-0a1b2c3d4e"},
]
ROLLOUT = {"app": {"from": f"{REPO}:1.2.0", "to": f"{REPO}:1.1.0",
                   "started": "2026-11-27T10:05:00Z", "deadline": "2026-11-27T10:15:00Z",
                   "state": "succeeded", "rollback": True, "by": "alice",
                   "finished": "2026-11-27T10:05:09Z"}}
HOLD = {"app": {"version": "1.1.0", "by": "alice", "at": "2026-11-27T10:05:00Z",
                "reason": "1.2 leaks memory"}}


def test_history_shows_the_annotations_newest_first(run, kube_api, namespace, person):
    create_object(kube_api, namespace, workload("Deployment", "web", f"{REPO}:1.1.0", {
        **POLICY, "headwind.sh/update-history": json.dumps(HISTORY),
        "headwind.sh/rollout": json.dumps(ROLLOUT), "headwind.sh/hold": json.dumps(HOLD),
        "headwind.sh/bad-versions": json.dumps({"app": ["1.3.0"]})}))
    viewer = person("viewer", GET_DEPLOYMENTS)

    text = ok(run("headwind", "history", "deployment/web", kubeconfig=viewer.kubeconfig)).out
    lines = text.splitlines()
    assert lines[0] == f"History of Deployment {namespace}/web, newest first:"
    assert lines[1].split() == ["AT", "CONTAINER", "FROM", "TO", "BY", "NOTE"]
    assert lines[2].split() == ["2026-11-27T10:05:00Z", "app", f"{REPO}:1.2.0", f"{REPO}:1.1.0",
                                "alice", "rollback:", "1.2", "leaks", "memory"]
    assert lines[3].split() == ["2026-11-26T09:00:00Z", "app", f"{REPO}:1.1.0", f"{REPO}:1.2.0",
                                "bob"]
    assert lines[lines.index("Rollouts:") + 2].split()[:4] == [
        "app", "succeeded", f"{REPO}:1.2.0", f"{REPO}:1.1.0"]
    holds = next(i for i, line in enumerate(lines) if line.startswith("Holds"))
    assert lines[holds + 2].split()[:3] == ["app", "1.1.0", "alice"]
    bad = next(i for i, line in enumerate(lines) if line.startswith("Bad versions"))
    assert lines[bad + 2].split() == ["app", "1.3.0"]
    wide = ok(run("headwind", "history", "deploy/web", "-o", "wide",
                  kubeconfig=viewer.kubeconfig)).out.splitlines()
    assert wide[1].split()[-1] == "REQUEST" and wide[3].split()[-1] == "web-1-2-0-0a1b2c3d4e"

    data = json.loads(ok(run("headwind", "history", "deployments/web", "-o", "json",
                             kubeconfig=viewer.kubeconfig)).out)
    assert data["history"] == HISTORY and data["holds"] == HOLD
    assert data["badVersions"] == {"app": ["1.3.0"]} and data["rollouts"] == ROLLOUT
    assert data["historyOn"] is None

    fails(run("headwind", "history", "deployment/nope", kubeconfig=viewer.kubeconfig),
          f'Deployment "nope" not found in namespace "{namespace}"')
    fails(run("headwind", "history", "statefulset/web", kubeconfig=viewer.kubeconfig),
          "Error from server (Forbidden)")  # the viewer may read Deployments only
    fails(run("headwind", "history", "pod/web", kubeconfig=viewer.kubeconfig),
          "unknown workload kind 'pod'")


def test_history_of_a_helmrelease_is_read_from_its_ocirepository(run, kube_api, namespace,
                                                                  testbed):
    chart = "oci://reg.example/charts/podinfo"
    entry = {"at": "2026-11-27T11:00:00Z", "container": "chart", "from": f"{chart}:6.0.0",
             "to": f"{chart}:6.1.0", "by": "alice", "request": "podinfo-6-1-0-0a1b2c3d4e"}
    kube.request(kube_api, "POST", f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{namespace}"
                 "/ocirepositories", body={
                     "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                     "metadata": {"name": "podinfo", "annotations": {
                         "headwind.sh/update-history": json.dumps([entry])}},
                     "spec": {"interval": "5m", "url": chart, "ref": {"tag": "6.1.0"}}})
    kube.request(kube_api, "POST", f"/apis/helm.toolkit.fluxcd.io/v2/namespaces/{namespace}"
                 "/helmreleases", body={
                     "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                     "metadata": {"name": "podinfo", "annotations": {
                         "headwind.sh/policy": "minor",
                         "headwind.sh/hold": json.dumps({"chart": {
                             "version": "6.1.0", "by": "alice", "at": entry["at"]}})}},
                     "spec": {"interval": "5m",
                              "chartRef": {"kind": "OCIRepository", "name": "podinfo"}}})

    text = ok(run("headwind", "history", "hr/podinfo", "-n", namespace,
                  kubeconfig=testbed.kubeconfig)).out.splitlines()
    assert text[0] == (f"History of HelmRelease {namespace}/podinfo (history on OCIRepository "
                       f"{namespace}/podinfo), newest first:")
    assert text[2].split()[:5] == [entry["at"], "chart", entry["from"], entry["to"], "alice"]
    data = json.loads(ok(run("headwind", "history", "helmrelease/podinfo", "-n", namespace,
                             "-o", "json", kubeconfig=testbed.kubeconfig)).out)
    assert data["history"] == [entry]
    assert data["historyOn"] == {"kind": "OCIRepository", "namespace": namespace,
                                 "name": "podinfo"}
    assert data["holds"]["chart"]["version"] == "6.1.0"  # the state stays on the HelmRelease


@pytest.mark.django_db(transaction=True)
def test_rollback_goes_through_headwinds_api(run, kube_api, namespace, person, live_server,
                                             celery_worker):
    from approvals import cluster
    from approvals.models import AuditEvent

    cluster.use(None)
    create_object(kube_api, namespace, workload("Deployment", "app", f"{REPO}:1.0.0", DIRECT))
    for old, new in (("1.0.0", "1.1.0"), ("1.1.0", "1.2.0")):
        queue_update(UpdateCommand(kind="Deployment", namespace=namespace, name="app",
                                   container="app", new_image=f"{REPO}:{new}",
                                   expected_image=f"{REPO}:{old}"))
        wait_image(kube_api, namespace, "Deployment", "app", f"{REPO}:{new}")
    patcher = person("patcher", PATCH_DEPLOYMENTS)
    reader = person("reader", GET_DEPLOYMENTS)

    refused = fails(run("headwind", "rollback", "deployment/app", "--headwind-url",
                        live_server.url, kubeconfig=reader.kubeconfig),
                    "Headwind refused (403 forbidden)",
                    f"does not allow {reader.username} to patch deployments.apps")
    assert refused.out == ""
    assert AuditEvent.objects.filter(actor=reader.username, action="rollback",
                                     result="refused").exists()

    # Without --to: the newest earlier version, the first of rollbackTargets.
    rolled = ok(run("headwind", "rollback", "deployment/app", "--reason", "1.2 leaks memory",
                    kubeconfig=patcher.kubeconfig, env={"HEADWIND_URL": live_server.url}))
    assert f"from {REPO}:1.2.0 to {REPO}:1.1.0 queued" in rolled.out
    wait_image(kube_api, namespace, "Deployment", "app", f"{REPO}:1.1.0")
    annotations = read(kube_api, namespace, "Deployment", "app")["metadata"]["annotations"]
    hold = json.loads(annotations["headwind.sh/hold"])["app"]
    assert (hold["version"], hold["by"], hold["reason"]) == ("1.1.0", patcher.username,
                                                             "1.2 leaks memory")
    history = json.loads(ok(run("headwind", "history", "deploy/app", "-o", "json",
                                kubeconfig=patcher.kubeconfig)).out)
    newest = history["history"][0]
    assert (newest["rollback"], newest["by"], newest["to"], newest["reason"]) == (
        True, patcher.username, f"{REPO}:1.1.0", "1.2 leaks memory")
    assert history["holds"]["app"]["by"] == patcher.username

    # --to (a tag from the history) and -c, with the API's answer as JSON.
    answer = json.loads(ok(run("headwind", "rollback", "deployment/app", "--to", "1.0.0",
                               "-c", "app", "-o", "json", "--headwind-url", live_server.url,
                               kubeconfig=patcher.kubeconfig)).out)
    assert answer["rollback"]["to"] == f"{REPO}:1.0.0"
    assert answer["rollback"]["from"] == f"{REPO}:1.1.0"
    wait_image(kube_api, namespace, "Deployment", "app", f"{REPO}:1.0.0")
    fails(run("headwind", "rollback", "deployment/app", "--to", "9.9.9", "--headwind-url",
              live_server.url, kubeconfig=patcher.kubeconfig),
          "Headwind refused (409 conflict)", "9.9.9 is not in the history")
    fails(run("headwind", "rollback", "deployment/app", "-c", "nope", "--headwind-url",
              live_server.url, kubeconfig=patcher.kubeconfig), "has no container 'nope'")
    fails(run("headwind", "rollback", "deployment/app", "--headwind-url", "http://127.0.0.1:9",
              kubeconfig=patcher.kubeconfig), "cannot reach Headwind at http://127.0.0.1:9")
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{REPO}:1.0.0"


# --------------------------------------------------------------------------------------------
# radar
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_radar_shows_how_far_behind_each_container_is(run, kube_api, namespace, testbed, person,
                                                      push_image, notification_sink,
                                                      webhook_relay, operators, live_server):
    """The session's leading operator keeps the inventory and runs the radar from real pushes;
    the plugin reads it from Headwind's API with the viewer's own token."""
    from approvals import cluster

    cluster.use(None)
    app, sidecar = f"{namespace}/app", f"{namespace}/sidecar"
    push_image(app, "1.0.0")
    push_image(sidecar, "3.0.0")
    create(kube_api, namespace, "Deployment", "web",
           {"app": f"{testbed.registry}/{app}:1.0.0",
            "sidecar": f"{testbed.registry}/{sidecar}:3.0.0"}, {"headwind.sh/policy": "minor"})
    push_and_deliver(push_image, notification_sink, app, "1.1.0")
    push_and_deliver(push_image, notification_sink, app, "2.0.0")
    viewer = person("viewer", LIST_DEPLOYMENTS)
    stranger = person("stranger", READ)  # may read UpdateRequests, not list Deployments
    env = {"HEADWIND_URL": live_server.url}

    def by_container(table: str) -> dict[str, list[str]]:
        return {row[2]: row for row in rows(table)[1:]}

    def surveyed() -> str | None:
        table = ok(run("headwind", "radar", kubeconfig=viewer.kubeconfig, env=env)).out
        found = by_container(table)
        return table if ("app" in found and found["app"][4] == "1.1.0"
                         and "sidecar" in found and found["sidecar"][4] != "<unknown>") \
            else None

    table = eventually(surveyed, 60, "the radar of web in kubectl headwind radar",
                       interval=0.5)
    assert rows(table)[0] == ["KIND", "NAME", "CONTAINER", "RUNNING", "NEWEST", "BEHIND",
                              "POLICY"]
    found = by_container(table)
    assert found["app"] == ["Deployment", "web", "app", "1.0.0", "1.1.0", "1", "minor"]
    assert found["sidecar"] == ["Deployment", "web", "sidecar", "3.0.0", "3.0.0", "0", "minor"]

    # Only what the policy would move; -o wide adds the newest of any kind (the major).
    behind = ok(run("headwind", "radar", "--behind", "policy", kubeconfig=viewer.kubeconfig,
                    env=env)).out
    assert [row[2] for row in rows(behind)[1:]] == ["app"]
    wide = rows(ok(run("headwind", "radar", "-o", "wide", "--headwind-url", live_server.url,
                       kubeconfig=viewer.kubeconfig)).out)
    assert wide[0][7:] == ["NEWEST-ANY", "BEHIND-ANY", "RELEASED", "WAITING-UNTIL",
                           "SCHEDULED", "HELD", "OPEN", "CHECKED", "IMAGE"]
    app_row = next(row for row in wide[1:] if row[2] == "app")
    assert app_row[7:9] == ["2.0.0", "2"]
    assert app_row[-1] == f"{testbed.registry}/{app}:1.0.0"

    data = json.loads(ok(run("headwind", "radar", "-o", "json", kubeconfig=viewer.kubeconfig,
                             env=env)).out)
    items = {item["container"]: item for item in data["items"]}
    assert set(items) == {"app", "sidecar"}
    assert {item["namespace"] for item in data["items"]} == {namespace}
    assert (items["app"]["radar"]["newestAllowed"], items["app"]["radar"]["newestAny"],
            items["app"]["radar"]["behindPolicy"]) == ("1.1.0", "2.0.0", 1)
    as_yaml = yaml.safe_load(ok(run("headwind", "radar", "-oyaml", kubeconfig=viewer.kubeconfig,
                                    env=env)).out)
    assert as_yaml == data

    # The rights are the user's: listing Deployments in the namespace, or everywhere for -A.
    fails(run("headwind", "radar", kubeconfig=stranger.kubeconfig, env=env),
          "Headwind refused (403 forbidden)",
          f"does not allow {stranger.username} to list deployments in namespace {namespace}")
    fails(run("headwind", "radar", "-A", kubeconfig=viewer.kubeconfig, env=env),
          "Headwind refused (403 forbidden)", "all namespaces")
    fails(run("headwind", "radar", "-n", namespace, kubeconfig=testbed.kubeconfig, env=env),
          "has no bearer token")
    # Nothing of that kind is managed here: kubectl's words for nothing found.
    empty = ok(run("headwind", "radar", "--kind", "sts", "--headwind-url", live_server.url,
                   kubeconfig=viewer.kubeconfig))
    assert (empty.out, empty.err) == ("", f"No managed workloads found in {namespace} "
                                          "namespace.\n")
    fails(run("headwind", "radar", "--kind", "pod", kubeconfig=viewer.kubeconfig, env=env),
          "unknown workload kind 'pod'")
