"""The DATA phase in bounded memory and linear time.

aiosmtpd 1.4.6 reads message data one line at a time and keeps every fragment of a line that is
too long until its end arrives: 1 GB without a line break costs 1 GB of memory before the
``500 Line too long`` reply, and a message made of empty lines costs one trip around its loop for
every two bytes. :class:`DataReader` takes the bytes in whatever chunks they arrive and works on
each chunk with the bytes methods (``find``, ``rfind``, ``replace``), a bounded number of Python
steps per kilobyte whatever the line lengths. While the bytes stream in it

- finds the end of data, a line holding only a dot (``CRLF . CRLF``, or ``. CRLF`` first);
- applies aiosmtpd's limits with aiosmtpd's replies and precedence, the first one reached wins:
  a line longer than ``line_length_limit`` bytes with its CRLF (``500``) and more than
  ``size_limit`` bytes of data (``552``);
- undoes dot-stuffing (RFC 5321 4.5.2);
- caps the header block and each of its fields (:class:`HeaderLimits`, ``552 5.3.4``), so that
  no parser behind the gateway is handed a header of megabytes;
- applies the gateway's smuggling rule (:func:`is_smuggling`) to the bytes as they arrived and
  to the unstuffed content (``CRLF . LF`` would otherwise pass as a dot-stuffed line);

and keeps nothing it will refuse: from the moment one of these is certain, bytes are only scanned
for the end of data and dropped. Memory is bounded by the size limit plus the largest chunk.

:func:`read_data` feeds it from an ``asyncio.StreamReader`` without ever consuming a byte past the
end of data (pipelined commands stay in the stream for the command loop).
"""

from __future__ import annotations

import asyncio

END = b"\r\n.\r\n"
# aiosmtpd's own replies (smtp.py, smtp_DATA), so that clients see exactly what they saw before.
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"
# The header caps (RFC 3463 X.3.4, "message too big for system", as large providers answer a header
# over their limits): permanent, since the same message can never pass.
HEADER_TOO_BIG = "552 5.3.4 Message header too big: at most {limit} bytes of header fields"
FIELD_TOO_LONG = (
    "552 5.3.4 Message header field too long: at most {limit} bytes per field, continuation "
    "lines included"
)
# Whatever is buffered: StreamReader.read(n) returns at most n bytes and never waits for more.
READ_EVERYTHING_BUFFERED = 1 << 40

# A dot alone between line-break bytes: every shape but the one framed by CRLF on both sides.
_LONE_DOTS = (b"\r.\r", b"\r.\n", b"\n.\n", b"\n.\r")
_FRAMED_DOT = b"\r\n.\r\n"
_FRAMED_DOT_MASKED = b"\r\n\x00\r\n"
_CR, _LF = 0x0D, 0x0A


def is_smuggling(content: bytes) -> bool:
    """A line holding only a dot, framed on either side by anything but CRLF: the shape of SMTP
    smuggling, where another server would see the end of the message where we do not."""
    return _has_unframed_lone_dot(content, 0, len(content))


def _has_unframed_lone_dot(window: bytes, lo: int, end: int) -> bool:
    """Whether one of the lone-dot shapes lies in ``window[lo:end]``, other than CRLF . CRLF.

    Framed dots are masked first (twice: ``replace`` skips the second of two framings that share a
    CRLF, and no third can be left), so the search is a handful of C-speed scans."""
    if window.find(b".", lo, end) == -1:  # memchr: much faster than the searches below
        return False
    if window.find(b"\n.\r", lo, end) != -1:
        window = window.replace(_FRAMED_DOT, _FRAMED_DOT_MASKED)
        window = window.replace(_FRAMED_DOT, _FRAMED_DOT_MASKED)
    return any(window.find(shape, lo, end) != -1 for shape in _LONE_DOTS)


class _SmugglingScanner:
    """:func:`is_smuggling` over content that arrives in pieces.

    A shape starting at offset s is judged once its 4-byte context (the byte before it, the byte
    after it) has arrived, or at the end; ``_tail`` keeps the last few bytes for that."""

    def __init__(self):
        self._tail = b""
        self._total = 0  # content bytes seen
        self._unjudged = 0  # first offset at which a shape may start that is not judged yet

    def feed(self, content: bytes, final: bool) -> bool:
        window = self._tail + content if self._tail else content
        base = self._total - len(self._tail)  # offset of window[0] in the content
        self._total += len(content)
        end = len(window) if final else len(window) - 1
        found = _has_unframed_lone_dot(window, self._unjudged - base, end)
        self._unjudged = max(self._unjudged, self._total - 3)
        self._tail = window[max(0, self._unjudged - 1) - base :]
        return found


