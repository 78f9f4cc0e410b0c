"""What each ``kubectl headwind`` sub-command does. Each takes the :class:`Session` and
returns the exit status; expected failures raise :class:`~.errors.Failure` (or let a
:class:`operator_app.kube.KubeError` through, which the CLI prints as kubectl would)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote, urlencode

from operator_app import kube
from operator_app.core.rollout import ANNOTATION_BAD_VERSIONS, ANNOTATION_HOLD, ANNOTATION_ROLLOUT
from operator_app.workloads import HELMRELEASE, KINDS, SOURCE_KINDS, TargetKind

from . import output
from .errors import Failure
from .headwind import CLIENT_CERTIFICATE, HeadwindApi, base_url

GROUP, VERSION, PLURAL = "headwind.sh", "v1alpha1", "updaterequests"
RESOURCE = f"{PLURAL}.{GROUP}"  # as the API server names it in messages
NAME_PREFIX = f"updaterequest.{GROUP}"  # as `kubectl get -o name` prints one
FIELD_MANAGER = "kubectl-headwind"
UPDATE_HISTORY = "headwind.sh/update-history"  # written by operator_app.apply, newest first
STATE = {"rollouts": ANNOTATION_ROLLOUT, "holds": ANNOTATION_HOLD,
         "badVersions": ANNOTATION_BAD_VERSIONS}
CONFLICT_RETRIES = 5
SHORT_KINDS = {"deploy": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet", "cj": "CronJob",
               "hr": "HelmRelease"}


class Session:
    """The parsed command line, and the user's cluster (connected on first use)."""

    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> None:
        self.args, self.out, self.err = args, out, err

    @functools.cached_property
    def user(self) -> kube.UserClient:
        return kube.user_client(self.args.kubeconfig, self.args.context)

    @property
    def api(self):
        return self.user.api

    @property
    def namespace(self) -> str:
        return self.args.namespace or self.user.namespace

    @property
    def output(self) -> str:
        return self.args.output or ""

    def headwind(self) -> HeadwindApi:
        """Headwind's API as this user: their bearer token, at the URL they named."""
        url = base_url(self.args.headwind_url or os.environ.get("HEADWIND_URL"))
        token = kube.bearer_token(self.api)
        if not token:
            raise Failure(CLIENT_CERTIFICATE.format(context=self.user.context))
        return HeadwindApi(url, token)

    def close(self) -> None:
        if "user" in self.__dict__:
            self.user.api.close()


# --------------------------------------------------------------------------------------------
# UpdateRequests
# --------------------------------------------------------------------------------------------


def request_path(namespace: str | None, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}"
    path += f"/namespaces/{namespace}/{PLURAL}" if namespace else f"/{PLURAL}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def phase(obj: dict) -> str:
    """As Headwind reads it: no phase written yet is Pending."""
    return (obj.get("status") or {}).get("phase") or "Pending"


def read_request(session: Session, name: str) -> dict:
    try:
        return kube.request(session.api, "GET", request_path(session.namespace, name))
    except kube.KubeError as exc:
        if exc.status == 404:
            raise Failure(f'{RESOURCE} "{name}" not found in namespace '
                          f'"{session.namespace}"') from None
        raise


