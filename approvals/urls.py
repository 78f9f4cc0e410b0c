"""The dashboard's URLs (mounted at ``/``, namespace ``approvals``) and sign-in under ``accounts/``.

Sign-in sits at the default ``settings.LOGIN_URL`` (``/accounts/login/``), outside the namespace so
Django's own auth views and templates find their URL names (``login``, ``password_change``, ...).
"""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views, workload_views

dashboard = [
    path("", views.dashboard, name="dashboard"),
    path("updates/<str:namespace>/<str:name>", views.detail, name="detail"),
    path("updates/<str:namespace>/<str:name>/row", views.row, name="row"),
    path("updates/<str:namespace>/<str:name>/approve", views.approve, name="approve"),
    path("updates/<str:namespace>/<str:name>/reject", views.reject, name="reject"),
    path("workloads/", workload_views.workloads, name="workloads"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>", workload_views.workload,
         name="workload"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/apply-now", workload_views.apply_now,
         name="apply-now"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/rollback", workload_views.rollback,
         name="rollback"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/hold/release",
         workload_views.release_hold, name="release-hold"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/bad-versions/clear",
         workload_views.clear_bad_version, name="clear-bad-version"),
]

urlpatterns = [
    path("", include((dashboard, "approvals"))),
    path("accounts/login/", auth_views.LoginView.as_view(
        next_page="approvals:dashboard", redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("accounts/", include("django.contrib.auth.urls")),  # password change and reset
]
