"""The OpenAPI 3.1 description of ``/api/v1/`` (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from .models import Phase
from .selectors import KINDS, SORTS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ERROR}}}


def _ok(schema_ref: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


_PATH_PARAMS = [
    {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "The namespace of the UpdateRequest (and of its workload)."},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "The UpdateRequest's name."},
]

_FILTERS = [
    {"name": "namespace", "in": "query", "schema": {"type": "string"},
     "description": "Exact namespace; several separated by commas."},
    {"name": "kind", "in": "query", "schema": {"type": "string"},
     "description": f"Target kind ({', '.join(KINDS)}); several separated by commas."},
    {"name": "phase", "in": "query", "schema": {"type": "string"},
     "description": f"Phase ({', '.join(Phase.values)}); several separated by commas."},
    {"name": "policy", "in": "query", "schema": {"type": "string"},
     "description": "Update policy (patch, minor, major, ...); several separated by commas."},
    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 1024},
     "description": "Case-insensitive search in name, target name, current and new image."},
    {"name": "sort", "in": "query",
     "schema": {"type": "string",
                "enum": [key for base in SORTS for key in (base, f"-{base}")]},
     "description": "Order; a leading '-' reverses. Default 'pending': pending first, "
                    "then newest."},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "page_size", "in": "query",
     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
]

_COMMON_ERRORS = {
    "401": _error("Not authenticated (missing, invalid or revoked credentials)."),
    "503": _error("The Kubernetes API server could not be reached."),
}

_ACTION_ERRORS = {
    "400": _error("Malformed body, or a missing reason."),
    **_COMMON_ERRORS,
    "403": _error("Not allowed: missing permission or namespace grant, Kubernetes RBAC "
                  "refusal, or a failed CSRF check on a session request."),
    "404": _error("No such UpdateRequest."),
    "409": _error("Not possible in the request's state: not Pending, expired, stale (the "
                  "workload changed), or the same approver twice."),
}


def _string(nullable: bool = False, fmt: str | None = None) -> dict:
    schema: dict = {"type": ["string", "null"] if nullable else "string"}
    if fmt:
        schema["format"] = fmt
    return schema


SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "reason"],
        "properties": {
            "error": {"type": "string", "description": "A stable code, e.g. conflict.",
                      "examples": ["bad_request", "unauthenticated", "forbidden", "not_found",
                                   "conflict", "csrf_failed", "unavailable"]},
            "reason": {"type": "string", "description": "What went wrong, for people."},
        },
    },
    "Approval": {
        "type": "object",
        "required": ["user", "at"],
        "properties": {"user": _string(), "at": _string(fmt="date-time"),
                       "comment": _string()},
    },
    "UpdateRequest": {
        "type": "object",
        "required": ["namespace", "name", "target", "currentImage", "newImage", "phase",
                     "approvalsRequired", "approvals", "createdAt"],
        "properties": {
            "namespace": _string(),
            "name": _string(),
            "uid": _string(),
            "resourceVersion": _string(),
            "target": {
                "type": "object",
                "properties": {"apiVersion": _string(), "kind": {"type": "string",
                                                                  "enum": list(KINDS)},
                               "name": _string(), "container": _string()},
            },
            "currentImage": _string(),
            "newImage": _string(),
            "newDigest": _string(nullable=True),
            "chart": {
                "type": ["object", "null"],
                "description": "A HelmRelease's chart version (null for container images); "
                               "currentImage/newImage then hold chart references.",
                "properties": {"name": _string(), "sourceURL": _string(),
                               "currentVersion": _string(), "newVersion": _string()},
            },
            "policy": _string(),
            "reason": _string(),
            "source": _string(nullable=True),
            "phase": {"type": "string", "enum": list(Phase.values)},
            "approvalsRequired": {"type": "integer", "minimum": 1},
            "approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}},
            "approvedBy": _string(nullable=True),
            "approvedAt": _string(nullable=True, fmt="date-time"),
            "rejectedBy": _string(nullable=True),
            "rejectedAt": _string(nullable=True, fmt="date-time"),
            "supersededBy": _string(nullable=True),
            "message": _string(),
            "createdAt": _string(fmt="date-time"),
            "expiresAt": _string(nullable=True, fmt="date-time"),
            "completedAt": _string(nullable=True, fmt="date-time"),
            "scheduledFor": _string(nullable=True, fmt="date-time"),
            "updatedAt": _string(nullable=True, fmt="date-time"),
        },
    },
    "UpdateRequestDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/UpdateRequest"},
            {"type": "object", "properties": {"viewer": {
                "type": "object",
                "description": "Whether the caller may approve or reject it.",
                "properties": {"username": _string(), "canApprove": {"type": "boolean"},
                               "reason": _string()},
            }}},
        ],
    },
    "UpdateRequestList": {
        "type": "object",
        "required": ["total", "page", "page_size", "items"],
        "properties": {
            "total": {"type": "integer", "description": "Matching requests, all pages."},
            "page": {"type": "integer"},
            "page_size": {"type": "integer"},
            "items": {"type": "array",
                      "items": {"$ref": "#/components/schemas/UpdateRequest"}},
        },
    },
    "Workload": {
        "type": "object",
        "required": ["kind", "namespace", "name", "policy", "containers", "history"],
        "properties": {
            "kind": {"type": "string"}, "namespace": {"type": "string"},
            "name": {"type": "string"}, "policy": {"type": "string"},
            "containers": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"}, "current": {"type": "string"},
                    "rollout": {"type": ["object", "null"],
                                "description": "The last rollout Headwind followed "
                                               "(headwind.sh/rollout)."},
                    "hold": {"type": ["object", "null"],
                             "description": "Set by a manual rollback: nothing moves the "
                                            "container until released."},
                    "badVersions": {"type": "array", "items": {"type": "string"}},
                    "rollbackTargets": {"type": "array", "items": {"type": "string"},
                                        "description": "Earlier values from the history, "
                                                       "newest first."},
                }}},
            "history": {"type": "array", "items": {"type": "object"},
                        "description": "headwind.sh/update-history, newest first."},
        },
    },
    "RollbackBody": {
        "type": "object",
        "required": ["to"],
        "properties": {
            "container": {"type": "string",
                          "description": "Optional when the workload has one container."},
            "to": {"type": "string", "description": "An earlier image or chart version from "
                                                    "the history (whole, or its tag)."},
            "reason": {"type": "string", "maxLength": 1000},
        },
    },
    "RollbackQueued": {
        "type": "object",
        "required": ["rollback", "message"],
        "properties": {"rollback": {"type": "object"}, "message": {"type": "string"}},
    },
    "ApproveBody": {
        "type": "object",
        "properties": {"comment": {"type": "string", "maxLength": 1000}},
    },
    "RejectBody": {
        "type": "object",
        "required": ["reason"],
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
    },
}


def document(base_url: str = "/api/v1") -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Headwind approvals API",
            "version": "v1",
            "description": (
                "List, read, approve and reject UpdateRequests (headwind.sh/v1alpha1). "
                "The custom resource is the source of truth; lists read its mirror. "
                "An approval that reaches spec.approvalsRequired distinct approvers queues "
                "the update; its outcome appears in the request's phase."
            ),
        },
        "servers": [{"url": base_url}],
        "security": [{"apiToken": []}, {"kubernetesToken": []}, {"session": []}],
        "paths": {
            "/updates": {"get": {
                "operationId": "listUpdates",
                "summary": "List UpdateRequests (pending first, then newest)",
                "parameters": _FILTERS,
                "responses": {"200": _ok("#/components/schemas/UpdateRequestList",
                                         "One page of matching requests."),
                              "400": _error("An unknown filter value or bad pagination."),
                              **_COMMON_ERRORS,
                              "403": _error("Kubernetes RBAC does not allow listing.")},
            }},
            "/updates/{namespace}/{name}": {
                "parameters": _PATH_PARAMS,
                "get": {
                    "operationId": "getUpdate",
                    "summary": "One UpdateRequest",
                    "responses": {"200": _ok("#/components/schemas/UpdateRequestDetail",
                                             "The request."),
                                  **_COMMON_ERRORS,
                                  "403": _error("Kubernetes RBAC does not allow reading it."),
                                  "404": _error("No such UpdateRequest.")},
                },
            },
            "/updates/{namespace}/{name}/approve": {
                "parameters": _PATH_PARAMS,
                "post": {
                    "operationId": "approveUpdate",
                    "summary": "Approve (one of spec.approvalsRequired distinct approvals)",
                    "requestBody": {"required": False, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ApproveBody"}}}},
                    "responses": {"200": _ok("#/components/schemas/UpdateRequest",
                                             "The request after the approval."),
                                  **_ACTION_ERRORS},
                },
            },
            "/updates/{namespace}/{name}/reject": {
                "parameters": _PATH_PARAMS,
                "post": {
                    "operationId": "rejectUpdate",
                    "summary": "Reject for good, with a reason",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/RejectBody"}}}},
                    "responses": {"200": _ok("#/components/schemas/UpdateRequest",
                                             "The rejected request."),
                                  **_ACTION_ERRORS},
                },
            },
            **_workload_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                             "description": "'Token <key>', a key from "
                                            "'manage.py create_api_token USER NAME'."},
                "kubernetesToken": {"type": "http", "scheme": "bearer",
                                    "description": "A Kubernetes token, checked with a "
                                                   "TokenReview; rights come from RBAC "
                                                   "(SubjectAccessReview: patch on the "
                                                   "workload)."},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid",
                            "description": "The Django session; unsafe methods also need "
                                           "the X-CSRFToken header."},
            },
        },
    }


_WORKLOAD_PARAMS = [
    {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "kind", "in": "path", "required": True, "schema": {"type": "string"},
     "description": f"{', '.join(KINDS)}, lower-case or plural as well."},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
]


def _workload_action(operation: str, summary: str, body: dict, ok: dict) -> dict:
    return {"parameters": _WORKLOAD_PARAMS, "post": {
        "operationId": operation, "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {**ok, **_ACTION_ERRORS,
                      "404": _error("No such workload, kind or container."),
                      "409": _error("Not possible now: not in the history, already there, "
                                    "nothing to release.")}}}


def _workload_paths() -> dict:
    workload = _ok("#/components/schemas/Workload", "The workload after the change.")
    filters = [
        {"name": "namespace", "in": "query", "schema": {"type": "string"},
         "description": "Exact namespace; several separated by commas."},
        {"name": "kind", "in": "query", "schema": {"type": "string"}},
        {"name": "policy", "in": "query", "schema": {"type": "string"}},
        {"name": "behind", "in": "query", "schema": {"type": "string", "enum": ["policy", "any"]},
         "description": "Only containers the policy would move (policy), or with any newer "
                        "version (any)."},
        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 1024},
         "description": "Case-insensitive search in name, container and running reference."},
        {"name": "sort", "in": "query", "schema": {"type": "string"}},
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "page_size", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    ]
    return {
        "/workloads": {"get": {
            "operationId": "listWorkloads",
            "summary": "The inventory: every managed container and chart, with its radar",
            "parameters": filters,
            "responses": {"200": {"description": "One page of the inventory.", "content": {
                "application/json": {"schema": {"type": "object",
                                                "required": ["total", "page", "page_size",
                                                             "items"]}}}},
                          "400": _error("An unknown filter value or bad pagination."),
                          **_COMMON_ERRORS,
                          "403": _error("Kubernetes RBAC does not allow listing.")}}},
        "/workloads/{namespace}/{kind}/{name}/apply-now": _workload_action(
            "applyNow", "Apply an update waiting for the maintenance window now (audited)",
            {"type": "object", "required": ["container"],
             "properties": {"container": {"type": "string"}}},
            {"202": {"description": "Queued; the body names the change."}}),
        "/workloads/{namespace}/{kind}/{name}": {"parameters": _WORKLOAD_PARAMS, "get": {
            "operationId": "getWorkload",
            "summary": "A workload's containers, rollouts, holds, bad versions and history",
            "responses": {"200": _ok("#/components/schemas/Workload", "The workload."),
                          **_COMMON_ERRORS,
                          "403": _error("Kubernetes RBAC does not allow reading it."),
                          "404": _error("No such workload.")}}},
        "/workloads/{namespace}/{kind}/{name}/rollback": _workload_action(
            "rollbackWorkload",
            "Roll a container (or chart) back to an earlier value from its history, and hold "
            "it there",
            {"$ref": "#/components/schemas/RollbackBody"},
            {"202": _ok("#/components/schemas/RollbackQueued",
                        "The rollback is queued; the body names the change.")}),
        "/workloads/{namespace}/{kind}/{name}/hold/release": _workload_action(
            "releaseHold", "Let updates move a held container again",
            {"type": "object", "required": ["container"],
             "properties": {"container": {"type": "string"}}}, {"200": workload}),
        "/workloads/{namespace}/{kind}/{name}/bad-versions/clear": _workload_action(
            "clearBadVersion", "Let a version rolled back as bad be applied again",
            {"type": "object", "required": ["container", "version"],
             "properties": {"container": {"type": "string"}, "version": {"type": "string"}}},
            {"200": workload}),
    }