def list_requests(session: Session) -> int:
    """``list``: the columns of ``kubectl get ur``, computed by the API server from the CRD's
    additionalPrinterColumns; ``--pending`` keeps Pending ones."""
    namespace = None if session.args.all_namespaces else session.namespace
    path = request_path(namespace)
    keep: Callable[[dict], bool] = (lambda obj: phase(obj) == "Pending") \
        if session.args.pending else (lambda obj: True)
    try:
        if session.output in ("json", "yaml", "name"):
            listed = kube.request(session.api, "GET", path)
        else:
            listed = kube.request_table(session.api, path, query={"includeObject": "Object"})
    except kube.KubeError as exc:
        if exc.status == 404:
            raise Failure(f"this cluster serves no {RESOURCE}/{VERSION}: Headwind's CRD is not "
                          "installed (deploy/crds/)") from None
        raise

    if session.output in ("json", "yaml", "name"):
        items = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "UpdateRequest", **item}
                 for item in listed.get("items") or [] if keep(item)]
        if session.output == "name":
            session.out.writelines(f"{NAME_PREFIX}/{item['metadata']['name']}\n"
                                   for item in items)
        else:
            output.emit({"apiVersion": "v1", "kind": "List", "items": items,
                         "metadata": {"resourceVersion": ""}}, session.output, session.out)
        return 0

    rows = [row for row in listed.get("rows") or [] if keep(row.get("object") or {})]
    if not rows:
        what = "pending UpdateRequests" if session.args.pending else "resources"
        where = f" in {namespace} namespace." if namespace else ""  # as kubectl says it
        session.err.write(f"No {what} found{where}\n")
        return 0
    wide = session.output == "wide"
    columns = [(index, column) for index, column in enumerate(listed.get("columnDefinitions")
                                                              or [])
               if wide or not column.get("priority")]
    headers = [column["name"].upper() for _, column in columns]
    body = []
    for row in rows:
        cells = row.get("cells") or []
        values = [cells[index] if index < len(cells) else None for index, _ in columns]
        if namespace is None:
            values.insert(0, ((row.get("object") or {}).get("metadata") or {}).get("namespace"))
        body.append(values)
    session.out.write(output.table((["NAMESPACE"] if namespace is None else []) + headers, body))
    return 0


def show(session: Session) -> int:
    obj = read_request(session, session.args.name)
    if session.output in ("json", "yaml"):
        output.emit(obj, session.output, session.out)
    elif session.output == "name":
        session.out.write(f"{NAME_PREFIX}/{obj['metadata']['name']}\n")
    else:
        session.out.write(describe(obj))
    return 0


def _distinct_approvers(obj: dict) -> list[str]:
    users: list[str] = []
    for entry in (obj.get("status") or {}).get("approvals") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if isinstance(user, str) and user and user not in users:
            users.append(user)
    return users


def _required(obj: dict) -> int:
    try:
        return max(1, int((obj.get("spec") or {}).get("approvalsRequired") or 1))
    except (TypeError, ValueError):
        return 1


def describe(obj: dict) -> str:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ref, chart = spec.get("targetRef") or {}, spec.get("chart") or {}
    namespace = meta.get("namespace", "")
    approvals = [a for a in status.get("approvals") or [] if isinstance(a, dict)]

    def by(who: str, at: str) -> str | None:
        return f"{status[who]} at {status.get(at) or '?'}" if status.get(who) else None

    width = len("Superseded by:") + 2
    text = output.fields(width=width, pairs=[
        ("Name", meta.get("name")), ("Namespace", namespace),
        ("Target", f"{ref.get('kind', '?')} {ref.get('namespace') or namespace}/"
                   f"{ref.get('name', '?')}"),
        ("Container", spec.get("containerName")),
        ("Chart", f"{chart.get('name')} {chart.get('currentVersion')} -> "
                  f"{chart.get('newVersion')}" if chart else None),
        ("Current", spec.get("currentImage")), ("New", spec.get("newImage")),
        ("New digest", spec.get("newDigest")), ("Policy", spec.get("policy")),
        ("Source", spec.get("source")), ("Reason", spec.get("reason")),
        ("Phase", phase(obj)), ("Message", status.get("message")),
        ("Approvals", f"{len(_distinct_approvers(obj))} of {_required(obj)}"),
    ])
    if approvals:
        rows = [(a.get("user"), a.get("at"), a.get("comment")) for a in approvals]
        text += "".join(f"  {line}\n" for line in
                        output.table(("USER", "AT", "COMMENT"), rows).splitlines())
    text += output.fields(width=width, pairs=[
        ("Approved by", by("approvedBy", "approvedAt")),
        ("Rejected by", by("rejectedBy", "rejectedAt")),
        ("Superseded by", status.get("supersededBy")),
        ("Completed", status.get("completedAt")),
        ("Rollout", (status.get("rollout") or {}).get("message")),
        ("Expires", output.when(spec.get("expiresAt"))),
        ("Created", output.when(meta.get("creationTimestamp"))),
    ])
    return text