class DataReader:
    """One DATA phase: feed it the bytes after the 354 reply until :meth:`feed` says it has seen
    the end; then read :attr:`error`, :attr:`smuggling` and :attr:`content`."""

    def __init__(
        self,
        line_length_limit: int = 1001,
        size_limit: int | None = None,
        header_limit: int = 0,
        field_limit: int = 0,
    ):
        self.line_length_limit = line_length_limit
        self.size_limit = size_limit or 0
        self.error = ""  # LINE_TOO_LONG, TOO_MUCH_DATA or a header cap's, the first one reached
        self._header = HeaderLimits(header_limit, field_limit)
        self.smuggling = False
        self.done = False
        # End of data: the unprocessed bytes that may be the start of END. At first they are a
        # virtual CRLF, so that ". CRLF" as the very first line ends the data too.
        self._held = b"\r\n"
        self._virtual = 2
        # Lines: bytes of the current line so far (a trailing CR included), and data bytes so far.
        self._line_len = 0
        self._last_cr = False
        self._total = 0
        self._doomed = False  # a limit will certainly be reached: keep nothing from now on
        self._pieces: list[bytes] = []
        self._scanner = _SmugglingScanner()  # the unstuffed content
        # The bytes as sent, after the CRLF that ended the DATA command: unstuffing removes the
        # dot of CRLF "." LF (or a bare CR), which another server may read as the end of data.
        self._wire_scanner = _SmugglingScanner()
        self._wire_scanner.feed(b"\r\n", final=False)

    @property
    def content(self) -> bytes:
        """The message as received, dot-stuffing undone (empty once it is refused)."""
        return b"".join(self._pieces)

    def take_content(self) -> bytes:
        """:attr:`content`, handed over: the reader keeps no copy of it."""
        content = self.content
        self._pieces = []
        return content

    @property
    def keeping(self) -> bool:
        return not (self.error or self.smuggling or self._doomed)

    def feed(self, chunk: bytes) -> bytes | None:
        """Take the next bytes of the stream. Returns None while the end of data is still to come;
        then the bytes that followed it (the client's next commands), possibly b""."""
        if self.done:
            raise ValueError("the end of data has been read already")
        window = self._held + chunk if self._held else chunk
        found = window.find(END) if b"." in window else -1
        if found != -1:
            self._take(window, self._virtual, found + 2, final=True)
            self.done = True
            return window[found + len(END) :]
        held = _partial_end(window)
        cut = len(window) - held
        if cut > self._virtual:
            self._take(window, self._virtual, cut, final=False)
        self._virtual = max(0, self._virtual - cut)
        self._held = window[cut:]
        return None

    # --- the data bytes, in order -------------------------------------------------------------
    def _take(self, window: bytes, start: int, stop: int, final: bool) -> None:
        if not self.error and stop > start:
            raw = window if (start == 0 and stop == len(window)) else window[start:stop]
            line_start, after_cr = self._line_len == 0, self._last_cr
            self._check_lines(raw)
            if self.keeping and self._wire_scanner.feed(raw, final):
                self.smuggling = True
            if self.keeping:
                self._keep(_unstuff(raw, line_start, after_cr), final)
        elif final and self.keeping:
            if self._wire_scanner.feed(b"", final):
                self.smuggling = True
            else:
                self._keep(b"", final)
        if not self.keeping:
            self._pieces.clear()

    def _check_lines(self, raw: bytes) -> None:
        """Apply the line-length and size limits to the next data bytes, the way aiosmtpd does for
        each line in turn: a line longer than the limit before its CRLF (500), then the total
        size with that line (552), then the line's length with its CRLF (500)."""
        limit, size_limit = self.line_length_limit, self.size_limit
        n, base = len(raw), self._total
        self._total += n
        pos = 0
        if self._line_len:  # the line under way in the previous chunk
            if self._last_cr and raw[0] == _LF:
                eol = 1
            else:
                found = raw.find(b"\r\n")
                eol = -1 if found == -1 else found + 2
            if eol == -1:
                self._line_len += n
                self._last_cr = raw[-1] == _CR
                self._check_partial_line()
                return
            if self._line_ends(self._line_len + eol, base + eol):
                return
            pos = eol
        # Complete lines within every limit: each step jumps to the last CRLF within
        # ``limit`` bytes (every line before it is short enough), so steps do not depend on how
        # many lines there are; lines must also end within the size limit.
        region = n if not size_limit else min(n, size_limit - base)
        while True:
            found = raw.rfind(b"\r\n", pos, min(pos + limit, region))
            if found == -1:
                break
            pos = found + 2
        self._line_len, self._last_cr = 0, False
        if pos == n:
            return
        found = raw.find(b"\r\n", pos)
        if found == -1:
            self._line_len = n - pos
            self._last_cr = raw[-1] == _CR
            self._check_partial_line()
            return
        # A complete line that is too long or ends beyond the size limit.
        self._line_ends(found + 2 - pos, base + found + 2)

    def _line_ends(self, length: int, end: int) -> bool:
        """A line of ``length`` bytes (CRLF included) ending at data offset ``end``: set the error
        it reaches, if any, in aiosmtpd's order; True when it reached one."""
        if length - 2 > self.line_length_limit:
            self.error = LINE_TOO_LONG
        elif self.size_limit and end > self.size_limit:
            self.error = TOO_MUCH_DATA
        elif length > self.line_length_limit:
            self.error = LINE_TOO_LONG
        return bool(self.error)

    def _check_partial_line(self) -> None:
        """The last line so far has no CRLF yet: decide what is already certain about it."""
        content_bytes = self._line_len - self._last_cr
        if content_bytes > self.line_length_limit:
            self.error = LINE_TOO_LONG  # too long before its CRLF: aiosmtpd's first check
        elif (self.size_limit and self._total > self.size_limit) or (
            content_bytes + 2 > self.line_length_limit
        ):
            self._doomed = True  # one of the limits is reached when this line ends

    def _keep(self, content: bytes, final: bool) -> None:
        if self._scanner.feed(content, final):
            self.smuggling = True
            return
        if self._header.feed(content):
            self.error = self._header.error
            return
        if content:
            self._pieces.append(content)


