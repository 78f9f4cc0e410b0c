"""Keep webhook tokens out of logs: ``/webhook/<source>/<token>`` (Docker Hub and Quay cannot
send headers, so their token is in the URL) is logged as ``/webhook/<source>/***``."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(r"(/webhook/[^/\s?\"]+/)[^\s?\"]+")


def redact(text: str) -> str:
    return _TOKEN_IN_PATH.sub(r"\1***", text)


class RedactWebhookTokens(logging.Filter):
    """On a handler: every record leaves with the token replaced (Django logs 4xx/5xx paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
