from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("webhook/", include("registry.urls")),
    path("api/v1/", include("approvals.api_urls")),
    path("", include("approvals.urls")),
    path("", include("django_prometheus.urls")),
]

if settings.HEADWIND_OIDC_ENABLED:  # single sign-on callbacks (mozilla-django-oidc)
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
