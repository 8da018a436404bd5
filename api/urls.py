"""The API's canonical paths (lower case, no trailing slash). ``api.routing.dispatch`` maps
every spelling clients use onto these (compat §2), so this URLconf is never the root one."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from api.errors import JSON_CONTENT_TYPE, PostmarkJSONRenderer
from api.views import bounces, data_removals, email, stats, suppressions, template_email, webhooks
from api.views import bulk as bulk_views
from api.views import domains as domain_views
from api.views import inbound as inbound_views
from api.views import messages as message_views
from api.views import senders as sender_views
from api.views import servers as server_views
from api.views import streams as stream_views
from api.views import templates as template_views


class SchemaView(SpectacularJSONAPIView):
    authentication_classes = []
    permission_classes = []
    urlconf = "api.urls"

    def finalize_response(self, request, response, *args, **kwargs):
        # Errors (e.g. a wrong method) are Postmark's JSON like everywhere else, not a schema.
        if response.status_code >= 400:
            request.accepted_renderer = PostmarkJSONRenderer()
            request.accepted_media_type = JSON_CONTENT_TYPE
        return super().finalize_response(request, response, *args, **kwargs)


urlpatterns = [
    path("deliverystats", stats.DeliveryStatsView.as_view(), name="deliverystats"),
    path("stats/outbound", stats.OutboundOverviewView.as_view(), name="stats-outbound"),
    *[
        path(
            f"stats/outbound/{name}",
            stats.OutboundSeriesView.as_view(series=name),
            name=f"stats-outbound-{name.replace('/', '-')}",
        )
        for name in stats.SERIES_NAMES
    ],
    path("bounces", bounces.BounceListView.as_view(), name="bounces"),
    path("bounces/tags", bounces.BounceTagsView.as_view(), name="bounce-tags"),
    path("bounces/<str:bounce_id>", bounces.BounceDetailView.as_view(), name="bounce"),
    path("bounces/<str:bounce_id>/dump", bounces.BounceDumpView.as_view(), name="bounce-dump"),
    path(
        "bounces/<str:bounce_id>/activate",
        bounces.BounceActivateView.as_view(),
        name="bounce-activate",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions/dump",
        suppressions.SuppressionDumpView.as_view(),
        name="suppressions-dump",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions",
        suppressions.SuppressionCreateView.as_view(),
        name="suppressions-create",
    ),
    path(
        "message-streams/<str:stream_id>/suppressions/delete",
        suppressions.SuppressionDeleteView.as_view(),
        name="suppressions-delete",
    ),
    # Any letter case: api.routing lower-cases only the words it knows.
    re_path(r"^(?i:webhooks)$", webhooks.WebhookListView.as_view(), name="webhooks"),
    re_path(
        r"^(?i:webhooks)/(?P<webhook_id>[^/]+)$",
        webhooks.WebhookDetailView.as_view(),
        name="webhook",
    ),
    path("email", email.EmailView.as_view(), name="email"),
    path("email/batch", email.EmailBatchView.as_view(), name="email-batch"),
    # The Bulk API (compat §14).
    path("email/bulk", bulk_views.EmailBulkView.as_view(), name="email-bulk"),
    path(
        "email/bulk/<str:bulk_id>",
        bulk_views.EmailBulkStatusView.as_view(),
        name="email-bulk-status",
    ),
    # Templates (compat §9): sending with one, and the server's templates.
    path(
        "email/withtemplate",
        template_email.EmailWithTemplateView.as_view(),
        name="email-with-template",
    ),
    path(
        "email/batchwithtemplates",
        template_email.EmailBatchWithTemplatesView.as_view(),
        name="email-batch-with-templates",
    ),
    path("templates", template_views.TemplateListView.as_view(), name="templates"),
    path(
        "templates/validate",
        template_views.TemplateValidateView.as_view(),
        name="templates-validate",
    ),
    path("templates/push", template_views.TemplatePushView.as_view(), name="templates-push"),
    path(
        "templates/<str:id_or_alias>",
        template_views.TemplateDetailView.as_view(),
        name="template",
    ),
    # Account level (X-Postmark-Account-Token): domains and sender signatures.
    path("domains", domain_views.DomainListView.as_view(), name="domains"),
    path("domains/<str:domain_id>", domain_views.DomainDetailView.as_view(), name="domain"),
    path(
        "domains/<str:domain_id>/verifydkim",
        domain_views.VerifyDkimView.as_view(),
        name="domain-verify-dkim",
    ),
    path(
        "domains/<str:domain_id>/verifyreturnpath",
        domain_views.VerifyReturnPathView.as_view(),
        name="domain-verify-return-path",
    ),
    path(
        "domains/<str:domain_id>/verifyspf",
        domain_views.VerifySpfView.as_view(),
        name="domain-verify-spf",
    ),
    path(
        "domains/<str:domain_id>/rotatedkim",
        domain_views.RotateDkimView.as_view(),
        name="domain-rotate-dkim",
    ),
    path("senders", sender_views.SenderListView.as_view(), name="senders"),
    path("senders/<str:sender_id>", sender_views.SenderDetailView.as_view(), name="sender"),
    path(
        "senders/<str:sender_id>/resend",
        sender_views.SenderResendView.as_view(),
        name="sender-resend",
    ),
    path(
        "senders/<str:sender_id>/verifyspf",
        sender_views.SenderVerifySpfView.as_view(),
        name="sender-verify-spf",
    ),
    path(
        "senders/<str:sender_id>/requestnewdkim",
        sender_views.SenderRequestNewDkimView.as_view(),
        name="sender-request-new-dkim",
    ),
    path("server", server_views.ServerView.as_view(), name="server"),
    path("servers", server_views.ServerListView.as_view(), name="servers"),
    path("servers/<str:server_id>", server_views.ServerDetailView.as_view(), name="server-detail"),
    path("data-removals", data_removals.DataRemovalListView.as_view(), name="data-removals"),
    path(
        "data-removals/<str:removal_id>",
        data_removals.DataRemovalDetailView.as_view(),
        name="data-removal",
    ),
    path("openapi.json", SchemaView.as_view(), name="openapi"),
    path(
        "messages/outbound",
        message_views.OutboundMessageListView.as_view(),
        name="outbound-messages",
    ),
    path("messages/outbound/opens", message_views.OpensView.as_view(), name="opens"),
    path(
        "messages/outbound/opens/<str:message_id>",
        message_views.OpensView.as_view(),
        name="message-opens",
    ),
    path("messages/outbound/clicks", message_views.ClicksView.as_view(), name="clicks"),
    path(
        "messages/outbound/clicks/<str:message_id>",
        message_views.ClicksView.as_view(),
        name="message-clicks",
    ),
    path(
        "messages/outbound/<str:message_id>/details",
        message_views.OutboundMessageDetailsView.as_view(),
        name="outbound-message-details",
    ),
    path(
        "messages/outbound/<str:message_id>/dump",
        message_views.OutboundMessageDumpView.as_view(),
        name="outbound-message-dump",
    ),
    # Inbound (compat §13.3, §13.4).
    path(
        "messages/inbound",
        inbound_views.InboundMessageListView.as_view(),
        name="inbound-messages",
    ),
    path(
        "messages/inbound/<str:message_id>/details",
        inbound_views.InboundMessageDetailsView.as_view(),
        name="inbound-message-details",
    ),
    path(
        "messages/inbound/<str:message_id>/bypass",
        inbound_views.InboundBypassView.as_view(),
        name="inbound-message-bypass",
    ),
    path(
        "messages/inbound/<str:message_id>/retry",
        inbound_views.InboundRetryView.as_view(),
        name="inbound-message-retry",
    ),
    path(
        "triggers/inboundrules",
        inbound_views.InboundRuleListView.as_view(),
        name="inbound-rules",
    ),
    path(
        "triggers/inboundrules/<str:rule_id>",
        inbound_views.InboundRuleDetailView.as_view(),
        name="inbound-rule",
    ),
    path("triggers/tags", inbound_views.TagTriggersView.as_view(), name="tag-triggers"),
    path(
        "triggers/tags/<str:trigger_id>",
        inbound_views.TagTriggersView.as_view(),
        name="tag-trigger",
    ),
    path("message-streams", stream_views.MessageStreamListView.as_view(), name="message-streams"),
    path(
        "message-streams/<str:stream_id>",
        stream_views.MessageStreamDetailView.as_view(),
        name="message-stream",
    ),
    path(
        "message-streams/<str:stream_id>/archive",
        stream_views.MessageStreamArchiveView.as_view(),
        name="message-stream-archive",
    ),
    path(
        "message-streams/<str:stream_id>/unarchive",
        stream_views.MessageStreamUnarchiveView.as_view(),
        name="message-stream-unarchive",
    ),
]
