"""``/api/v1/``: the REST API (see approvals/api.py and /api/v1/openapi.json)."""

from django.urls import path, re_path

from . import api

app_name = "api"

urlpatterns = [
    path("updates", api.list_updates, name="updates"),
    path("updates/<str:namespace>/<str:name>", api.get_update, name="update"),
    path("updates/<str:namespace>/<str:name>/approve", api.approve_update, name="approve"),
    path("updates/<str:namespace>/<str:name>/reject", api.reject_update, name="reject"),
    path("openapi.json", api.openapi_document, name="openapi"),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
