"""Reading a huge Helm chart repository index: parse time, memory, bytes and a 304 cycle.

Generates an ``index.yaml`` the way Helm writes one (sigs.k8s.io/yaml: sorted keys, two-space
indentation, sequences not indented under their key, long scalars folded at 80 columns, created
times quoted) with realistic entries: descriptions (folded plain, single-quoted and ``|`` block
scalars), maintainers, urls, digests, keywords, dependencies with their own ``version:`` keys and
Artifact Hub annotations whose block scalars hold YAML-looking text. It is served from a local
``http.server`` on 127.0.0.1 with gzip and ETag support, and read with
:class:`registry.charts.ChartRepositoryClient`.

Memory, two ways, each in a fresh child process that does nothing but one fetch: the peak
resident set size during the fetch minus the RSS just before it (``resource.getrusage
(RUSAGE_SELF).ru_maxrss`` delta, after resetting the kernel's high-water mark through
``/proc/self/clear_refs`` so that the imports' own peak does not hide the parse's), and, in a
separate untimed run, the ``tracemalloc`` peak of Python allocations during the fetch.

Run: ``.venv/bin/python bench/helm_index.py [--charts 300 --versions 50 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORDS = ("chart application deploy kubernetes cluster service ingress database cache queue "
         "metrics monitoring logging storage operator controller gateway proxy secure scalable "
         "highly available distributed open source web server stream analytics search engine "
         "workflow scheduler object store message broker identity provider certificate").split()
CATEGORIES = ("Database", "Infrastructure", "Analytics", "WorkFlow", "Monitoring", "Security")
CHANGE_KINDS = ("added", "changed", "fixed", "security")


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _fold(prefix: str, text: str, indent: int, width: int = 80) -> Iterator[str]:
    """A long plain (or single-quoted) scalar folded at spaces, as go-yaml's emitter does."""
    words = text.split(" ")
    line = prefix + words[0]
    for word in words[1:]:
        if len(line) + 1 + len(word) > width:
            yield line
            line = " " * indent + word
        else:
            line += " " + word
    yield line


def _version(rng: random.Random, chart_index: int, index: int) -> str:
    major, minor, patch = divmod(index, 25)[0] + chart_index % 3, (index % 25) // 5, index % 5
    version = f"{major}.{minor}.{patch}"
    if index % 17 == 3:
        version += f"-rc.{index % 4}"
    return version


def entry_lines(rng: random.Random, chart: str, chart_index: int, index: int) -> Iterator[str]:
    """One chart version, keys sorted as Helm writes them; the first line starts with ``- ``."""
    version = _version(rng, chart_index, index)
    app_version = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    when = 1_600_000_000 + chart_index * 86_400 + index * 3_600 + rng.randint(0, 3_000)
    nanos = rng.randint(0, 999_999_999)
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{nanos:09d}Z"
    digest = hashlib.sha256(f"{chart}-{version}".encode()).hexdigest()
    yield "  - annotations:"
    yield "      artifacthub.io/changes: |"
    for _ in range(1 + (index % 3 == 0)):
        yield f"        - kind: {rng.choice(CHANGE_KINDS)}"
        yield f"          description: Update dependency to version {rng.randint(1, 9)}.0.0"
    yield f"      category: {CATEGORIES[chart_index % len(CATEGORIES)]}"
    yield "      images: |"
    for image in range(1 + (index % 4 == 0)):
        yield f"        - name: {chart}-{image}"
        yield f"          image: docker.io/example/{chart}-{image}:{app_version}-debian-12-r{index}"
        yield f"          version: {app_version}"
    yield "      licenses: Apache-2.0"
    yield "    apiVersion: v2"
    yield f'    appVersion: "{app_version}"' if index % 7 == 0 else f"    appVersion: {app_version}"
    yield f'    created: "{created}"'
    yield "    dependencies:"
    yield "    - condition: redis.enabled"
    yield "      name: redis"
    yield "      repository: oci://registry-1.docker.io/examplecharts"
    yield f"      version: {rng.randint(10, 20)}.x.x"
    yield "    - name: common"
    yield "      repository: oci://registry-1.docker.io/examplecharts"
    yield "      tags:"
    yield "      - example-common"
    yield "      version: 2.x.x"
    style = index % 10
    description = f"{chart} is " + _sentence(rng, rng.randint(6, 20))
    if style == 0:
        yield "    description: |"
        yield f"      {chart}: a multi-line description."
        yield "      version: 0.0.0-not-a-key"
        yield f"      {description}"
    elif style == 1:
        # go-yaml single-quotes a string with ': ' in it, and folds it too.
        yield from _fold("    description: '", f"{chart}: {description}'", 6)
    else:
        yield from _fold("    description: ", description, 6)
    yield f"    digest: {digest}"
    yield f"    home: https://example.com/charts/{chart}"
    yield f"    icon: https://example.com/assets/{chart}/img/{chart}-stack-220x234.png"
    yield "    keywords:"
    for word in rng.sample(WORDS, 3):
        yield f"    - {word}"
    yield "    maintainers:"
    yield "    - name: Example, Inc."
    yield "      url: https://github.com/example/charts"
    yield f"    name: {chart}"
    yield "    sources:"
    yield f"    - https://github.com/example/charts/tree/main/example/{chart}"
    yield "    urls:"
    yield f"    - https://charts.example.com/example/{chart}-{version}.tgz"
    yield f'    version: "{version}"' if index % 11 == 5 else f"    version: {version}"


