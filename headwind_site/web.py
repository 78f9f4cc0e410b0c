"""``python -m headwind_site.web [daphne options]``: daphne, with webhook tokens redacted from
its access log (daphne writes request paths verbatim)."""

from __future__ import annotations

import sys

from daphne import cli
from daphne.access import AccessLogGenerator

from .redact import redact


class RedactingAccessLog(AccessLogGenerator):
    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        super().write_entry(host, date, redact(request), status, length, ident, user)


def main(argv: list[str] | None = None) -> None:
    cli.AccessLogGenerator = RedactingAccessLog  # the CLI builds its access log from this name
    args = list(sys.argv[1:] if argv is None else argv)
    cli.CommandLineInterface().run([*args, "headwind_site.asgi:application"])


if __name__ == "__main__":
    main()
