"""``python -m tests.testbed up | down | env | status | build``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import build, cluster


def _build_seconds(record: Path) -> str:
    """How long the cached build took when it was made, from its build.json."""
    try:
        seconds = json.loads(record.read_text())["seconds"]
    except (FileNotFoundError, ValueError, KeyError):
        return "build time not recorded"
    total = sum(seconds.values()) if isinstance(seconds, dict) else seconds
    return f"built in {total:.0f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    parser.add_argument("--dir", type=Path, default=cluster.DEFAULT_STATE_DIR,
                        help="state directory (default: %(default)s or $HEADWIND_TESTBED_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build if needed, start everything, print export lines")
    up.add_argument("--notify-url", action="append", default=[],
                    help="registry notification endpoint (repeatable)")
    up.add_argument("--minimal", action="store_true",
                    help="etcd + apiserver only (no controller-manager, scheduler, kwok)")
    sub.add_parser("down", help="stop every process `up` started and remove its state")
    sub.add_parser("env", help="print the export lines of the running testbed")
    sub.add_parser("status", help="report crashed components with their log tails")
    sub.add_parser("build", help="build and cache the Go binaries (testbed and tools) only")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            start = time.monotonic()
            target = build.build()
            print(f"{target}  (testbed; {_build_seconds(target / 'build.json')})")
            for tool in build.build_go_tools():
                print(f"{tool}  ({_build_seconds(tool.parent / 'build.json')})")
            print(f"# build took {time.monotonic() - start:.1f}s", file=sys.stderr)
        elif args.command == "up":
            start = time.monotonic()
            testbed = cluster.Testbed(args.dir, notify_urls=args.notify_url,
                                      cluster_extras=not args.minimal)
            state = testbed.up()
            print(f"# testbed up in {time.monotonic() - start:.1f}s; env file {args.dir}/env.sh",
                  file=sys.stderr)
            sys.stdout.write(state.export_lines())
        elif args.command == "down":
            stopped = cluster.stop(args.dir)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        elif args.command == "env":
            sys.stdout.write(cluster.TestbedState.load(args.dir).export_lines())
        elif args.command == "status":
            dead = cluster.crashed(args.dir)
            for name, tail in dead:
                print(f"== {name} is not running; last log lines:\n{tail}")
            return 1 if dead else 0
    except FileNotFoundError:
        print(f"no testbed state in {args.dir}; run `python -m tests.testbed up`", file=sys.stderr)
        return 1
    except (cluster.TestbedError, build.BuildError) as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