def chart_names(charts: int) -> list[str]:
    return [f"{WORDS[(i * 7 + 3) % len(WORDS)]}-{i}" for i in range(charts)]


def generate_index(charts: int = 300, versions: int = 50, seed: int = 1) -> Iterator[bytes]:
    """The index as byte chunks (one per chart), so 20 MB is never one string here either."""
    rng = random.Random(seed)
    yield b"apiVersion: v1\nentries:\n"
    for chart_index, chart in enumerate(sorted(chart_names(charts))):
        lines = [f"  {chart}:"]
        for index in reversed(range(versions)):
            lines.extend(entry_lines(rng, chart, chart_index, index))
        yield ("\n".join(lines) + "\n").encode()
    yield b'generated: "2024-05-06T07:08:09.123456789Z"\n'


def write_index(path: Path, charts: int, versions: int) -> tuple[int, int]:
    """Writes index.yaml and index.yaml.gz; returns their sizes."""
    with open(path, "wb") as plain, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as packed:
        for chunk in generate_index(charts, versions):
            plain.write(chunk)
            packed.write(chunk)
    return path.stat().st_size, Path(str(path) + ".gz").stat().st_size


# --- the server ---------------------------------------------------------------------------------


class IndexServer:
    """Serves one index.yaml (and its .gz) with ETag/If-None-Match and gzip; counts bytes sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.etag = f'"{digest.hexdigest()[:32]}"'
        self.sent = 0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.send_header("ETag", server.etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
                body = Path(str(server.path) + ".gz") if gzipped else server.path
                self.send_response(200)
                self.send_header("Content-Type", "application/x-yaml")
                self.send_header("ETag", server.etag)
                self.send_header("Content-Length", str(body.stat().st_size))
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                with open(body, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 16), b""):
                        self.wfile.write(block)
                        server.sent += len(block)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/charts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- one measured fetch in a child process ------------------------------------------------------


def _child(url: str, wanted: str, accept_gzip: bool, parser: str, trace: bool) -> None:
    """Runs in a fresh interpreter: one fetch, then prints figures as JSON."""
    import gc
    import tracemalloc

    import registry.charts as charts

    client = charts.ChartRepositoryClient(url, parser=parser)  # type: ignore[arg-type]
    if not accept_gzip:
        client.accept_encoding = "identity"
    names = None if wanted == "*" else wanted.split(",")
    gc.collect()
    if trace:
        tracemalloc.start()
    baseline = _reset_peak_rss()
    started = time.perf_counter()
    result = client.fetch(names)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    versions = sum(len(v) for v in result.versions.values())
    print(json.dumps({"seconds": seconds, "peak_extra_kib": peak - baseline,
                      "traced_peak_kib": traced // 1024,
                      "bytes_read": result.bytes_read, "bytes_decoded": result.bytes_decoded,
                      "charts": len(result.versions), "versions": versions,
                      "parser": result.parser}))
    client.close()


def _reset_peak_rss() -> int:
    """Resets the peak RSS (VmHWM, which ru_maxrss reports) to the current RSS and returns it,
    so a maxrss delta is the parse's own high-water mark, not the imports'."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the delta is then from the earlier peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(url: str, wanted: str, *, accept_gzip: bool = True, parser: str = "auto",
            trace: bool = False) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", url, wanted, "1" if accept_gzip else "0", parser,
         "1" if trace else "0"], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def best(url: str, wanted: str, rounds: int, **options) -> dict:
    """Best time of ``rounds`` fresh processes, their worst RSS peak, and (one more run, not
    timed: tracing slows Python down) the tracemalloc peak of Python allocations."""
    runs = [measure(url, wanted, **options) for _ in range(rounds)]
    figures = min(runs, key=lambda run: run["seconds"])
    figures["peak_extra_kib"] = max(run["peak_extra_kib"] for run in runs)
    figures["traced_peak_kib"] = measure(url, wanted, trace=True, **options)["traced_peak_kib"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--charts", type=int, default=300)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="best time of N fresh processes")
    parser.add_argument("--skip-events", action="store_true",
                        help="do not time the (slow) event-parser fallback")
    args = parser.parse_args()

    from registry.charts import ChartRepositoryClient, NotModified

    with tempfile.TemporaryDirectory(prefix="headwind-bench-") as directory:
        path = Path(directory) / "index.yaml"
        started = time.perf_counter()
        plain_size, gzip_size = write_index(path, args.charts, args.versions)
        print(f"generated {args.charts} charts x {args.versions} versions = "
              f"{args.charts * args.versions} entries: {plain_size / 1e6:.1f} MB "
              f"({gzip_size / 1e6:.2f} MB gzip) in {time.perf_counter() - started:.1f}s")
        server = IndexServer(path)
        try:
            names = sorted(chart_names(args.charts))
            ten = ",".join(names[i] for i in range(0, len(names), max(1, len(names) // 10))[:10])
            rows = [
                ("whole index, gzip", best(server.url, "*", args.rounds)),
                ("10 charts, gzip", best(server.url, ten, args.rounds)),
                ("whole index, identity", best(server.url, "*", args.rounds, accept_gzip=False)),
            ]
            if not args.skip_events:
                rows.append(("whole index, event parser",
                             best(server.url, "*", args.rounds, parser="events")))
                rows.append(("10 charts, event parser",
                             best(server.url, ten, args.rounds, parser="events")))
            print(f"{'case':26} | {'parser':6} | {'seconds':>7} | {'RSS peak +':>10} | "
                  f"{'traced peak':>11} | {'wire bytes':>10} | {'YAML bytes':>10} | charts | "
                  "versions")
            for name, row in rows:
                print(f"{name:26} | {row['parser']:6} | {row['seconds']:7.3f} | "
                      f"{row['peak_extra_kib'] / 1024:7.1f} MB | "
                      f"{row['traced_peak_kib'] / 1024:8.1f} MB | {row['bytes_read']:10,} | "
                      f"{row['bytes_decoded']:10,} | {row['charts']:6} | {row['versions']:8}")

            client = ChartRepositoryClient(server.url)
            first = client.fetch([names[0]])
            parses, sent, requests_before = client.parses, server.sent, server.requests
            started = time.perf_counter()
            again = client.fetch([names[0]])
            seconds = time.perf_counter() - started
            assert again is NotModified, again
            print(f"304 cycle: {seconds * 1000:.1f} ms, {server.requests - requests_before} "
                  f"request, {server.sent - sent} body bytes, "
                  f"{client.parses - parses} parses (etag {first.etag})")
            client.close()
            from _results import bars, save  # bench/_results.py: figures for make bench

            save("helm_index", {
                "entries": args.charts * args.versions, "index_mb": round(plain_size / 1e6, 1),
                "gzip_mb": round(gzip_size / 1e6, 2), "not_modified_ms": round(seconds * 1000, 1),
                **{f"{name} {key}": row[key] for name, row in rows
                   for key in ("seconds", "peak_extra_kib", "traced_peak_kib", "bytes_read")}},
                [bars("Fetch and parse (s)", {name: row["seconds"] for name, row in rows}, "s"),
                 bars("Memory during the fetch (MB)",
                      {name: {"RSS peak +": row["peak_extra_kib"] / 1024,
                              "traced peak": row["traced_peak_kib"] / 1024}
                       for name, row in rows}, "MB")])
        finally:
            server.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5], sys.argv[6] == "1")
    else:
        main()
