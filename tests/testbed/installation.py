"""A whole Headwind (web, operators, workers) as real processes on the testbed, with its own
Redis database, so its event stream and task queue are its own: faults can be injected (kill -9,
restarts) without touching the session's shared processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from tests.waiting import eventually

from . import cluster

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    metrics_port: int
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Installation:
    """Start with :meth:`start`; stop with :meth:`stop`. ``web_url`` takes webhooks."""

    testbed: cluster.TestbedState
    directory: Path
    db_path: str
    redis_db: int
    operators: int = 2
    workers: int = 1
    verify: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    lease_namespace: str = field(default_factory=lambda: f"headwind-{uuid.uuid4().hex[:6]}")
    processes: dict[str, Process] = field(default_factory=dict)
    web_url: str = ""

    @property
    def redis_url(self) -> str:
        base = self.testbed.redis_url.rsplit("/", 1)[0]
        return f"{base}/{self.redis_db}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, **self.testbed.env())
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings", HEADWIND_TEST_DB=self.db_path,
            PYTHONPATH=str(REPO_ROOT), REDIS_URL=self.redis_url,
            HEADWIND_WEBHOOK_TOKEN=self.token,
            HEADWIND_WEBHOOK_VERIFY="true" if self.verify else "false",
            HEADWIND_WEBHOOK_VERIFY_NOT_FOUND_SECONDS="10",
            HEADWIND_EXPIRY_INTERVAL="5")
        env.update(self.extra_env)
        env.update(extra)
        return env

    # -- processes -------------------------------------------------------------------------

    def _process(self, name: str, argv: list[str], **env: str) -> Process:
        port = cluster.free_port()
        process = Process(name, argv, self.env(**env), self.directory / f"{name}.log", port)
        self.processes[name] = process
        return process

    def launch(self, name: str) -> Process:
        """Start (or start again) the process called ``name``."""
        process = self.processes[name]
        if process.alive():
            raise RuntimeError(f"{name} is running")
        with open(process.log_path, "ab") as log:
            process.popen = subprocess.Popen(process.argv, cwd=REPO_ROOT, env=process.env,
                                             stdout=log, stderr=subprocess.STDOUT)
        return process

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.alive():
            process.popen.send_signal(signum)
            process.popen.wait(30)

    def start(self) -> Installation:
        self.directory.mkdir(parents=True, exist_ok=True)
        redis.Redis.from_url(self.redis_url).flushdb()
        web = self._process("web", [])
        web.argv = [sys.executable, "-m", "headwind_site.web", "-b", "127.0.0.1", "-p",
                    str(web.metrics_port)]
        self.web_url = f"http://127.0.0.1:{web.metrics_port}"
        for index in range(self.operators):
            name = f"operator-{index}"
            process = self._process(name, [])
            process.argv = [sys.executable, "manage.py", "run_operator", f"--identity={name}",
                            f"--lease-namespace={self.lease_namespace}"]
            process.env["HEADWIND_OPERATOR_METRICS_PORT"] = str(process.metrics_port)
        for index in range(self.workers):
            self.add_worker(index, start=False)
        for name in self.processes:
            self.launch(name)
        self.wait_ready()
        return self

    def add_worker(self, index: int, *, start: bool = True) -> Process:
        name = f"worker-{index}"
        process = self._process(name, [])
        process.argv = [sys.executable, "-m", "celery", "-A", "headwind_site", "worker",
                        "--pool=threads", "--concurrency=4", "--loglevel=INFO",
                        "--without-gossip", "--without-mingle",
                        f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h"]
        process.env["HEADWIND_WORKER_METRICS_PORT"] = str(process.metrics_port)
        if start:
            self.launch(name)
        return process

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            for process in self.processes.values():
                if process.popen is not None and not process.alive():
                    raise AssertionError(f"{process.name} exited:\n"
                                         f"{cluster.log_tail(process.log_path, 40)}")
            web = requests.get(f"{self.web_url}/healthz", timeout=2).status_code == 200
            leader = self.leader() is not None
            operators_listed = all(b"listed" in p.log_path.read_bytes()
                                   for n, p in self.processes.items()
                                   if n.startswith("operator") and p.alive())
            workers = all(b"ready." in p.log_path.read_bytes()
                          for n, p in self.processes.items()
                          if n.startswith("worker") and p.alive())
            return web and leader and operators_listed and workers

        eventually(ready, timeout, "the installation started", interval=0.3,
                   retry_on=(requests.ConnectionError, OSError))

    def leader(self) -> str | None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=self.testbed.kubeconfig)
        try:
            lease = client.CoordinationV1Api(api).read_namespaced_lease("headwind-operator",
                                                                        self.lease_namespace)
            holder = lease.spec.holder_identity
            renewed = lease.spec.renew_time
        except client.ApiException:
            return None
        finally:
            api.close()
        if not holder or renewed is None:
            return None
        age = time.time() - renewed.timestamp()
        return holder if age < (lease.spec.lease_duration_seconds or 10) else None

    def stop(self) -> None:
        for process in self.processes.values():
            if process.alive():
                process.popen.terminate()
        for process in self.processes.values():
            if process.popen is not None:
                try:
                    process.popen.wait(20)
                except subprocess.TimeoutExpired:
                    process.popen.kill()

    # -- talking to it -----------------------------------------------------------------------

    def deliver(self, body: bytes, source: str = "registry",
                session: requests.Session | None = None) -> requests.Response:
        return (session or requests).post(
            f"{self.web_url}/webhook/{source}", data=body, timeout=30,
            headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                     "Authorization": f"Bearer {self.token}"})

    def stream_drained(self, timeout: float = 60) -> None:
        """Every queued event read and acknowledged by the leader."""
        from operator_app import eventqueue

        client = redis.Redis.from_url(self.redis_url)

        def drained() -> bool:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(eventqueue.STREAM)}
            group = groups.get(eventqueue.GROUP)
            return bool(group) and group["pending"] == 0 and group.get("lag", 1) == 0

        try:
            eventually(drained, timeout, "the event stream drained", interval=0.2,
                       retry_on=(redis.ResponseError, redis.ConnectionError))
        finally:
            client.close()
