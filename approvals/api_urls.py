"""``/api/v1/``: the REST API (see approvals/api.py and /api/v1/openapi.json)."""

from django.urls import path, re_path

from . import api, api_workloads

app_name = "api"

urlpatterns = [
    path("updates", api.list_updates, name="updates"),
    path("updates/<str:namespace>/<str:name>", api.get_update, name="update"),
    path("updates/<str:namespace>/<str:name>/approve", api.approve_update, name="approve"),
    path("updates/<str:namespace>/<str:name>/reject", api.reject_update, name="reject"),
    path("workloads", api_workloads.list_workloads, name="workloads"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>", api_workloads.workload,
         name="workload"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/apply-now", api_workloads.apply_now,
         name="apply-now"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/rollback", api_workloads.rollback,
         name="rollback"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/hold/release",
         api_workloads.release_hold, name="release-hold"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/bad-versions/clear",
         api_workloads.clear_bad_version, name="clear-bad-version"),
    path("openapi.json", api.openapi_document, name="openapi"),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
