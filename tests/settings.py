"""Test settings: the real settings in development mode, with a database that the Celery worker,
the operators and the web server (separate processes) share with the tests.

``HEADWIND_TEST_DATABASE`` chooses it: ``sqlite`` (the default) is a file, ``postgres`` the
testbed's PostgreSQL server (tests/testbed/cluster.py). With ``postgres`` the pytest process
learns the server's address only when the testbed is up; the root ``conftest.py`` fills it in
then (``django_db_modify_db_settings``). The processes the tests start get it in their
environment (``HEADWIND_TESTBED_DATABASE_URL``), and the test database's name in
``HEADWIND_TEST_DB``, as they get the SQLite file's path.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HEADWIND_DEV", "true")
TEST_DATABASE = os.environ.get("HEADWIND_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgres"):
    raise RuntimeError(f"HEADWIND_TEST_DATABASE={TEST_DATABASE!r}: expected sqlite or postgres")

from headwind_site.settings import *  # noqa: E402,F403
from headwind_site.settings import database_from_url  # noqa: E402

if TEST_DATABASE == "postgres":
    # Until the testbed is up (in the pytest process) the address is a placeholder no test
    # can reach: pytest-django blocks the database until conftest.py has put the real one in.
    _url = (os.environ.get("HEADWIND_TESTBED_DATABASE_URL")
            or "postgres://headwind@127.0.0.1:9/headwind")
    DATABASES = {"default": database_from_url(_url)}
    if os.environ.get("HEADWIND_TEST_DB"):  # a process started by the tests: their database
        DATABASES["default"]["NAME"] = os.environ["HEADWIND_TEST_DB"]
else:
    _db = Path(os.environ.setdefault(
        "HEADWIND_TEST_DB",
        str(Path(tempfile.gettempdir()) / f"headwind-test-{os.getpid()}.sqlite3"),
    ))
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
