"""eventhost's side of a BigchainDB event plugin: the module `eventhost`.

A plugin's `run(queue)` receives an `eventhost.Queue`; each `queue.get()`
returns an `eventhost.Event` with `.type` (1 or 2), `.data` and `.seq`.
Once the host shuts down and the plugin has received everything, `get()`
raises `eventhost.ShutDown` (a `queue.ShutDown` on Python 3.13 and later);
a `run` that lets it propagate ends cleanly.

The host adds `Queue` and `Event` (written in Rust) to this module when it
creates it.
"""

import logging
import queue as _queue
import threading

BLOCK_VALID = 1
BLOCK_INVALID = 2


class EventTypes:
    """The event types, as bigchaindb.events.EventTypes names them."""

    ALL = ~0
    BLOCK_VALID = BLOCK_VALID
    BLOCK_INVALID = BLOCK_INVALID


class ShutDown(getattr(_queue, "ShutDown", Exception)):
    """The host is shutting down and the plugin has received every event:
    return from run()."""


class _HostStream:
    """A text stream whose lines go to the host's log (sys.stdout, sys.stderr)."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, log, level, name):
        self._log = log
        self._level = level
        self._pending = ""
        self._lock = threading.Lock()
        self.name = name

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        with self._lock:
            lines = (self._pending + text).split("\n")
            self._pending = lines.pop()
        for line in lines:
            self._log(self._level, line)
        return len(text)

    def flush(self):
        with self._lock:
            pending, self._pending = self._pending, ""
        if pending:
            self._log(self._level, pending)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    @property
    def closed(self):
        return False


class _HostLogHandler(logging.Handler):
    """Sends log records to the host's log, at their level."""

    def __init__(self, log):
        super().__init__()
        self._log = log
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        try:
            message = self.format(record)
            if record.name != "root":
                message = "%s: %s" % (record.name, message)
            self._log(record.levelno, message)
        except Exception:
            self.handleError(record)


def _route_output(log, level):
    """print() and logging from now on go to the host's log through `log`
    (a callable taking a `logging` level number and a message)."""
    import sys

    for old in (sys.stdout, sys.stderr):
        if isinstance(old, _HostStream):
            old.flush()
    sys.stdout = _HostStream(log, logging.INFO, "<stdout>")
    sys.stderr = _HostStream(log, logging.WARNING, "<stderr>")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _HostLogHandler):
            root.removeHandler(handler)
    root.addHandler(_HostLogHandler(log))
    root.setLevel(level)


def _flush_output():
    import sys

    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _HostStream):
            stream.flush()