def whoami(session: Session) -> str:
    """Who the API server says this user is: a SelfSubjectReview (``kubectl auth whoami``)."""
    try:
        review = kube.request(session.api, "POST",
                              "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                              body={"apiVersion": "authentication.k8s.io/v1",
                                    "kind": "SelfSubjectReview"},
                              query={"fieldManager": FIELD_MANAGER})
    except kube.KubeError as exc:
        if exc.status == 404:
            raise Failure("this API server has no SelfSubjectReview (authentication.k8s.io/v1, "
                          "Kubernetes 1.28 or later), so it cannot say who you are") from None
        raise
    user = ((review.get("status") or {}).get("userInfo") or {}).get("username")
    if not user:
        raise Failure("the API server did not say who you are (SelfSubjectReview)")
    return user


def _check_approvable(obj: dict, user: str) -> None:
    meta = obj.get("metadata") or {}
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    if phase(obj) != "Pending":
        raise Failure(f"{key} is {phase(obj)}; only Pending requests can be approved")
    expires = output.parse_time((obj.get("spec") or {}).get("expiresAt"))
    if expires is not None and expires <= datetime.now(UTC):
        raise Failure(f"{key} expired at {obj['spec']['expiresAt']}; Headwind marks it Expired "
                      "and proposes the update again on the next push or poll")
    if user in _distinct_approvers(obj):
        raise Failure(f"{user} already approved {key}; it needs {_required(obj)} different "
                      "approvers")


def approve(session: Session) -> int:
    """Append ``{user, at, comment}`` to ``status.approvals`` through the status subresource,
    guarded by the resourceVersion that was read (a 409 reads and checks again). The admission
    policy admits the entry only if ``user`` is the caller and the caller may patch the
    target; Headwind's operator then carries the approval out."""
    name = session.args.name
    user = whoami(session)
    for _attempt in range(CONFLICT_RETRIES):
        obj = read_request(session, name)
        _check_approvable(obj, user)
        status = dict(obj.get("status") or {})
        entry = {"user": user, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if session.args.comment:
            entry["comment"] = session.args.comment
        status["approvals"] = [*(status.get("approvals") or []), entry]  # earlier ones as read
        try:
            updated = kube.request(session.api, "PUT",
                                   request_path(session.namespace, name, "status"),
                                   body={**obj, "status": status},
                                   query={"fieldManager": FIELD_MANAGER})
        except kube.KubeError as exc:
            if exc.status == 409:
                continue  # someone else wrote it meanwhile: read, check and try again
            if exc.status == 404:
                raise Failure(f'{RESOURCE} "{name}" not found in namespace '
                              f'"{session.namespace}"') from None
            raise
        break
    else:
        raise Failure(f"{session.namespace}/{name} kept changing while approving; try again")

    if session.output in ("json", "yaml"):
        output.emit(updated, session.output, session.out)
        return 0
    count, required = len(_distinct_approvers(updated)), _required(updated)
    then = "Headwind applies it on its next pass" if count >= required else \
        f"{required - count} more needed"
    session.out.write(f"{NAME_PREFIX}/{name} approved by {user} ({count} of {required} "
                      f"approvals; {then})\n")
    return 0


def reject(session: Session) -> int:
    """Through Headwind's API (see docs/kubectl.md): the Kubernetes API offers no proven way for
    a person to record a rejection."""
    name = session.args.name
    headwind = session.headwind()
    answer = headwind.post(f"/api/v1/updates/{quote(session.namespace)}/{quote(name)}/reject",
                           {"reason": session.args.reason})
    if session.output in ("json", "yaml"):
        output.emit(answer, session.output, session.out)
    else:
        session.out.write(f"{NAME_PREFIX}/{name} rejected by "
                          f"{answer.get('rejectedBy') or 'you'}: {session.args.reason}\n")
    return 0


# --------------------------------------------------------------------------------------------
# Workloads: history and rollback
# --------------------------------------------------------------------------------------------


def workload_kind(text: str) -> TargetKind:
    key = text.lower().split(".", 1)[0]
    for kind in KINDS.values():
        if key in (kind.kind.lower(), kind.plural) or SHORT_KINDS.get(key) == kind.kind:
            return kind
    raise Failure(f"unknown workload kind {text!r}; one of: deployment (deploy), statefulset "
                  "(sts), daemonset (ds), cronjob (cj), helmrelease (hr)")


def workload(text: str) -> tuple[TargetKind, str]:
    kind_text, slash, name = text.partition("/")
    if not slash or not kind_text or not name or "/" in name:
        raise Failure(f"name the workload as KIND/NAME, e.g. deployment/web (not {text!r})", 2)
    return workload_kind(kind_text), name


def _read(session: Session, kind: TargetKind, namespace: str, name: str) -> dict | None:
    try:
        return kube.request(session.api, "GET", kind.object_path(namespace, name))
    except kube.KubeError as exc:
        if exc.status == 404:
            return None
        raise


def _json_annotation(annotations: dict, key: str, expected: type, problems: list[str]):
    text = annotations.get(key)
    if not text:
        return expected()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, expected):
        problems.append(f"{key} is not the JSON {expected.__name__} Headwind writes")
        return expected()
    return value


