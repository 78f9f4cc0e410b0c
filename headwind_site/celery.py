"""Celery application: executes updates out of the request and watch paths."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")

app = Celery("headwind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
