from django.db import models


class AuthFailureCount(models.Model):
    """Failed SMTP logins per subject (a client address or a keyed digest of a user name) and
    time bucket: the throttle every gateway process shares (see ``smtpgw.throttle``)."""

    subject = models.CharField(max_length=80)
    bucket_start = models.BigIntegerField(help_text="Unix time, seconds")
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "bucket_start"], name="smtpgw_authfailure_subject_bucket"
            )
        ]
        indexes = [models.Index(fields=["bucket_start"], name="smtpgw_authfailure_bucket")]

    def __str__(self):
        return f"{self.subject} @{self.bucket_start}: {self.count}"