def history(session: Session) -> int:
    """``history KIND/NAME``: ``headwind.sh/update-history`` (newest first) from where Headwind
    writes it (a HelmRelease with an OCIRepository chart: that OCIRepository, as
    approvals.rollbacks._history reads it), and the target's rollout, hold and bad-versions."""
    kind, name = workload(session.args.target)
    namespace = session.namespace
    obj = _read(session, kind, namespace, name)
    if obj is None:
        raise Failure(f'{kind.kind} "{name}" not found in namespace "{namespace}"')
    written = obj
    if kind is HELMRELEASE:
        location = kind.locate(obj, "chart", lambda source_kind, ns, source_name: _read(
            session, SOURCE_KINDS[source_kind], ns, source_name))
        written = location.obj if location is not None else obj
    problems: list[str] = []
    entries = [entry for entry in _json_annotation(
        (written.get("metadata") or {}).get("annotations") or {}, UPDATE_HISTORY, list, problems)
        if isinstance(entry, dict)]
    if session.args.container:
        entries = [e for e in entries if e.get("container") == session.args.container]
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    state = {key: _json_annotation(annotations, annotation, dict, problems)
             for key, annotation in STATE.items()}
    if session.args.container:
        state = {key: {c: v for c, v in values.items() if c == session.args.container}
                 for key, values in state.items()}
    where = None
    if written is not obj:
        wmeta = written.get("metadata") or {}
        where = {"kind": written.get("kind", "OCIRepository"),
                 "namespace": wmeta.get("namespace"), "name": wmeta.get("name")}
    for problem in problems:
        session.err.write(f"warning: {problem}\n")

    if session.output in ("json", "yaml"):
        output.emit({"kind": kind.kind, "namespace": namespace, "name": name,
                     "historyOn": where, "history": entries, **state},
                    session.output, session.out)
        return 0
    session.out.write(_history_text(kind, namespace, name, where, entries, state,
                                    wide=session.output == "wide"))
    return 0


