pytest_plugins = ["tests.testbed.fixtures"]

# CI runs every Hypothesis test with a fixed seed, so a run's result does not depend on luck;
# local runs keep exploring new examples (and find what CI then keeps checking).
import os  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings as _hypothesis  # noqa: E402

_hypothesis.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis.load_profile("ci")


# --- HEADWIND_TEST_DATABASE=postgres: the database-backed tests on the testbed's PostgreSQL ----
# (tests/settings.py; `make test` runs them once on SQLite and once on PostgreSQL)


def _postgres() -> bool:
    return os.environ.get("HEADWIND_TEST_DATABASE", "").strip().lower() == "postgres"


def _uses_database(item) -> bool:
    """A test that reaches the database: marked django_db, or with a fixture that needs it
    (db, transactional_db, live_server, celery_worker, installation, ...)."""
    return (item.get_closest_marker("django_db") is not None
            or "django_db_setup" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL only the database-backed tests run: the rest ran on SQLite already and
    would run the same code again."""
    if not _postgres():
        return
    keep = [item for item in items if _uses_database(item)]
    dropped = [item for item in items if not _uses_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config):
    return f"database: {'postgres (the testbed)' if _postgres() else 'sqlite'}"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, request):
    """With PostgreSQL, start the testbed (its server) before pytest-django creates the test
    database, and point the settings at it. Being a dependency of ``django_db_setup``, the
    testbed is also stopped only after the test database is done with."""
    if not _postgres():
        return
    from django.conf import settings

    from headwind_site.settings import database_from_url

    state = request.getfixturevalue("testbed")
    real = database_from_url(state.database_url)
    # In place: Django's connection handler and any connection made already share this dict.
    settings.DATABASES["default"].update(
        {key: real[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")})


@pytest.fixture(scope="session")
def django_db_keepdb(request):
    """The testbed's PostgreSQL cluster is thrown away with the testbed, so the test database is
    not dropped at the end (which would fail while a server thread still holds a connection)."""
    return bool(request.config.getvalue("reuse_db")) or _postgres()


def _retry_flush_on_deadlock() -> None:
    """On PostgreSQL, a transactional test's teardown TRUNCATEs every table while the
    operator's mirror and inventory threads (other processes on the same test database) may be
    writing: PostgreSQL then breaks the lock cycle by failing one side with "deadlock
    detected", and when that side is the TRUNCATE the test errors although nothing is wrong.
    SQLite only ever waits. The teardown is tried again (a fresh TRUNCATE), a few times."""
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    teardown = TransactionTestCase._fixture_teardown

    def _deadlock(error: BaseException | None) -> bool:
        while error is not None:
            if type(error).__name__ in {"DeadlockDetected", "LockNotAvailable"}:
                return True
            error = error.__cause__ or error.__context__
        return False

    def _fixture_teardown(self):
        for attempt in range(5):
            try:
                return teardown(self)
            except CommandError as error:
                if attempt == 4 or not _deadlock(error):
                    raise

    TransactionTestCase._fixture_teardown = _fixture_teardown


if _postgres():
    _retry_flush_on_deadlock()
