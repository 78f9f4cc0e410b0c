"""Starts and stops the testbed: etcd, kube-apiserver, controller-manager, scheduler, kwok, two
registries (basic and bearer auth), a Helm chart repository server, Redis and PostgreSQL, all on
loopback with ephemeral ports; Headwind's CRDs and Flux's (tests/testbed/flux-crds/) are applied.

Everything a running testbed needs to be found again (pids, ports, credentials) lives in
``state.json`` inside its state directory, so ``down`` can stop exactly what ``up`` started.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import build, certs, registry, tokenserver

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "deploy" / "crds"
FLUX_CRD_DIR = Path(__file__).resolve().parent / "flux-crds"  # Flux's real CRDs, byte for byte
ADMISSION_DIR = REPO_ROOT / "deploy" / "admission"
KWOK_STAGE_DIR = Path(__file__).resolve().parent / "kwok-stages"
DEFAULT_STATE_DIR = Path(os.environ.get("HEADWIND_TESTBED_DIR", "/tmp/headwind-testbed"))
NODE_NAME = "kwok-node-0"


class TestbedError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Component:
    name: str
    pid: int
    log: str
    started: str  # /proc/<pid>/stat start time: tells our process from a later one with its pid
    argv: list[str] = field(default_factory=list)  # to start it again (restart)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: How it is asked to stop. PostgreSQL's SIGTERM is a "smart" shutdown that waits for every
    #: client to disconnect; SIGINT is its "fast" one (clients are disconnected, clean stop).
    stop_signal: str = "SIGTERM"


@dataclass
class TestbedState:
    directory: str
    kubeconfig: str = ""
    apiserver_url: str = ""
    etcd_url: str = ""
    registry: str = ""
    token_registry: str = ""
    registry_user: str = ""
    registry_password: str = ""
    notify_token: str = ""
    redis_url: str = ""
    ca_file: str = ""
    token_realm: str = ""
    chart_repo_url: str = ""  # http://127.0.0.1:<port>; repositories live under /public, /private
    chart_repo_user: str = ""  # HTTP Basic credentials for /private/...
    chart_repo_password: str = ""
    chart_repo_dir: str = ""  # the served directory: <dir>/public/<repo>/index.yaml, ...
    #: postgres://headwind:<password>@127.0.0.1:<port>/headwind (a throwaway cluster).
    database_url: str = ""
    postgres_data_dir: str = ""  # <dir>/postgres, or a directory of its own (see _start_postgres)
    kubernetes_version: str = build.KUBERNETES_VERSION
    components: list[Component] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": self.kubeconfig,
            "HEADWIND_TESTBED_REGISTRY": self.registry,
            "HEADWIND_TESTBED_TOKEN_REGISTRY": self.token_registry,
            "HEADWIND_TESTBED_REGISTRY_USER": self.registry_user,
            "HEADWIND_TESTBED_REGISTRY_PASSWORD": self.registry_password,
            "HEADWIND_TESTBED_NOTIFY_TOKEN": self.notify_token,
            "REDIS_URL": self.redis_url,
            "HEADWIND_REGISTRY_CA_FILE": self.ca_file,
            "HEADWIND_TESTBED_CHART_REPO_URL": self.chart_repo_url,
            "HEADWIND_TESTBED_CHART_REPO_USER": self.chart_repo_user,
            "HEADWIND_TESTBED_CHART_REPO_PASSWORD": self.chart_repo_password,
            "HEADWIND_TESTBED_CHART_REPO_DIR": self.chart_repo_dir,
            # Not DATABASE_URL itself: sourcing env.sh must not move a demo or a test run off
            # its own database. DATABASE_URL=$HEADWIND_TESTBED_DATABASE_URL uses it.
            "HEADWIND_TESTBED_DATABASE_URL": self.database_url,
        }

    def export_lines(self) -> str:
        return "".join(f"export {key}='{value}'\n" for key, value in self.env().items())

    def save(self) -> None:
        path = Path(self.directory) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        (Path(self.directory) / "env.sh").write_text(self.export_lines())

    @classmethod
    def load(cls, directory: Path) -> TestbedState:
        data = json.loads((directory / "state.json").read_text())
        data["components"] = [Component(**c) for c in data.get("components", [])]
        return cls(**data)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(component: Component) -> bool:
    """True when the pid still runs *our* process (pids get reused after a crash)."""
    fields = _proc_stat(component.pid)
    return bool(fields) and fields[0] != "Z" and fields[19] == component.started


class Testbed:
    """One testbed: :meth:`up` starts it; :func:`stop` ends it by the pids in its state file."""

    def __init__(self, directory: Path, *, notify_urls: list[str] | None = None,
                 cluster_extras: bool = True) -> None:
        self.dir = directory
        self.notify_urls = list(notify_urls or [])
        self.cluster_extras = cluster_extras
        self.state = TestbedState(directory=str(directory))

    # -- process handling -------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], extra_env: dict | None = None, *,
               stop_signal: str = "SIGTERM") -> Component:
        component = _launch(self.dir, name, argv, extra_env or {}, stop_signal)
        self.state.components.append(component)
        self.state.save()
        return component

    def _wait(self, component: Component, check, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not _alive(component):
                raise TestbedError(
                    f"{component.name} exited during start-up; last log lines:\n"
                    f"{log_tail(Path(component.log))}"
                )
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
                last_error = str(exc)
            time.sleep(0.2)
        raise TestbedError(
            f"{component.name} not ready after {timeout:.0f}s ({last_error}); last log lines:\n"
            f"{log_tail(Path(component.log))}"
        )

    # -- components -------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        etcd = self._spawn("etcd", [
            str(build.bin_path("etcd")), "--name=headwind", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=headwind=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn",
        ])
        self.state.etcd_url = url
        self._wait(etcd, lambda: _http_ok(f"{url}/health"))

    def _write_pki(self) -> None:
        pki = self.dir / "pki"
        pki.mkdir()
        ca = self._ca = certs.CertificateAuthority()
        self.state.ca_file = str(ca.write(pki))
        serving, serving_key = ca.issue(
            "kube-apiserver", server=True,
            dns_names=("localhost", "kubernetes", "kubernetes.default",
                       "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
            ips=("127.0.0.1", "10.0.0.1"),
        )
        (pki / "apiserver.crt").write_bytes(serving)
        (pki / "apiserver.key").write_bytes(serving_key)
        admin, admin_key = ca.issue("headwind-admin", organizations=("system:masters",))
        (pki / "admin.crt").write_bytes(admin)
        (pki / "admin.key").write_bytes(admin_key)
        certs.write_service_account_keys(pki)

    def _start_apiserver(self) -> None:
        pki = self.dir / "pki"
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        args = [
            str(build.bin_path("kube-apiserver")),
            f"--etcd-servers={self.state.etcd_url}", "--bind-address=127.0.0.1",
            f"--secure-port={port}", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={url}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--enable-priority-and-fairness=false",
            "--profiling=false", "--v=0",
        ]
        if not self.cluster_extras:
            # Without controller-manager nothing creates default ServiceAccounts.
            args.append("--disable-admission-plugins=ServiceAccount")
        apiserver = self._spawn("kube-apiserver", args)
        self.state.apiserver_url = url
        kubeconfig = self.dir / "admin.kubeconfig"
        kubeconfig.write_text(_kubeconfig(url, pki))
        self.state.kubeconfig = str(kubeconfig)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        self._wait(apiserver, lambda: _http_ok(f"{url}/readyz", context), timeout=120)
        self._ssl = context

    def _start_cluster_extras(self) -> None:
        pki = self.dir / "pki"
        kubeconfig = self.state.kubeconfig
        common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                  "--bind-address=127.0.0.1", "--v=1"]
        kcm = self._spawn("kube-controller-manager", [
            str(build.bin_path("kube-controller-manager")), *common,
            f"--secure-port={free_port()}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=false", "--kube-api-qps=500",
            "--kube-api-burst=1000", "--concurrent-deployment-syncs=10",
            "--controllers=*,-nodeipam",
        ])
        scheduler = self._spawn("kube-scheduler", [
            str(build.bin_path("kube-scheduler")), *common, f"--secure-port={free_port()}",
        ])
        kwok_config = self.dir / "kwok.yaml"
        kwok_config.write_text(kwok_stages())
        kwok = self._spawn("kwok", [
            str(build.bin_path("kwok")), f"--kubeconfig={kubeconfig}",
            f"--config={kwok_config}", "--manage-all-nodes=true",
            "--node-lease-duration-seconds=40", "--cidr=10.0.0.0/16", "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{free_port()}",
        ])
        for component in (kcm, scheduler, kwok):
            self._wait(component, lambda: True, timeout=1)
        self._kubectl_apply({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {"type": "kwok"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
        })
        self._wait(kwok, self._node_ready, timeout=60)
        self._wait(kcm, self._default_service_account_exists, timeout=60)

    def _start_registries(self) -> None:
        user = "headwind"
        password = secrets.token_urlsafe(18)
        self.state.registry_user, self.state.registry_password = user, password
        self.state.notify_token = secrets.token_urlsafe(18)
        reg_dir = self.dir / "registry"
        reg_dir.mkdir()
        registry.write_htpasswd(reg_dir / "htpasswd", user, password)
        (reg_dir / "password").write_text(password)

        basic_port, token_port, tokensrv_port = free_port(), free_port(), free_port()
        basic_cfg = registry.registry_config(
            port=basic_port, storage=reg_dir / "basic-data",
            auth={"htpasswd": {"realm": "headwind-testbed", "path": str(reg_dir / "htpasswd")}},
            notify_urls=self.notify_urls, notify_token=self.state.notify_token,
        )
        bundle = tokenserver.write_signing_material(reg_dir)
        serving, serving_key = self._ca.issue("registry-token-server", server=True,
                                              dns_names=("localhost",), ips=("127.0.0.1",))
        (reg_dir / "tokenserver.crt").write_bytes(serving)
        (reg_dir / "tokenserver.key").write_bytes(serving_key)
        self.state.token_realm = f"https://127.0.0.1:{tokensrv_port}/token"
        token_cfg = registry.registry_config(
            port=token_port, storage=reg_dir / "token-data",
            auth={"token": {"realm": f"https://127.0.0.1:{tokensrv_port}/token",
                            "service": tokenserver.SERVICE, "issuer": tokenserver.ISSUER,
                            "rootcertbundle": str(bundle)}},
            notify_urls=[], notify_token=self.state.notify_token,
        )
        for name, cfg in (("registry-basic", basic_cfg), ("registry-token", token_cfg)):
            (reg_dir / f"{name}.yml").write_text(json.dumps(cfg))  # JSON is valid YAML
        tokensrv = self._spawn("registry-token-server", [
            sys.executable, "-m", "tests.testbed.tokenserver", f"--port={tokensrv_port}",
            f"--dir={reg_dir}", f"--user={user}", f"--password-file={reg_dir / 'password'}",
            f"--cert={reg_dir / 'tokenserver.crt'}", f"--key={reg_dir / 'tokenserver.key'}",
        ], extra_env={"PYTHONPATH": str(REPO_ROOT)})
        basic = self._spawn("registry-basic", ["/usr/bin/docker-registry", "serve",
                                               str(reg_dir / "registry-basic.yml")])
        token = self._spawn("registry-token", ["/usr/bin/docker-registry", "serve",
                                               str(reg_dir / "registry-token.yml")])
        self.state.registry = f"127.0.0.1:{basic_port}"
        self.state.token_registry = f"127.0.0.1:{token_port}"
        self._wait(basic, lambda: _http_status(f"http://{self.state.registry}/v2/") == 401)
        self._wait(token, lambda: _http_status(f"http://{self.state.token_registry}/v2/") == 401)
        trusted = ssl.create_default_context(cafile=self.state.ca_file)
        self._wait(tokensrv, lambda: _http_status(self.state.token_realm, trusted) == 200)

    def _start_chart_repo(self) -> None:
        """The chart repository server (tests/testbed/chartserver.py) over ``<dir>/charts``."""
        root = self.dir / "charts"
        for area in ("public", "private"):
            (root / area).mkdir(parents=True)
        password_file = self.dir / "chart-repo-password"
        self.state.chart_repo_user = "charts"
        self.state.chart_repo_password = secrets.token_urlsafe(18)
        password_file.write_text(self.state.chart_repo_password)
        port = free_port()
        server = self._spawn("chart-repo", [
            sys.executable, "-m", "tests.testbed.chartserver", f"--port={port}",
            f"--root={root}", f"--user={self.state.chart_repo_user}",
            f"--password-file={password_file}",
        ], extra_env={"PYTHONPATH": str(REPO_ROOT)})
        self.state.chart_repo_url = f"http://127.0.0.1:{port}"
        self.state.chart_repo_dir = str(root)
        self._wait(server, lambda: _http_ok(f"{self.state.chart_repo_url}/_stats"))

    def _start_redis(self) -> None:
        port = free_port()
        redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
        # Persistent, as production must be (docs/reliability.md): a restart keeps the event
        # stream, the task queue and the tasks workers hold (appendfsync everysec).
        redis = self._spawn("redis", [
            redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir),
            "--protected-mode", "yes",
        ])
        self.state.redis_url = f"redis://127.0.0.1:{port}/0"
        self._wait(redis, lambda: _redis_ping(port))

    def _start_postgres(self) -> None:
        """Debian's PostgreSQL server (apt-get install postgresql) with a throwaway cluster:
        initdb, then the postmaster on a free loopback port (TCP only, no Unix socket), with
        durability off (fsync, synchronous_commit, full_page_writes): nothing here must
        survive a crash of the machine. A database ``headwind`` owned by the superuser
        ``headwind`` (password authentication, scram-sha-256) is created for use by hand;
        Django's tests create their own ``test_...`` database next to it.

        PostgreSQL refuses to run as root: as root the cluster belongs to, and the server runs
        as, the ``postgres`` user that Debian's package creates (setpriv, no extra process).
        That user must reach the data directory; when the state directory is not reachable
        (pytest's are in a 0700 directory) the cluster lives in a directory of its own under
        the system temporary directory, recorded in the state and removed by ``stop``.
        """
        initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
        account = _postgres_account()
        data_parent = self.dir.resolve() / "postgres"
        if account is not None and not _reachable_by(self.dir, account):
            data_parent = Path(tempfile.mkdtemp(prefix="headwind-testbed-postgres-"))
        data_parent.mkdir(exist_ok=True)
        self.state.postgres_data_dir = str(data_parent)
        self.state.save()  # so that stop() removes it even if the start fails
        data = data_parent / "data"
        password = secrets.token_urlsafe(18)
        (data_parent / "password").write_text(password + "\n")
        prefix: list[str] = []
        if account is not None:
            os.chmod(data_parent, 0o700)
            os.chown(data_parent, account.pw_uid, account.pw_gid)
            os.chown(data_parent / "password", account.pw_uid, account.pw_gid)
            # env -C: a working directory the postgres user may enter (it looks its own up).
            prefix = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                      "--init-groups", "--", "env", "-C", str(data_parent)]
        done = subprocess.run(
            [*prefix, str(initdb), "-D", str(data), "-U", "headwind",
             f"--pwfile={data_parent / 'password'}", "--auth-host=scram-sha-256",
             "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
             "--no-instructions"],
            cwd=data_parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120, env=dict(os.environ, LC_ALL="C.UTF-8"))
        if done.returncode != 0:
            raise TestbedError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        port = free_port()
        server = self._spawn("postgres", [
            *prefix, str(postgres), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={port}", "-c", "unix_socket_directories=", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "shared_buffers=32MB",
            "-c", "log_min_messages=warning", "-c", "log_checkpoints=off",
        ], stop_signal="SIGINT")
        self.state.database_url = f"postgres://headwind:{password}@127.0.0.1:{port}/headwind"
        self._wait(server, lambda: _postgres_ready(self.state.database_url, "postgres"))
        _postgres_execute(self.state.database_url, "CREATE DATABASE headwind")

    # -- Kubernetes helpers -------------------------------------------------------------------

    def _api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.state.apiserver_url + path, data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def _kubectl_apply(self, obj: dict) -> None:
        """Create or replace one object through the REST API (no kubectl binary needed)."""
        path = _collection_path(obj)
        status, body = self._api("POST", path, obj)
        if status == 409:
            status, current = self._api("GET", f"{path}/{obj['metadata']['name']}")
            obj = dict(obj, metadata=dict(obj["metadata"],
                                          resourceVersion=current["metadata"]["resourceVersion"]))
            status, body = self._api("PUT", f"{path}/{obj['metadata']['name']}", obj)
        if status >= 300:
            raise TestbedError(f"applying {obj['kind']} {obj['metadata']['name']}: {status} {body}")

    def _node_ready(self) -> bool:
        status, node = self._api("GET", f"/api/v1/nodes/{NODE_NAME}")
        conditions = ((node.get("status") or {}).get("conditions") or []) if status == 200 else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_service_account_exists(self) -> bool:
        return self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    def apply_crds(self) -> None:
        """Headwind's CRDs (deploy/crds/) and Flux's (flux-crds/), each waited on until it is
        Established, so the first test may create their objects."""
        documents = [document
                     for directory in (CRD_DIR, FLUX_CRD_DIR)
                     for path in sorted(directory.glob("*.yaml"))
                     for document in yaml.safe_load_all(path.read_text()) if document]
        for document in documents:
            self._kubectl_apply(document)
        for document in documents:
            name = document["metadata"]["name"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _, crd = self._api(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True"
                       for c in conditions):
                    break
                time.sleep(0.2)
            else:
                raise TestbedError(f"CRD {name} was not established within 30s")

    def apply_admission(self) -> None:
        """Headwind's admission policies (deploy/admission/), as a cluster admin installs them."""
        for path in sorted(ADMISSION_DIR.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                self._kubectl_apply(document)

    # -- lifecycle --------------------------------------------------------------------------

    def up(self) -> TestbedState:
        if (self.dir / "state.json").exists():
            existing = TestbedState.load(self.dir)
            if any(_alive(c) for c in existing.components):
                raise TestbedError(
                    f"a testbed already runs from {self.dir}; run `python -m tests.testbed down`"
                )
            stop(self.dir)  # removes what is left, a PostgreSQL cluster kept elsewhere too
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir()
        build.build()
        try:
            self._write_pki()
            self._start_redis()
            self._start_postgres()
            self._start_registries()
            self._start_chart_repo()
            self._start_etcd()
            self._start_apiserver()
            if self.cluster_extras:
                self._start_cluster_extras()
            self.apply_crds()
            self.apply_admission()
        except BaseException:
            stop(self.dir, remove=False)
            raise
        self.state.save()
        return self.state


#: Pod images whose tag ends so fail on purpose (tests/testbed/kwok-stages/): never Ready, or
#: crash-looping. kwok's own pod-ready stage must leave them to Headwind's stages.
FAILING_IMAGE_SUFFIXES = ("-broken", "-crash")
_NOT_FAILING = {
    "key": '.spec.containers.[] | select( .image | endswith("-broken") or endswith("-crash") )'
           ' | .name',
    "operator": "DoesNotExist",
}


def kwok_stages() -> str:
    """kwok's own stages (from its module, built with the binaries), with its pod-ready and
    pod-complete (a Job's pods) stages told to leave failing images alone, plus Headwind's
    stages for them."""
    documents = []
    for path in sorted(build.stages_dir().glob("*.yaml")):
        for stage in yaml.safe_load_all(path.read_text()):
            if stage and stage["metadata"]["name"] in ("pod-ready", "pod-complete"):
                stage["spec"]["selector"]["matchExpressions"].append(_NOT_FAILING)
            if stage:
                documents.append(stage)
    for path in sorted(KWOK_STAGE_DIR.glob("*.yaml")):
        documents += [stage for stage in yaml.safe_load_all(path.read_text()) if stage]
    return yaml.safe_dump_all(documents, sort_keys=False)


def _launch(directory: Path, name: str, argv: list[str], extra_env: dict[str, str],
            stop_signal: str = "SIGTERM") -> Component:
    log_path = directory / "logs" / f"{name}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ, **extra_env), cwd=directory,
        )
    return Component(name=name, pid=proc.pid, log=str(log_path),
                     started=(_proc_stat(proc.pid) or [""] * 20)[19], argv=list(argv),
                     extra_env=dict(extra_env), stop_signal=stop_signal)


def stop_component(directory: Path, name: str, *, kill: bool = False) -> None:
    """Stop one component (SIGKILL with ``kill``, else SIGTERM and wait) and leave it stopped."""
    for component in TestbedState.load(directory).components:
        if component.name == name and _alive(component):
            _signal(component, signal.SIGKILL if kill else _stop_signal(component))
            deadline = time.monotonic() + 15
            while _alive(component) and time.monotonic() < deadline:
                _reap(component.pid)
                time.sleep(0.05)
            if _alive(component):
                _signal(component, signal.SIGKILL)
            _reap(component.pid)


def start_component(directory: Path, name: str) -> Component:
    """Start a stopped component again with the same command line (same ports, same data)."""
    state = TestbedState.load(directory)
    for index, component in enumerate(state.components):
        if component.name == name:
            if _alive(component):
                raise TestbedError(f"{name} is still running")
            fresh = _launch(directory, name, component.argv, component.extra_env,
                            component.stop_signal)
            state.components[index] = fresh
            state.save()
            return fresh
    raise TestbedError(f"no component {name} in {directory}")


def _collection_path(obj: dict) -> str:
    group_version = obj["apiVersion"]
    plural = {"Node": "nodes", "CustomResourceDefinition": "customresourcedefinitions",
              "Namespace": "namespaces",
              "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
              "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
              }[obj["kind"]]
    prefix = "/api/" if "/" not in group_version else "/apis/"
    return f"{prefix}{group_version}/{plural}"


def _kubeconfig(url: str, pki: Path) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "headwind-testbed",
        "clusters": [{"name": "headwind-testbed",
                      "cluster": {"server": url, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "headwind-admin",
                   "user": {"client-certificate": str(pki / "admin.crt"),
                            "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "headwind-testbed",
                      "context": {"cluster": "headwind-testbed", "user": "headwind-admin"}}],
    }, indent=2)


def _http_status(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    return _http_status(url, context) == 200


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def postgres_binary(name: str) -> Path:
    """A program of Debian's newest PostgreSQL server (/usr/lib/postgresql/<major>/bin/),
    or of ``$HEADWIND_POSTGRES_BINDIR``."""
    override = os.environ.get("HEADWIND_POSTGRES_BINDIR")
    candidates = [Path(override) / name] if override else sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0, reverse=True)
    for path in candidates:
        if path.is_file():
            return path
    raise TestbedError(f"PostgreSQL's {name} was not found: apt-get install postgresql "
                       "(scripts/install-deps.sh installs it)")


def _postgres_account() -> pwd.struct_passwd | None:
    """None when we are not root (the server runs as we do), else the ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise TestbedError("running as root, PostgreSQL needs the 'postgres' user, which "
                           "Debian's postgresql package creates") from None


def _reachable_by(directory: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account`` may traverse every directory down to ``directory``."""
    for path in [directory.resolve(), *directory.resolve().parents]:
        mode = path.stat()
        if mode.st_uid == account.pw_uid:
            needed = stat.S_IXUSR
        elif mode.st_gid == account.pw_gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not mode.st_mode & needed:
            return False
    return True


def _postgres_ready(url: str, database: str) -> bool:
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + f"/{database}", connect_timeout=2):
        return True