def _history_text(kind: TargetKind, namespace: str, name: str, where: dict | None,
                  entries: list[dict], state: dict, *, wide: bool) -> str:
    title = f"{kind.kind} {namespace}/{name}"
    if where:
        title += f" (history on {where['kind']} {where['namespace']}/{where['name']})"
    if not entries:
        text = f"No update history on {title}.\n"
    else:
        headers = ["AT", "CONTAINER", "FROM", "TO", "BY", "NOTE"] + (["REQUEST"] if wide else [])
        rows = []
        for entry in entries:
            reason = entry.get("reason")
            note = ("rollback" + (f": {reason}" if reason else "")) if entry.get("rollback") \
                else ""
            row = [entry.get("at"), entry.get("container"), entry.get("from"), entry.get("to"),
                   entry.get("by"), note]
            rows.append(row + ([entry.get("request")] if wide else []))
        text = f"History of {title}, newest first:\n" + output.table(headers, rows)
    rollouts = state["rollouts"]
    if rollouts:
        rows = [(slot, r.get("state"), r.get("from"), r.get("to"), r.get("started"),
                 r.get("finished") or r.get("deadline"), r.get("by"), r.get("reason"))
                for slot, r in rollouts.items() if isinstance(r, dict)]
        text += "\nRollouts:\n" + output.table(
            ("CONTAINER", "STATE", "FROM", "TO", "STARTED", "FINISHED/DEADLINE", "BY", "REASON"),
            rows)
    holds = state["holds"]
    if holds:
        rows = [(slot, h.get("version"), h.get("by"), h.get("at"), h.get("reason"))
                for slot, h in holds.items() if isinstance(h, dict)]
        text += "\nHolds (a manual rollback pins these; nothing moves them until released):\n"
        text += output.table(("CONTAINER", "VERSION", "BY", "AT", "REASON"), rows)
    bad = state["badVersions"]
    if bad:
        rows = [(slot, ", ".join(map(str, versions)) if isinstance(versions, list)
                 else versions) for slot, versions in bad.items()]
        text += "\nBad versions (never applied again):\n"
        text += output.table(("CONTAINER", "VERSIONS"), rows)
    return text


