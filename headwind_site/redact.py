"""Keep secrets in URLs out of logs.

Two places carry webhook tokens in a URL: the last path segment (``/webhook/<source>/<token>``,
for Docker Hub and Quay, which cannot send headers) and the query string (``?token=…``, for
Azure Event Grid and others). Both are logged by Django (4xx/5xx lines) and by the web server's
access log, so every logged path has its webhook token replaced by ``***`` and the value of every
query parameter replaced by ``***`` (the names stay, for debugging).
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(r"(/webhook/[^/\s?\"]+/)[^\s?\"#]+")
_QUERY_VALUE = re.compile(r"([?&][^=&\s\"#]*=)[^&\s\"#]*")


def redact(text: str) -> str:
    return _QUERY_VALUE.sub(r"\1***", _TOKEN_IN_PATH.sub(r"\1***", text))


class RedactWebhookTokens(logging.Filter):
    """On a handler: every record leaves with URL secrets replaced (Django logs 4xx/5xx paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
