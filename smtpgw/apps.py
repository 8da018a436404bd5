from django.apps import AppConfig


class SmtpgwConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "smtpgw"
    verbose_name = "SMTP gateway"
