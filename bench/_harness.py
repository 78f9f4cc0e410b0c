"""What the whole-install benchmarks share: a testbed of their own, and Headwind's three
processes started as they ship.

``bench/footprint.py`` and ``bench/latency.py`` run what the manifests run: the commands of
``deploy/manifests/{web,worker,operator}.yaml`` and its ConfigMap, in production mode (a
``SECRET_KEY``, no ``HEADWIND_DEV``), with this virtualenv's ``python``, the web on 127.0.0.1
and free ports for every listener, on the testbed's PostgreSQL and Redis. The testbed is a
minimal one (etcd, kube-apiserver, registries, Redis, PostgreSQL; no controller-manager, so
Deployments stay objects and run no pods): what is measured is Headwind, not kubelets.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.testbed import cluster  # noqa: E402

MANIFESTS = REPO_ROOT / "deploy" / "manifests"
MIB = 1024 * 1024


# --- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.5 → p50); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# --- processes and their memory ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (prefork children, server workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory(pid: int) -> dict[str, float]:
    """Rss and Pss of one process in MiB (``/proc/<pid>/smaps_rollup``)."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower()] = int(rest.split()[0]) * 1024 / MIB
    return values


def tree_memory(pid: int) -> dict:
    """PSS and RSS (MiB) summed over ``pid`` and its descendants."""
    pids = [pid, *children(pid)]
    per = {}
    for one in pids:
        try:
            per[one] = memory(one)
        except OSError:
            pass
    return {"pss": sum(m["pss"] for m in per.values()), "rss": sum(m["rss"] for m in per.values()),
            "processes": len(per)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (0 when gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for one in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass
class Proc:
    """One of Headwind's processes, in its own session (stopped with its children)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    spawned: float = 0.0  # time.time() at spawn
    extra: dict = field(default_factory=dict)

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.spawned = time.time()
            self.popen = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check(self) -> None:
        if not self.alive():
            tail = "\n".join(self.log().splitlines()[-30:])
            raise SystemExit(f"{self.name} exited ({self.popen.returncode}):\n{tail}")


def shipped_commands(port: int) -> dict[str, list[str]]:
    """The container commands of deploy/manifests/, runnable here (web on ``port``)."""
    commands = {}
    for name in ("web", "worker", "operator"):
        deployment = yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text().split("\n---")[0])
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        commands[name] = runnable(list(container["command"]) + list(container.get("args") or []),
                                  port)
    return commands


def runnable(command: list[str], port: int) -> list[str]:
    """A manifest's command with this virtualenv's python, 127.0.0.1 and ``port``."""
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    elif command[0] in ("celery", "gunicorn", "uvicorn", "daphne"):
        command = [sys.executable, "-m", *command]
    return [arg.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)).replace(
        "{port}", str(port)) for arg in command]


def shipped_config() -> dict[str, str]:
    """The ConfigMap of deploy/manifests/config.yaml, as environment variables."""
    config = yaml.safe_load((MANIFESTS / "config.yaml").read_text())
    return {key: str(value) for key, value in config["data"].items()}


def production_env(state: cluster.TestbedState, work: Path, **extra: str) -> dict[str, str]:
    """The shipped ConfigMap plus what its Secret would hold, pointed at the testbed."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
            "LANG": "C.UTF-8", "DJANGO_SETTINGS_MODULE": "headwind_site.settings",
            "PYTHONUNBUFFERED": "1", **shipped_config(),
            "SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": state.database_url,
            "REDIS_URL": state.redis_url, "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "HEADWIND_SECURE_COOKIES": "false", "KUBECONFIG": state.kubeconfig,
            "HEADWIND_NAMESPACE": "headwind-bench",
            "HEADWIND_REGISTRY_CA_FILE": state.ca_file,
            "HEADWIND_OPERATOR_METRICS_PORT": str(cluster.free_port()),
            "HEADWIND_WORKER_METRICS_PORT": str(cluster.free_port()), **extra}


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO_ROOT,
                   env=env, check=True)


