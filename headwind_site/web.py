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

httptools sets no limit on a request's head, and uvicorn keeps every header byte a client sends
(150 MB of headers took the process to 231 MB), so :class:`BoundedHttpToolsProtocol` answers 431
and closes the connection once a head passes ``MAX_HEAD_BYTES`` (daphne's Twisted stopped at
16 KiB of headers). uvicorn also waits for ever for a head that never ends (its keep-alive
timeout runs only between requests): a head not complete ``HEAD_TIMEOUT_SECONDS`` after the
connection opened or the request began gets 408 and the connection is closed, so slowly
trickled heads cannot hold connections open. Bodies are bounded in headwind_site/asgi.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Request line plus headers. nginx's default for a whole head is 1 KiB, growing to 4 × 8 KiB;
#: the largest heads Headwind sees are browsers' cookies and OIDC redirects, far below this.
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 10.0


def _closing_answer(status: bytes, text: bytes) -> bytes:
    """A whole plain-text response after which the connection is closed."""
    return (b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(text), text))


_TOO_LARGE = _closing_answer(b"431 Request Header Fields Too Large", b"request head too large")
_TIMED_OUT = _closing_answer(b"408 Request Timeout", b"request head not received in time")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head larger than ``MAX_HEAD_BYTES`` or
    slower than ``HEAD_TIMEOUT_SECONDS``.

    Bytes are counted per chunk read while a head is incomplete; the chunk in which a request
    begins is not counted (it may end a previous request's body), so what is held before the
    refusal is at most the limit plus one read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0
        self._began = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._began = True, 0, True
        if self._head_timer is None:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._began = False
        super().data_received(data)
        if not self._in_head or self._began or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.logger.warning("request head over %d bytes from %s; refused", MAX_HEAD_BYTES,
                                self.client[0] if self.client else "?")
            self.transport.write(_TOO_LARGE)
            self.transport.close()



def config(host: str, port: int, *, access_log: bool = True):
    import uvicorn

    return uvicorn.Config(
        "headwind_site.asgi:application", host=host, port=port, loop="uvloop",
        http=BoundedHttpToolsProtocol, ws="websockets-sansio", lifespan="off", log_config=None,
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
