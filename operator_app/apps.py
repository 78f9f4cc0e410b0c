from django.apps import AppConfig


class OperatorAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "operator_app"