def rollback(session: Session) -> int:
    """``rollback KIND/NAME``: Headwind's API queues the rollback on its Celery path (audited,
    guarded by the image it replaces, and the container held there). Without ``--to``: the
    newest earlier version, the first of the container's ``rollbackTargets``."""
    kind, name = workload(session.args.target)
    namespace = session.namespace
    headwind = session.headwind()
    path = f"/api/v1/workloads/{quote(namespace)}/{kind.kind}/{quote(name)}"
    container, to = session.args.container, session.args.to
    if not to:
        state = headwind.get(path)
        slots = [s for s in state.get("containers") or [] if isinstance(s, dict)]
        if container:
            slot = next((s for s in slots if s.get("name") == container), None)
            if slot is None:
                raise Failure(f"{kind.kind} {namespace}/{name} has no container {container!r}; "
                              f"it has: {', '.join(s.get('name', '?') for s in slots)}")
        elif len(slots) == 1:
            slot = slots[0]
        else:
            raise Failure(f"{kind.kind} {namespace}/{name} has {len(slots)} containers; name "
                          f"one with -c ({', '.join(s.get('name', '?') for s in slots)})")
        targets = slot.get("rollbackTargets") or []
        if not targets:
            raise Failure(f"{kind.kind} {namespace}/{name} container {slot.get('name')} has no "
                          "earlier version in its update history to roll back to")
        container, to = slot.get("name"), targets[0]
    body = {"to": to}
    if container:
        body["container"] = container
    if session.args.reason:
        body["reason"] = session.args.reason
    answer = headwind.post(f"{path}/rollback", body)
    if session.output in ("json", "yaml"):
        output.emit(answer, session.output, session.out)
    else:
        session.out.write((answer.get("message") or "rollback queued") + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# The radar: how far behind each managed container is
# --------------------------------------------------------------------------------------------

RADAR_PAGE_SIZE = 200  # the API's largest page (approvals.api.MAX_PAGE_SIZE)
RADAR_MAX_PAGES = 500  # 100,000 containers: a bound, so a misbehaving server cannot loop us
UNKNOWN = "<unknown>"  # not surveyed yet (the radar pass has not reached it)
NONE = "<none>"  # an empty cell, as kubectl prints one in custom columns


def running_version(reference: object) -> str:
    """The running tag (or chart version) of a reference, as the Workloads page shows it
    (``approvals.models.Workload.version``): ``reg/team/app:1.2.0@sha256:...`` -> ``1.2.0``."""
    text = str(reference or "").partition("@")[0]
    tail = text.rsplit("/", 1)[-1]
    return tail.rpartition(":")[2] if ":" in tail else tail


def radar_items(session: Session, namespace: str | None) -> list[dict]:
    """Every page of ``GET /api/v1/workloads`` (the inventory the leading operator keeps, one
    item per container or chart), filtered by the server: Headwind answers from its database,
    not the cluster, so the user's RBAC is asked there (``list`` Deployments in the namespace,
    or in all namespaces for ``-A``)."""
    query: dict[str, object] = {"page_size": RADAR_PAGE_SIZE}
    if namespace:
        query["namespace"] = namespace
    if session.args.behind:
        query["behind"] = session.args.behind
    if session.args.kind:
        query["kind"] = workload_kind(session.args.kind).kind
    headwind = session.headwind()
    items: list[dict] = []
    for page in range(1, RADAR_MAX_PAGES + 1):
        answer = headwind.get("/api/v1/workloads?" + urlencode({**query, "page": page}))
        batch = [item for item in answer.get("items") or [] if isinstance(item, dict)]
        items += batch
        total = answer.get("total")
        if not batch or not isinstance(total, int) or len(items) >= total:
            break
    return items


def _radar_row(item: dict, *, wide: bool, all_namespaces: bool) -> list[object]:
    radar = item.get("radar") if isinstance(item.get("radar"), dict) else None
    running = running_version(item.get("current"))
    if radar is None:
        newest, behind = UNKNOWN, UNKNOWN
    else:
        newest = radar.get("newestAllowed") or running  # nothing newer the policy accepts
        behind = radar.get("behindPolicy") or 0
    row: list[object] = ([item.get("namespace")] if all_namespaces else []) + [
        item.get("kind"), item.get("name"), item.get("container"), running, newest, behind,
        item.get("policy") or NONE]
    if not wide:
        return row
    now = datetime.now(UTC)
    radar = radar or {}

    def age(key: str) -> str:
        moment = output.parse_time(radar.get(key))
        return output.human_duration((now - moment).total_seconds()) if moment else NONE

    surveyed = bool(radar)
    return row + [
        (radar.get("newestAny") or running) if surveyed else UNKNOWN,
        (radar.get("behindAny") or 0) if surveyed else UNKNOWN,
        age("runningReleased"), radar.get("waitingUntil") or NONE,
        item.get("scheduledFor") or NONE, bool(item.get("held")),
        item.get("openRequests") or 0, age("checkedAt"), item.get("current") or NONE,
    ]


def radar(session: Session) -> int:
    """``radar``: per managed container, the running version, the newest one its policy
    accepts and how many releases it is behind (``-o wide``: also the newest of any kind, the
    running version's age, a release-age wait, a maintenance-window schedule, open requests,
    when the repository was last checked, the whole reference)."""
    namespace = None if session.args.all_namespaces else session.namespace
    items = radar_items(session, namespace)
    if session.output in ("json", "yaml"):
        output.emit({"items": items}, session.output, session.out)
        return 0
    if not items:
        where = f" in {namespace} namespace" if namespace else ""
        session.err.write(f"No managed workloads found{where}.\n")
        return 0
    wide = session.output == "wide"
    headers = (["NAMESPACE"] if namespace is None else []) + [
        "KIND", "NAME", "CONTAINER", "RUNNING", "NEWEST", "BEHIND", "POLICY"]
    if wide:
        headers += ["NEWEST-ANY", "BEHIND-ANY", "RELEASED", "WAITING-UNTIL", "SCHEDULED",
                    "HELD", "OPEN", "CHECKED", "IMAGE"]
    session.out.write(output.table(headers, [
        _radar_row(item, wide=wide, all_namespaces=namespace is None) for item in items]))
    return 0


COMMANDS: dict[str, Callable[[Session], int]] = {
    "list": list_requests, "show": show, "approve": approve, "reject": reject,
    "history": history, "rollback": rollback, "radar": radar,
}
