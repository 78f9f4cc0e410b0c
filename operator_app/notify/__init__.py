"""Notifications: tell people what Headwind noticed and did (docs/notifications.md).

The rest of the code knows two names::

    from operator_app import notify

    notify.emit(notify.Notice(event=notify.Event.UPDATE_APPLIED, kind="Deployment",
                              namespace="team-a", name="web", slot="app",
                              from_ref="reg/app:1.2.0", to_ref="reg/app:1.3.0",
                              policy="minor", actor="alice", request="web-app-5f2c",
                              annotations=workload_annotations))

``emit`` routes the notice (global channels from ``settings.HEADWIND_NOTIFY``, narrowed or
widened by the target's ``headwind.sh/notify``) and queues one Celery task per destination; it
returns at once and never raises.

Importing the package registers its Celery tasks (``.tasks``): ``headwind_site/settings.py``
reads ``settings.HEADWIND_NOTIFY`` through ``.settings``, so every process that loads the
settings, the worker included, knows them.
"""

from . import tasks as _tasks  # noqa: F401 — registers the Celery tasks (see above)
from .emitting import emit
from .notice import Event, Notice

__all__ = ["Event", "Notice", "emit"]
