"""``python -m headwind_site.web [-b HOST] [-p PORT]``: the web process.

uvicorn, one process, with uvloop and httptools, serving ``headwind_site.asgi`` (HTTP and
Channels' WebSockets). Chosen on ``bench/ingest.py``'s numbers against daphne (docs/deploy.md):
more deliveries a second on one core and about 28 MiB less memory, daphne's Twisted being the
difference.

uvicorn's own logging setup is not used (``log_config=None``): its loggers propagate to the root
handler that Django's ``LOGGING`` installs, whose filter redacts webhook tokens, so the access log
line (``"POST /webhook/quay/<token>?token=… HTTP/1.1" 202``) leaves with ``***`` in their place.
Forwarded headers are not trusted (``proxy_headers=False``): the client address stays the peer's,
as approvals/auth.py's trusted-proxy check expects.
"""

from __future__ import annotations

import argparse
import os


def config(host: str, port: int, *, access_log: bool = True):
    import uvicorn

    return uvicorn.Config(
        "headwind_site.asgi:application", host=host, port=port, loop="uvloop",
        http="httptools", ws="websockets-sansio", lifespan="off", log_config=None,
        access_log=access_log, proxy_headers=False, server_header=False,
        timeout_graceful_shutdown=20)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m headwind_site.web", description=__doc__)
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")
    import uvicorn

    uvicorn.Server(config(args.bind, args.port, access_log=not args.no_access_log)).run()


if __name__ == "__main__":
    main()
