"""The aggregation queries the admin's pages draw from, apart from the drawing: counts per server
and stream over time (``stats.outbound``), one message's timeline (``stats.timeline``), where mail
waits now (``stats.system``) and a server's bounce counts (``stats.bounces``). No models; a stats
API and the admin share these functions, and the admin (``postmark_site``) draws their results."""
