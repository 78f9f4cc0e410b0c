"""Celery application: executes updates out of the request and watch paths.

``celery -A headwind_site worker`` runs a pool of threads (``CELERY_WORKER_POOL`` in settings):
the tasks are I/O bound, and one process costs a fraction of prefork's one per child.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")

app = Celery("headwind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