def _postgres_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=5,
                         autocommit=True) as connection:
        connection.execute(sql)


def stop(directory: Path, *, remove: bool = True, timeout: float = 10.0) -> list[str]:
    """Stop every component started from ``directory``, newest first, each before the next:
    the apiserver shuts down in a second while etcd still runs, but hangs if etcd went first."""
    state_file = directory / "state.json"
    stopped: list[str] = []
    elsewhere = ""  # a PostgreSQL cluster outside the state directory (see _start_postgres)
    if state_file.exists():
        try:
            state = TestbedState.load(directory)
        except (ValueError, TypeError, KeyError) as exc:
            raise TestbedError(f"unreadable {state_file}: {exc}") from exc
        components = state.components
        if (state.postgres_data_dir
                and Path(state.postgres_data_dir).resolve().parent != directory.resolve()):
            elsewhere = state.postgres_data_dir
        for component in reversed(components):
            if not _alive(component):
                continue
            _signal(component, _stop_signal(component))
            deadline = time.monotonic() + timeout
            while _alive(component) and time.monotonic() < deadline:
                _reap(component.pid)
                time.sleep(0.05)
            if _alive(component):
                _signal(component, signal.SIGKILL)
            _reap(component.pid)
            stopped.append(component.name)
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
        if elsewhere:
            shutil.rmtree(elsewhere, ignore_errors=True)
    return stopped


def _stop_signal(component: Component) -> int:
    return getattr(signal, component.stop_signal, signal.SIGTERM)


def _signal(component: Component, signum: int) -> None:
    try:
        os.killpg(component.pid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def crashed(directory: Path) -> list[tuple[str, str]]:
    """Components that are no longer running, with their log tails."""
    state = TestbedState.load(directory)
    return [(c.name, log_tail(Path(c.log))) for c in state.components if not _alive(c)]