class HeaderLimits:
    """The size of the header block and of each of its fields (a field with its continuation
    lines and its line ending), checked on the content as it streams in: the first limit passed
    sets :attr:`error` (then nothing more is looked at). 0 means no limit.

    The header ends at the first empty line, whatever the line endings (``core.mime`` splits
    messages by the same rule). Each chunk costs a bounded number of Python steps whatever its
    lines: folds are masked with ``replace`` (same length, offsets stay), which leaves one line
    feed per field boundary, and the fields are checked by jumping to the last boundary within
    ``field_limit`` bytes, as :meth:`DataReader._check_lines` checks lines."""

    def __init__(self, header_limit: int = 0, field_limit: int = 0):
        self.header_limit = header_limit
        self.field_limit = field_limit
        self.error = ""
        self.ended = not (header_limit or field_limit)
        # The bytes that may begin an empty line, kept for the next chunk: at first a virtual
        # line feed, so that a message starting with an empty line has an empty header.
        self._carry = b"\n"
        self._header = -1  # header bytes so far (the virtual line feed is not one)
        self._field = -1  # bytes of the field under way so far

    def feed(self, content: bytes) -> str:
        """Take the next content bytes; returns the error reply once a limit is passed."""
        if self.ended or self.error or not content:
            return self.error
        window = self._carry + content
        found = [i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i != -1]
        if found:
            stop = min(found) + 1  # up to the line feed of the last header line
            self.ended = True
        else:
            stop = len(window) - (
                2 if window.endswith(b"\n\r") else 1 if window.endswith(b"\n") else 0
            )
            self._carry = window[stop:]
        region = window[:stop]
        self._header += len(region)
        if self.header_limit and self._header > self.header_limit:
            self.error = HEADER_TOO_BIG.format(limit=self.header_limit)
        elif self.field_limit and not self._fields_fit(region):
            self.error = FIELD_TOO_LONG.format(limit=self.field_limit)
        return self.error

    def _fields_fit(self, region: bytes) -> bool:
        """Whether every field ending in ``region``, and the one under way, is within the limit.
        Every line feed in ``region`` has its next byte in the window (a final one is carried),
        so a line feed that no space or tab follows is a field boundary."""
        marks = region.replace(b"\n ", b"\x00 ").replace(b"\n\t", b"\x00\t")
        limit, size = self.field_limit, len(marks)
        first = marks.find(b"\n")
        if first == -1:
            self._field += size
            return self._field <= limit
        if self._field + first + 1 > limit:
            return False
        start = first + 1  # a field starts here
        while size - start > limit:  # a field too long could still lie in marks[start:]
            boundary = marks.rfind(b"\n", start, start + limit)
            if boundary == -1:
                return False
            start = boundary + 1  # every field up to here is within the limit
        last = marks.rfind(b"\n", start)
        self._field = size - (start if last == -1 else last + 1)
        return True


def _partial_end(window: bytes) -> int:
    """The length of the longest suffix of ``window`` that is a proper prefix of END."""
    for length in range(len(END) - 1, 0, -1):
        if window.endswith(END[:length]):
            return length
    return 0


def _unstuff(raw: bytes, line_start: bool, after_cr: bool) -> bytes:
    """Remove the leading dot of every line (RFC 5321 4.5.2); ``raw`` continues the data after a
    line break (``line_start``) or after a CR whose LF may be ``raw[0]`` (``after_cr``)."""
    if line_start and raw[:1] == b".":
        raw = raw[1:]
    elif after_cr and raw[:2] == b"\n.":
        raw = b"\n" + raw[2:]
    return raw.replace(b"\r\n.", b"\r\n") if b"." in raw else raw


async def read_data(stream: asyncio.StreamReader, reader: DataReader) -> None:
    """Feed ``reader`` from ``stream`` until the end of data. Whatever follows the end in the
    bytes read is put back into the (then empty) stream, so the command loop reads it next."""
    while True:
        chunk = await stream.read(READ_EVERYTHING_BUFFERED)
        if not chunk:  # the connection closed; aiosmtpd cancels the session on EOF already
            raise asyncio.CancelledError
        rest = reader.feed(chunk)
        if rest is not None:
            if rest and not stream.at_eof():
                stream.feed_data(rest)
            return