class Install:
    """web, worker and operator as shipped; ``base`` is the web's URL."""

    def __init__(self, env: dict[str, str], logs: Path, port: int | None = None) -> None:
        self.port = port or cluster.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.commands = shipped_commands(self.port)
        logs.mkdir(parents=True, exist_ok=True)
        self.procs = {name: Proc(name, command, env, logs / f"{name}.log")
                      for name, command in self.commands.items()}

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]

    def start(self, *names: str) -> Install:
        for name in names or ("worker", "operator", "web"):
            self.procs[name].start()
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


# --- readiness -----------------------------------------------------------------------------------


def wait_web_ready(web: Proc, base: str, timeout: float = 60) -> float:
    """Seconds from spawn until /healthz and /readyz both answer 200."""
    session = requests.Session()
    deadline = time.monotonic() + timeout
    pending = ["/healthz", "/readyz"]
    while pending:
        web.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"web not ready after {timeout}s:\n{web.log()[-2000:]}")
        try:
            while pending and session.get(base + pending[0], timeout=1).status_code == 200:
                pending.pop(0)
        except requests.RequestException:
            pass
        if pending:
            time.sleep(0.01)
    return time.time() - web.spawned


def wait_log(proc: Proc, text: str, timeout: float = 60) -> float:
    """Seconds from spawn until ``text`` is in the process's log."""
    deadline = time.monotonic() + timeout
    while text not in proc.log():
        proc.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"{proc.name}: no {text!r} after {timeout}s:\n{proc.log()[-2000:]}")
        time.sleep(0.05)
    return time.time() - proc.spawned


def wait_worker_ready(worker: Proc, timeout: float = 60) -> float:
    return wait_log(worker, " ready.", timeout)


# --- the testbed and its workloads -------------------------------------------------------------


def opted_in_deployment(index: int) -> dict:
    """One of the benchmarks' opted-in Deployments, as sent to the API server: an init
    container, the app with some environment, a shared sidecar (bench/footprint.py creates
    them; bench/fanout.py adds what the server would set)."""
    name = f"svc-{index}"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"},
                     "annotations": {"headwind.sh/policy": ("minor", "patch", "major")[index % 3],
                                     "headwind.sh/require-approval": "true"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "initContainers": [{
                         "name": "migrate",
                         "image": f"registry.example.com/team/{name}-migrate:1.2.3"}],
                     "containers": [
                         {"name": "app", "image": f"registry.example.com/team/{name}:1.2.3",
                          "env": [{"name": f"VAR_{n}", "value": "info"} for n in range(5)]},
                         {"name": "sidecar", "image": "docker.io/envoyproxy/envoy:v1.30.1"},
                     ]}}},
    }


def own_testbed(directory: Path, notify_urls: list[str] | None = None) -> cluster.TestbedState:
    """A minimal testbed of this benchmark's own (stopped with :func:`stop_testbed`); the
    registry notifies ``notify_urls``."""
    started = time.perf_counter()
    state = cluster.Testbed(directory, notify_urls=notify_urls, cluster_extras=False).up()
    print(f"testbed up in {time.perf_counter() - started:.1f}s", flush=True)
    return state


def stop_testbed(directory: Path) -> None:
    cluster.stop(directory)


class Cluster:
    """The testbed's API server over plain HTTPS (one session per thread)."""

    def __init__(self, state: cluster.TestbedState) -> None:
        pki = Path(state.directory) / "pki"
        self.url = state.apiserver_url
        self.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))
        self.verify = str(pki / "ca.crt")
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            session = requests.Session()
            session.cert, session.verify = self.cert, self.verify
            self.local.session = session
        return self.local.session

    def request(self, method: str, path: str, body: dict | None = None, *,
                ok: tuple[int, ...] = (200, 201)) -> dict:
        # verify= on the call: a REQUESTS_CA_BUNDLE in the environment beats a session's
        response = self.session().request(method, self.url + path, json=body, timeout=30,
                                          verify=self.verify, cert=self.cert)
        if response.status_code not in ok:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else {}

    def post(self, path: str, body: dict) -> None:
        self.request("POST", path, body, ok=(201, 409))

    def namespace(self, name: str) -> None:
        self.post("/api/v1/namespaces", {"metadata": {"name": name}})

    def create_all(self, path_and_body, threads: int = 8) -> float:
        """POST every ``(path, body)``; returns the seconds it took."""
        began = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: self.post(*item), path_and_body))
        return time.perf_counter() - began
