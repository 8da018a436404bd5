from django.apps import AppConfig


class MailTemplatesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mailtemplates"
    label = "mailtemplates"
    verbose_name = "Templates"
