"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu writes a message into its final file name and then fills it, and a consumer moves away any
file with a matching name before reading it: a consumer that lists the folder while a publisher
is writing takes an empty file, fails to decode it and stops with an "Unrecoverable error" (and
the message is gone; the database keeps the work, so the sweep would find it again). Here a
message is written under a name consumers skip and renamed into place once complete, and a file
that still cannot be decoded (left by a process killed in an older version) is logged and
skipped instead of stopping the worker. Brokers are named by URL: this one is ``fsqueue://``
(registered with kombu when ``postmark_site.celery`` loads).
"""

import logging
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: kombu's _get matches "<stamp>_<id>.<queue>.msg" only.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        while True:
            try:
                return super()._get(queue)
            except ValueError:  # an undecodable file; kombu has already taken it away
                log.warning("skipped an unreadable message file in queue %s", queue)


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """Make ``fsqueue://`` URLs use this transport."""
    TRANSPORT_ALIASES.setdefault("fsqueue", f"{__name__}:Transport")
