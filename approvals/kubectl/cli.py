"""``kubectl-headwind``: the command line. kubectl runs it for ``kubectl headwind ...`` with
the rest of the line; the usual kubectl flags work before or after the sub-command."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence

from operator_app import kube

from .commands import COMMANDS, Session
from .errors import Failure

DESCRIPTION = """\
Headwind's UpdateRequests and workload history, with your own kubeconfig and rights.

Approving goes through the Kubernetes API in your name (proven by the API server's admission
policy); rejecting, rolling back and the radar go through Headwind's API with your own bearer
token (--headwind-url or HEADWIND_URL)."""

EXAMPLES = """\
examples:
  kubectl headwind list --pending -A
  kubectl headwind show web-1-3-0-1a2b3c4d5e -n team-a
  kubectl headwind approve web-1-3-0-1a2b3c4d5e -n team-a --comment "tested in staging"
  kubectl headwind reject web-1-3-0-1a2b3c4d5e -n team-a --reason "1.3.0 breaks login"
  kubectl headwind history deployment/web -n team-a
  kubectl headwind rollback deployment/web -n team-a --reason "1.3 leaks memory"
  kubectl headwind radar -A --behind policy

docs/kubectl.md describes every command, the rights each needs and how approvals are proven."""

#: Sub-command -> the -o formats it prints.
FORMATS = {"list": ("json", "yaml", "wide", "name"), "show": ("json", "yaml", "wide", "name"),
           "approve": ("json", "yaml"), "reject": ("json", "yaml"),
           "history": ("json", "yaml", "wide"), "rollback": ("json", "yaml"),
           "radar": ("json", "yaml", "wide")}
#: Sub-commands that take -A.
ACROSS_NAMESPACES = ("list", "radar")


def _common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The kubectl flags. On sub-commands their default is "not given", so a flag given before
    the sub-command is not overwritten by the sub-command's default."""
    def default(value):
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("kubectl flags")
    group.add_argument("-n", "--namespace", default=default(None),
                       help="the namespace (default: the context's, else 'default')")
    group.add_argument("-A", "--all-namespaces", action="store_true", default=default(False),
                       help="across all namespaces (list and radar)")
    group.add_argument("--context", default=default(None),
                       help="the kubeconfig context (default: its current-context)")
    group.add_argument("--kubeconfig", default=default(None),
                       help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    group.add_argument("-o", "--output", choices=("json", "yaml", "wide", "name"),
                       default=default(None), help="json, yaml, wide or name")
    group.add_argument("--headwind-url", default=default(None), metavar="URL",
                       help="Headwind's web address, for reject, rollback and radar "
                            "(default: $HEADWIND_URL)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common(common, defaults=False)
    parser = argparse.ArgumentParser(
        prog="kubectl headwind", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=text, description=text)

    sub = command("list", "UpdateRequests, with the columns of `kubectl get ur`")
    sub.add_argument("--pending", action="store_true", help="only Pending requests")
    sub = command("show", "one UpdateRequest in full")
    sub.add_argument("name", metavar="NAME")
    sub = command("approve", "approve an UpdateRequest in your own name (Kubernetes API)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--comment", default="", help="a note kept with your approval")
    sub = command("reject", "reject an UpdateRequest for good (Headwind's API)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--reason", required=True, help="why (required)")
    sub = command("history", "a workload's update history, rollouts, holds and bad versions")
    sub.add_argument("target", metavar="KIND/NAME")
    sub.add_argument("-c", "--container", help="only this container (or 'chart')")
    sub = command("rollback", "roll a container back to an earlier version (Headwind's API)")
    sub.add_argument("target", metavar="KIND/NAME")
    sub.add_argument("--to", metavar="VERSION",
                     help="a version from the history: a tag, a chart version or a whole "
                          "reference (default: the newest earlier one)")
    sub.add_argument("-c", "--container", help="the container (or 'chart'); needed when there "
                                               "are several")
    sub.add_argument("--reason", default="", help="why (kept in the history and the hold)")
    sub = command("radar", "per managed container: the running version, the newest its policy "
                           "accepts, how far behind (Headwind's API)")
    sub.add_argument("--behind", choices=("policy", "any"),
                     help="only containers the policy would move (policy), or with any newer "
                          "version (any)")
    sub.add_argument("--kind", metavar="KIND",
                     help="only this kind of workload (deployment, sts, hr, ...)")
    return parser


_SHORT_WITH_EQUALS = re.compile(r"^-([noc])=(.*)$")


def _normalise(argv: Sequence[str]) -> list[str]:
    """kubectl (pflag) accepts ``-n=team-a``; argparse would read the value as ``=team-a``."""
    result: list[str] = []
    for arg in argv:
        match = _SHORT_WITH_EQUALS.match(arg)
        result += [f"-{match.group(1)}", match.group(2)] if match else [arg]
    return result


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(_normalise(argv))
    if args.command is None:
        parser.print_help()
        parser.exit(0)
    if args.all_namespaces and args.command not in ACROSS_NAMESPACES:
        parser.error(f"-A/--all-namespaces applies to list and radar only, not "
                     f"{args.command}")
    if args.output and args.output not in FORMATS[args.command]:
        parser.error(f"-o {args.output} is not an output of {args.command}; one of: "
                     + ", ".join(FORMATS[args.command]))
    return args


def _server_error(exc: kube.KubeError) -> str:
    """As kubectl prints a failed call."""
    if exc.status:
        return f"Error from server ({exc.reason or exc.status}): {exc.message}"
    return f"error: {exc.message}"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retries are not the user's news
    args = parse(sys.argv[1:] if argv is None else argv)
    session = Session(args)
    try:
        return COMMANDS[args.command](session)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except kube.KubeError as exc:
        print(_server_error(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubectl headwind list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
