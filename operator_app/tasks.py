"""Celery tasks of the operator. Tasks parse arguments and call a service; they are idempotent."""

from celery import shared_task

from . import kube


@shared_task
def cluster_version() -> str:
    """Which API server the worker reaches: a cheap end-to-end check of worker, broker and creds."""
    api = kube.api_client()
    try:
        return kube.probe(api).version
    finally:
        api.close()
