"""Django admin: UpdateRequests (read-only mirror, bulk approve/reject), grants, audit, tokens,
and the Notifications page (the configured channels, each with a "send test notification"
button; linked from the admin index).

The bulk actions call the same services as the dashboard and the API, so the same permission,
namespace-grant and lifecycle rules apply row by row; each refusal is reported as a message.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from operator_app.notify import sending as notify_sending
from operator_app.notify.settings import ALL_EVENTS

from . import rollbacks, selectors, services
from .errors import ServiceError
from .models import ApiToken, AuditEvent, NamespaceGrant, Phase, UpdateRequest
from .permissions import PERMISSION, Actor

MAX_BULK = 200


class NamespaceFilter(admin.SimpleListFilter):
    title = "namespace"
    parameter_name = "namespace"

    def lookups(self, request, model_admin):
        names = (UpdateRequest.objects.order_by("namespace")
                 .values_list("namespace", flat=True).distinct()[:500])
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        return queryset.filter(namespace=self.value()) if self.value() else queryset


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             max_length=services.MAX_TEXT, strip=True,
                             help_text="Recorded on each request and in the audit trail.")


@admin.register(UpdateRequest)
class UpdateRequestAdmin(admin.ModelAdmin):
    list_display = ("name", "namespace", "target_kind", "target_name", "container",
                    "image_change", "policy", "phase_badge", "approvals_progress",
                    "created_at", "expires_at")
    list_display_links = ("name",)
    list_filter = (NamespaceFilter, "target_kind", "phase", "policy")
    search_fields = ("name", "target_name", "current_image", "new_image")
    list_per_page = 50
    show_full_result_count = False
    actions = ["approve_selected", "reject_selected", "roll_back_selected"]
    fieldsets = (
        (None, {"fields": ("namespace", "name", "phase", "message")}),
        ("Target", {"fields": ("target_api_version", "target_kind", "target_name",
                               "container", "current_image", "new_image", "new_digest")}),
        ("Policy", {"fields": ("policy", "reason", "source", "approvals_required",
                               "expires_at")}),
        ("Decisions", {"fields": ("approvals", "approved_by", "approved_at", "rejected_by",
                                  "rejected_at", "superseded_by", "completed_at")}),
        ("Cluster", {"fields": ("uid", "resource_version", "created_at", "status_updated_at",
                                "mirrored_at")}),
    )

    # Everything comes from the cluster: nothing is editable here, nothing added or deleted.
    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def get_urls(self):
        # The Notifications page lives here for want of a model of its own: /admin/approvals/
        # updaterequest/notifications/, named "admin:notifications", linked from the index.
        page = self.admin_site.admin_view(notifications_view)  # staff only, CSRF-protected
        return [path("notifications/", page, name="notifications"), *super().get_urls()]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        user = request.user
        return user.has_perm("approvals.view_updaterequest") or user.has_perm(PERMISSION)

    def has_approve_permission(self, request):
        return request.user.has_perm(PERMISSION)

    def get_queryset(self, request):
        # Pending first, then newest; column sorting in the changelist overrides it.
        return selectors.filter_requests({}, queryset=self.model._default_manager.all())

    def get_ordering(self, request):
        return selectors.ordering(None)[:-1]  # the annotation from get_queryset; pk is added

    def get_search_results(self, request, queryset, search_term):
        return selectors.search(queryset, search_term), False

    @admin.display(description="image", ordering="new_image")
    def image_change(self, obj):
        return format_html("{} → <strong>{}</strong>", obj.current_image, obj.new_image)

    @admin.display(description="phase", ordering="phase")
    def phase_badge(self, obj):
        return obj.phase

    @admin.display(description="approvals")
    def approvals_progress(self, obj):
        return f"{len(obj.approvers)}/{obj.approvals_required}"

    # ----------------------------------------------------------------------------------------
    # Bulk actions
    # ----------------------------------------------------------------------------------------

    def _rows(self, request, queryset):
        rows = list(queryset.order_by("namespace", "name")[:MAX_BULK + 1])
        if len(rows) > MAX_BULK:
            self.message_user(request, f"Select at most {MAX_BULK} requests at a time.",
                              messages.ERROR)
            return None
        return rows

    def _report(self, request, verb: str, done: list[str], refused: list[str]) -> None:
        if done:
            self.message_user(request, f"{verb} {len(done)}: {', '.join(done)}",
                              messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Approve selected update requests", permissions=["approve"])
    def approve_selected(self, request, queryset):
        rows = self._rows(request, queryset)
        if rows is None:
            return None
        actor = Actor.from_request(request)
        done, refused = [], []
        for row in rows:
            try:
                updated = services.approve(actor, row.namespace, row.name)
            except ServiceError as exc:
                refused.append(f"{row.namespace}/{row.name}: {exc.reason}")
                continue
            state = updated.phase if updated.phase != Phase.PENDING else \
                f"{len(updated.approvers)} of {updated.approvals_required} approvals"
            done.append(f"{row.namespace}/{row.name} ({state})")
        self._report(request, "Approved", done, refused)
        return None

    @admin.action(description="Roll back selected applied updates (and hold)",
                  permissions=["approve"])
    def roll_back_selected(self, request, queryset):
        """Each applied request's workload container goes back to the image it replaced
        (``spec.currentImage``), through the same service as the dashboard and the API."""
        rows = self._rows(request, queryset)
        if rows is None:
            return None
        actor = Actor.from_request(request)
        done, refused = [], []
        for row in rows:
            if row.phase not in (Phase.COMPLETED, Phase.ROLLED_OUT, Phase.FAILED):
                refused.append(f"{row.namespace}/{row.name}: it is {row.phase}; only applied "
                               "updates can be rolled back")
                continue
            try:
                queued = rollbacks.rollback(actor, row.target_kind, row.namespace,
                                            row.target_name, row.container, row.current_image,
                                            f"rolled back from the admin ({row.name})",
                                            request=row.name)
            except ServiceError as exc:
                refused.append(f"{row.namespace}/{row.name}: {exc.reason}")
                continue
            done.append(f"{row.namespace}/{row.target_name} {queued.container} → "
                        f"{queued.to_image}")
        self._report(request, "Rolling back", done, refused)
        return None

    @admin.action(description="Reject selected update requests…", permissions=["approve"])
    def reject_selected(self, request, queryset):
        rows = self._rows(request, queryset)
        if rows is None:
            return None
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            actor = Actor.from_request(request)
            done, refused = [], []
            for row in rows:
                try:
                    services.reject(actor, row.namespace, row.name, form.cleaned_data["reason"])
                except ServiceError as exc:
                    refused.append(f"{row.namespace}/{row.name}: {exc.reason}")
                    continue
                done.append(f"{row.namespace}/{row.name}")
            self._report(request, "Rejected", done, refused)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject update requests",
            "opts": self.model._meta,
            "rows": rows,
            "form": form,
            "action": "reject_selected",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/approvals/updaterequest/reject_selected.html",
                                context)


CHANNEL_TITLES = {"slack": "Slack", "teams": "Microsoft Teams", "webhook": "JSON webhook"}


@require_http_methods(["GET", "POST"])
def notifications_view(request):
    """The globally configured notification channels (never their URLs), each with a button
    that sends the canned test notification at once and reports the (scrubbed) answer.

    Staff only (``admin_view``); the button is a CSRF-protected POST, answered with a redirect
    back here (no resubmission on reload).
    """
    config = settings.HEADWIND_NOTIFY
    if request.method == "POST":
        name = request.POST.get("channel", "")
        title = CHANNEL_TITLES.get(name, name)
        if name not in config.channels:
            messages.error(request, f"{title or 'That channel'} is not configured.")
        else:
            outcome = notify_sending.send_test(name)
            if outcome.ok:
                messages.success(request, f"{title}: test notification delivered "
                                          f"({outcome.detail}).")
            else:
                messages.error(request, f"{title}: test notification failed: {outcome.detail}.")
        return HttpResponseRedirect(reverse("admin:notifications"))
    rows = []
    for name, channel in config.channels.items():
        events = "all" if channel.events == ALL_EVENTS else \
            ", ".join(sorted(str(e) for e in channel.events))
        signing = ""
        if name == "webhook":
            signing = "signed (X-Headwind-Signature)" if config.webhook_secret else \
                "unsigned: set HEADWIND_WEBHOOK_SECRET"
        rows.append({"name": name, "title": CHANNEL_TITLES[name], "source": channel.source,
                     "events": events, "signing": signing})
    context = {
        **admin.site.each_context(request),
        "title": "Notifications",
        "channels": rows,
        "unconfigured": [CHANNEL_TITLES[n] for n in CHANNEL_TITLES if n not in config.channels],
        "dashboard_url": config.dashboard_url,
        "storm": {"threshold": config.storm_threshold, "window": config.storm_window},
    }
    return TemplateResponse(request, "admin/notifications.html", context)


class NamespaceGrantForm(forms.ModelForm):
    class Meta:
        model = NamespaceGrant
        fields = ("group", "user", "pattern")

    def clean_pattern(self):
        pattern = self.cleaned_data["pattern"].strip()
        if not pattern or any(ch.isspace() for ch in pattern):
            raise forms.ValidationError("One namespace or shell-style pattern, no spaces.")
        return pattern

    def clean(self):
        data = super().clean()
        if bool(data.get("group")) == bool(data.get("user")):
            raise forms.ValidationError("Choose either a group or a user.")
        return data


@admin.register(NamespaceGrant)
class NamespaceGrantAdmin(admin.ModelAdmin):
    form = NamespaceGrantForm
    list_display = ("pattern", "group", "user")
    list_filter = ("group",)
    search_fields = ("pattern", "group__name", "user__username")
    autocomplete_fields = ()


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "action", "target", "result", "reason")
    list_filter = ("action", "result")
    search_fields = ("actor", "target", "reason")
    date_hierarchy = "at"
    list_per_page = 100

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created with ``manage.py create_api_token``; here they are seen and revoked."""

    list_display = ("name", "user", "created_at", "last_used_at")
    search_fields = ("name", "user__username")
    exclude = ("key_hash",)

    def get_readonly_fields(self, request, obj=None):
        return ["user", "name", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
