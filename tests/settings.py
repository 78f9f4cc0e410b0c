"""Test settings: the real settings in development mode, with a file database that the Celery
worker (a separate process) shares with the tests."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HEADWIND_DEV", "true")
_db = Path(os.environ.setdefault(
    "HEADWIND_TEST_DB", str(Path(tempfile.gettempdir()) / f"headwind-test-{os.getpid()}.sqlite3")
))

from headwind_site.settings import *  # noqa: E402,F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_db),
        "TEST": {"NAME": str(_db)},
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
