import logging

from django.apps import AppConfig

log = logging.getLogger("registry")


class RegistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "registry"

    def ready(self) -> None:
        """Say at start which webhook sources accept deliveries without a secret."""
        from . import auth
        from .webhooks import PARSERS

        open_sources = sorted(s for s in PARSERS if not auth.is_configured(s))
        if open_sources and auth.allow_unauthenticated():
            log.warning("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED is on: webhooks %s accept "
                        "deliveries from anyone", ", ".join(open_sources))
