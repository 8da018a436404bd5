"""The aggregation queries the admin's pages draw from, apart from the drawing: counts per server
and stream over time (``stats.outbound``), one message's timeline (``stats.timeline``), where mail
waits now (``stats.system``) and a server's bounce counts (``stats.bounces``); and the stats API's
figures (``stats.series``), summed from daily roll-ups (``DailyCount``) that ``stats.rollup``
recounts from the raw rows. The admin (``postmark_site``) and the API (``api``) only present
them."""
