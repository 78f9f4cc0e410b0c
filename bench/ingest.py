"""Webhook ingest: registry push notifications on 16 connections to ``/webhook/registry``.

Goal (issue 14): ≥ 500 accepted deliveries per second on the 2-core machine, no 5xx, 0 lost.

The web process is the one that ships (the command of ``deploy/manifests/web.yaml``, in
production mode, with a ``SECRET_KEY``), or ``--web "<command>"`` to compare servers
(``{port}`` is replaced; ``python`` is this virtualenv's). It runs on a minimal testbed of its own
(its Redis holds the event stream; PostgreSQL is the database).

Each delivery is what docker-registry sends for a push (one ``push`` event of a tagged manifest,
``application/vnd.docker.distribution.events.v1+json``, ``Authorization: Bearer <token>``),
with a tag of its own, so every accepted delivery can be found in the Redis stream
(``headwind:image-events``, operator_app/eventqueue.py) afterwards: none may be missing. The
client is asyncio with ``--connections`` keep-alive HTTP/1.1 connections sending a bounded number
(``--deliveries``) of requests back to back; ``--warmup`` deliveries first are not counted (their
entries are removed from the stream before the measured run).

Printed: 2xx/4xx/5xx and connection errors, accepted deliveries per second (accepted / time from
the first request sent to the last answer), p50/p90/p99 latency, the stream check, and the web
process's RSS at the end.

Run: ``.venv/bin/python bench/ingest.py [--deliveries 5000 --connections 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402
from _harness import percentile, runnable, shipped_commands, tree_memory  # noqa: E402

from tests.testbed import cluster  # noqa: E402

STREAM = "headwind:image-events"  # operator_app/eventqueue.py
REDIS_DB = 5
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
REPOSITORY = "bench/ingest"


def body(tag: str) -> bytes:
    """One push of a tagged manifest, as docker-registry 2.8 notifies it."""
    return json.dumps({"events": [{
        "id": secrets.token_hex(8), "timestamp": "2026-01-01T00:00:00Z", "action": "push",
        "target": {"mediaType": MANIFEST, "digest": "sha256:" + secrets.token_hex(32),
                   "size": 708, "length": 708, "repository": REPOSITORY,
                   "url": f"http://registry.example.com/v2/{REPOSITORY}/manifests/{tag}",
                   "tag": tag},
        "request": {"id": secrets.token_hex(8), "addr": "10.0.0.2:41234",
                    "host": "registry.example.com", "method": "PUT",
                    "useragent": "docker/27.0"},
        "actor": {"name": "ci"}, "source": {"addr": "registry-0:5000"},
    }]}).encode()


# --- the client ------------------------------------------------------------------------------


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (f"POST /webhook/registry HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: "
                     "application/vnd.docker.distribution.events.v1+json\r\n")
        self.results: list[tuple[float, float, int, str]] = []  # sent, done, status, tag
        self.errors = 0

    async def connection(self, tags: list[str], take) -> None:
        reader = writer = None
        while True:
            tag = take()
            if tag is None:
                break
            payload = body(tag)
            request = (self.head + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
            for attempt in range(2):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    sent = time.perf_counter()
                    writer.write(request)
                    status, keep = await self._response(reader)
                    self.results.append((sent, time.perf_counter(), status, tag))
                    if not keep:
                        writer.close()
                        reader = writer = None
                    break
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if attempt == 1:
                        self.errors += 1
        if writer is not None:
            writer.close()

    @staticmethod
    async def _response(reader) -> tuple[int, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        keep = headers.get("connection", "").lower() != "close"
        return status, keep

    async def run(self, tags: list[str], connections: int) -> float:
        queue = iter(tags)

        def take():
            return next(queue, None)

        started = time.perf_counter()
        await asyncio.gather(*(self.connection(tags, take) for _ in range(connections)))
        return time.perf_counter() - started


def deliver(port: int, token: str, tags: list[str], connections: int) -> Client:
    client = Client(port, token)
    asyncio.run(client.run(tags, connections))
    return client


# --- the run -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--web", default="",
                        help="the web command to measure instead of the shipped one "
                             "('python -m daphne -p {port} headwind_site.asgi:application'; "
                             "headwind_site.asgi:django_asgi_app is Django's handler without "
                             "the webhook short path)")
    parser.add_argument("--label", default="", help="name of this setup in the results")
    parser.add_argument("--no-save", action="store_true", help="print only (comparisons)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="headwind-bench-ingest-"))
    state = cluster.Testbed(work / "testbed", cluster_extras=False).up()
    web = None
    try:
        port = cluster.free_port()
        token = secrets.token_urlsafe(16)
        redis_url = state.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
               "LANG": "C.UTF-8", "DJANGO_SETTINGS_MODULE": "headwind_site.settings",
               **{k: str(v) for k, v in yaml.safe_load(
                   (REPO_ROOT / "deploy/manifests/config.yaml").read_text())["data"].items()},
               "SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": state.database_url,
               "REDIS_URL": redis_url, "ALLOWED_HOSTS": f"localhost,127.0.0.1,127.0.0.1:{port}",
               "KUBECONFIG": state.kubeconfig, "HEADWIND_NAMESPACE": "headwind-bench",
               "HEADWIND_WEBHOOK_REGISTRY_TOKEN": token, "LOG_LEVEL": "WARNING"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
                       cwd=REPO_ROOT, env=env, check=True)
        command = (runnable(shlex.split(args.web), port) if args.web
                   else shipped_commands(port)["web"])
        label = args.label or " ".join(Path(command[0]).name if i == 0 else a
                                       for i, a in enumerate(command))
        print(f"web: {' '.join(command)}", flush=True)
        log_path = work / "web.log"
        with open(log_path, "wb") as log:
            web = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if web.poll() is not None:
                raise SystemExit(f"web exited:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"web not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)

        stream = redis.Redis.from_url(redis_url)
        stream.delete(STREAM)
        deliver(port, token, [f"0.0.{i}-warmup" for i in range(args.warmup)], args.connections)
        stream.delete(STREAM)
        tags = [f"1.0.{i}" for i in range(args.deliveries)]
        client = deliver(port, token, tags, args.connections)
        rss = tree_memory(web.pid)["rss"]

        results = client.results
        statuses = [status for _, _, status, _ in results]
        counts = {"2xx": sum(200 <= s < 300 for s in statuses),
                  "4xx": sum(400 <= s < 500 for s in statuses),
                  "5xx": sum(s >= 500 for s in statuses)}
        accepted = [r for r in results if r[2] == 202]
        first = min(sent for sent, _, _, _ in results)
        last = max(done for _, done, _, _ in results)
        rate = len(accepted) / (last - first)
        latencies = [(done - sent) * 1000 for sent, done, _, _ in results]
        in_stream = {fields[b"tag"].decode() for _, fields in stream.xrange(STREAM)}
        lost = sorted({tag for _, _, _, tag in accepted} - in_stream)
        stream.close()
        bins: dict[int, int] = {}
        for _, done, _status, _ in accepted:
            bins[int((done - first) / 0.25)] = bins.get(int((done - first) / 0.25), 0) + 1
        over_time = [((index + 0.5) * 0.25, bins.get(index, 0) * 4)
                     for index in range(max(bins) + 1)] if bins else []

        p50, p90, p99 = (percentile(latencies, f) for f in (0.5, 0.9, 0.99))
        print(f"{len(results):,} deliveries on {args.connections} connections: "
              f"{counts['2xx']:,} 2xx, {counts['4xx']} 4xx, {counts['5xx']} 5xx, "
              f"{client.errors} connection errors")
        print(f"accepted {len(accepted):,} at {rate:.0f}/s; latency p50 {p50:.1f} ms, "
              f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
        print(f"in the Redis stream: {len(in_stream):,} entries; accepted but missing: "
              f"{len(lost)}{' ' + ', '.join(lost[:5]) if lost else ''}")
        print(f"web RSS after the run: {rss:.1f} MiB (all its processes)")
        met = rate >= 500 and counts["5xx"] == 0 and not lost and not client.errors
        print(f"goal ≥ 500 accepted/s, no 5xx, 0 lost: {'met' if met else 'MISSED'}")
        if not args.no_save:
            figures = {"setup": label, "deliveries": len(results),
                       "connections": args.connections, **counts,
                       "connection_errors": client.errors, "accepted": len(accepted),
                       "accepted_per_s": round(rate, 1), "p50_ms": round(p50, 2),
                       "p90_ms": round(p90, 2), "p99_ms": round(p99, 2),
                       "max_ms": round(max(latencies), 2), "lost": len(lost),
                       "web_rss_mib": round(rss, 1),
                       "mean_ms": round(statistics.fmean(latencies), 2)}
            _results.save("ingest", figures, [
                _results.series("Accepted deliveries per second (0.25 s bins)",
                                {label: over_time}, x="seconds", y="accepted/s", goal=500),
                _results.distribution("Delivery latency (ms)", {label: latencies}, "ms",
                                      log=True),
            ], goals={"accepted_per_s": "≥ 500", "5xx": "0", "lost": "0"},
                notes=f"{args.connections} keep-alive connections, {len(results):,} deliveries "
                      "after a warm-up; client on the same machine")
        return 0 if met else 1
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
        cluster.stop(work / "testbed")
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
