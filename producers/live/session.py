"""One session with a Databento live gateway through the official client (``databento.Live``).

:class:`GatewaySession` opens the connection (authentication, the ``mbo`` subscription, ``start_session``), hands
every record to a callback, and on close tells how the session ended as a :class:`SessionEnd`: ``fatal`` when
retrying cannot help (the gateway refused the key, dataset or subscription; the stream was not DBN), otherwise a
drop worth a reconnection. The client's own reconnect policy stays off: it resubscribes without ``start``, which
would leave a gap (see docs/live.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import databento as db
import databento_dbn as dbn

from producers.errors import ProducerError

if TYPE_CHECKING:
    from producers.live.source import LiveOptions

logger = logging.getLogger(__name__)

# Messages of the client's own connection errors (databento/live/session.py): worth retrying.
_TRANSIENT = ("Connection to ", "Authentication with ", "Gateway timeout", "connection lost")
PROTOCOL_LOGGER = "databento.live.protocol"


class _UndecodableInput(logging.Handler):
    """Catches the one trace the client leaves when the gateway's bytes do not decode: it logs the exception
    (a DBNError for the DBN stream, a ValueError for a control line) and closes the connection as if cleanly."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (dbn.DBNError, ValueError)) and self.error is None:
            self.error = exc


class SessionEnd(ProducerError):
    """Why a session could not open or ended; ``fatal`` when retrying cannot help."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class GatewaySession:
    """A ``databento.Live`` client for one connection; records go to ``deliver`` on the client's thread."""

    def __init__(self, options: LiveOptions, start: int | None, deliver: Callable[[Any], bool]) -> None:
        self.opts = options
        self.start = start
        self.where = f"{options.gateway}:{options.port}" if options.gateway else f"the {options.dataset} gateway"
        try:
            self.client = db.Live(
                key=options.key, gateway=options.gateway, port=options.port,
                heartbeat_interval_s=options.heartbeat_s, slow_reader_behavior="warn",
            )
        except ValueError as e:
            raise SessionEnd(f"cannot create the Databento client: {e}", fatal=True) from e
        self._deliver = deliver
        self._undecodable = _UndecodableInput()
        logging.getLogger(PROTOCOL_LOGGER).addHandler(self._undecodable)
        self.client.add_callback(self._on_record, self._callback_failed)

    def open(self) -> str | None:
        """Connect, authenticate, subscribe and start streaming; returns the session id."""
        try:
            self.client.subscribe(
                dataset=self.opts.dataset, schema="mbo", symbols=self.opts.symbols, stype_in=self.opts.stype_in,
                start=self.start,
            )
            self.client.start()
        except ValueError as e:  # the client's own validation of dataset, symbols, stype_in
            self._detach()
            raise SessionEnd(f"invalid subscription: {e}", fatal=True) from e
        except db.BentoError as e:
            self._detach()
            raise self._classify(e, opening=True) from e
        logger.info("session %s streaming from %s", self.client.session_id, self.where)
        return self.client.session_id

    def metadata_start(self) -> int | None:
        meta = self.client.metadata
        return int(meta.start) if meta is not None and meta.start else None

    def connected(self) -> bool:
        return self.client.is_connected()

    def stop(self) -> None:
        """Ask the client to close the connection (returns at once)."""
        if self.client.is_connected():
            self.client.stop()

    def close(self) -> SessionEnd | None:
        """Wait for the connection to close; how it ended (None: closed on request)."""
        try:
            self.client.block_for_close(timeout=10.0)
        except db.BentoError as e:
            return self._classify(e, opening=False)
        finally:
            self._detach()
        return self._not_dbn() or SessionEnd(f"{self.where} closed the connection")

    def _detach(self) -> None:
        logging.getLogger(PROTOCOL_LOGGER).removeHandler(self._undecodable)

    def _not_dbn(self) -> SessionEnd | None:
        error = self._undecodable.error
        if error is None:
            return None
        what = "data that is not DBN" if isinstance(error, dbn.DBNError) else "a line that is not the live protocol"
        return SessionEnd(f"{self.where} sent {what} ({error}); is it a Databento live gateway?", fatal=True)

    def _classify(self, e: Exception, opening: bool) -> SessionEnd:
        text = str(e)
        not_dbn = self._not_dbn()
        if not_dbn is not None:
            return not_dbn
        if text.startswith(_TRANSIENT) or not opening:
            return SessionEnd(f"{self.where}: {text}")
        return SessionEnd(f"{self.where} refused the session: {text} (check DATABENTO_API_KEY and --dataset "
                          f"{self.opts.dataset})", fatal=True)

    def _on_record(self, record: Any) -> None:
        self._deliver(record)

    def _callback_failed(self, e: Exception) -> None:
        logger.error("record handler failed: %r", e)
