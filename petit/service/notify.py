"""Webhook deliveries (job key `notify`): a small pool of threads fed by a queue POSTs each one,
so a slow or dead receiver never holds up a run or the scheduler. Connection errors, timeouts,
5xx and 429 are retried with backoff (1 s, 2 s, 4 s ... capped); any other answer is final.
Every attempt is logged and recorded on the run (`Run.notifications`, one entry per webhook):
the url without credentials or query, header values never (they are usually secrets)."""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .. import __version__
from ..core.followups import is_retryable_status, notify_event, retry_delay, webhook_body
from ..core.hooks import NotifyOn, Outgoing, Webhook, expand_webhook
from ..core.model import Run, now_ms
from ..errors import StorageError
from ..storage.store import Store

log = logging.getLogger("petit.notify")
WORKERS = 4
RESPONSE_READ_BYTES = 64 * 1024  # read (and drop) what a receiver answers, at most this much


@functools.cache
def _opener():
    """Built at the first delivery: urllib.request and http.client load ssl (OpenSSL, some MiB),
    which a worker whose jobs have no webhooks never needs."""
    import http.client
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """A redirect is an answer (recorded, not retried): a POST followed as a GET would lose
        its body, and the headers (a token) must not go wherever the redirect points."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    def watched(connection_class):
        class Watched(connection_class):
            """Hands its socket, once connected, to the request's watchdog."""

            def __init__(self, *args, watchdog: _Watchdog, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                self._watchdog = watchdog

            def connect(self) -> None:
                super().connect()
                self._watchdog.watch(self.sock)

        return Watched

    class WatchedHTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            connection = functools.partial(
                watched(http.client.HTTPConnection), watchdog=req.watchdog
            )
            return self.do_open(connection, req)

    class WatchedHTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            connection = functools.partial(
                watched(http.client.HTTPSConnection), watchdog=req.watchdog
            )
            return self.do_open(connection, req, context=self._context)

    return urllib.request.build_opener(NoRedirect(), WatchedHTTP(), WatchedHTTPS())


class _Watchdog:
    """Bounds a whole delivery attempt, not each socket read (a receiver trickling a byte a
    second would hold it as long as it liked): at `secs` it shuts the connection's socket, and
    the read blocked on it returns."""

    def __init__(self, secs: float) -> None:
        self.expired = False
        self._sock = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(secs, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock) -> None:
        with self._lock:
            self._sock = sock
            expired = self.expired
        if expired:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)


def _shut(sock) -> None:
    import socket

    try:  # the plain socket's shutdown: an SSL socket's would drop its state under the reader
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed meanwhile


@dataclass
class _Delivery:
    run: Run
    webhook: Webhook
    event: NotifyOn
    index: int  # its entry in run.notifications
    done: bool = False


class Notifier:
    """`send(webhooks, run)` after the run ended; `close()` at the end. `public_url` (the
    dashboard's origin) puts a link to the run in each body; `environ` gives the `${NAME}`s of
    header values, read when sent."""

    def __init__(
        self,
        store: Store,
        public_url: str | None = None,
        environ: Mapping[str, str] = os.environ,
        workers: int = WORKERS,
    ) -> None:
        self._store = store
        self._public_url = public_url
        self._environ = environ
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._pending: list[_Delivery] = []
        self._lock = threading.Lock()  # run.notifications and their writes
        self._closing = threading.Event()  # backoffs end: one last attempt each
        self._deadline: float | None = None  # past it nothing more is sent
        self._workers = workers
        self._threads: list[threading.Thread] = []

    def send(self, webhooks: tuple[Webhook, ...], run: Run) -> None:
        """Queue a delivery to each webhook that this run's end concerns. Writes nothing (the
        engine thread calls it): each delivery records the run's entries as it starts."""
        deliveries = []
        with self._lock:
            for webhook in webhooks:
                event = notify_event(webhook, run)
                if event is None:
                    continue
                entry = {
                    "url": webhook.safe_url,
                    "event": event.value,
                    "delivered": False,
                    "abandoned": False,
                    "attempts": [],
                }
                run.notifications = [*run.notifications, entry]
                deliveries.append(_Delivery(run, webhook, event, len(run.notifications) - 1))
            if not deliveries:
                return
            self._pending += deliveries
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self._workers:
                thread = threading.Thread(target=self._loop, name="petit-notify", daemon=True)
                self._threads.append(thread)
                thread.start()
        for delivery in deliveries:
            self._queue.put(delivery)

    def close(self, deadline: float | None = None, hurry: threading.Event | None = None) -> None:
        """Give what is pending a last chance (one attempt each, no more backoff) until
        `deadline` (time.monotonic(); None: let every delivery run its course, retries
        included) or `hurry`; then record what is left as abandoned."""
        if deadline is not None:
            self._deadline = deadline
            self._closing.set()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            while thread.is_alive() and not (hurry is not None and hurry.is_set()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                thread.join(0.05 if left is None else min(left, 0.05))
        self._deadline = time.monotonic()  # a delivery still sending records nothing more
        with self._lock:
            for delivery in [d for d in self._pending if not d.done]:
                self._finish(delivery, abandoned=True)

    def _loop(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            except Exception:  # this thread must outlive a bug, or deliveries stop
                log.exception("notification of run %s failed", delivery.run.id)

    def _is_over(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _deliver(self, delivery: _Delivery) -> None:
        webhook, run = delivery.webhook, delivery.run
        body = json.dumps(
            webhook_body(webhook, run, delivery.event, self._public_url, __version__)
        ).encode()
        with self._lock:
            if delivery.done:
                return
            self._record(run)  # its entry shows, pending, while its first attempt is sent
        for attempt in range(1, webhook.retries + 2):
            if self._is_over():
                return  # close() records it abandoned
            last_chance = self._closing.is_set()
            outcome, retryable = self._post(webhook, body)
            delivered = outcome["status_code"] is not None and 200 <= outcome["status_code"] < 300
            last = delivered or not retryable or attempt > webhook.retries or last_chance
            log.log(
                logging.INFO if delivered else logging.WARNING,
                "run %s of job %s: webhook %s (attempt %d): %s%s",
                run.id,
                run.job_id,
                webhook.safe_url,
                attempt,
                outcome["error"] or f"HTTP {outcome['status_code']}",
                "" if last else f"; retrying in {retry_delay(attempt):g}s",
            )
            with self._lock:
                if delivery.done or (self._is_over() and not delivered):
                    return  # close() gave up on it meanwhile (or is about to)
                self._update(delivery, attempts=[*self._entry(delivery)["attempts"], outcome])
                if last:
                    # a last chance that failed where a retry might have passed: abandoned
                    abandoned = last_chance and not delivered and retryable
                    self._finish(delivery, delivered=delivered, abandoned=abandoned)
                    return
                self._record(run)
            self._closing.wait(retry_delay(attempt))  # closing: the last chance comes at once

    def _post(self, webhook: Webhook, body: bytes) -> tuple[dict, bool]:
        """One attempt, bounded whole by the webhook's timeout: its record {at, status_code,
        error, duration_ms}, and whether a failure may pass if tried again. No error names a
        header's value or the url as sent: either may hold a secret."""
        at = now_ms()
        started = time.monotonic()
        status, error, retryable = None, None, True
        timeout = webhook.timeout_secs
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - started))
        outgoing = expand_webhook(webhook, self._environ)
        if outgoing.problem is not None:
            error, retryable = outgoing.problem, False
        else:
            status, error, retryable = self._send(outgoing, body, timeout)
        outcome = {
            "at": at,
            "status_code": status,
            "error": error,
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
        return outcome, retryable

    def _send(
        self, outgoing: Outgoing, body: bytes, timeout: float
    ) -> tuple[int | None, str | None, bool]:
        import urllib.error
        from http.client import HTTPException, InvalidURL
        from urllib.request import Request

        status, error = None, None
        request = Request(
            outgoing.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"petit/{__version__}",
                **outgoing.headers,
            },
        )
        watchdog = request.watchdog = _Watchdog(timeout)
        try:
            with _opener().open(request, timeout=timeout) as response:
                status = response.status
                response.read(RESPONSE_READ_BYTES)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (InvalidURL, ValueError):  # UnicodeEncodeError too; their messages quote values
            return None, "cannot send: http.client refused the url or a header value", False
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError) or watchdog.expired:
                error = f"timed out after {timeout:g}s"
            else:
                error = f"cannot send: {getattr(reason, 'strerror', None) or reason}"
        finally:
            watchdog.cancel()
        if status is None:
            return None, error, True
        if not 200 <= status < 300:
            return status, f"answered HTTP {status}", is_retryable_status(status)
        return status, None, True

    # -- the record (under self._lock) --------------------------------------------------------

    def _entry(self, delivery: _Delivery) -> dict:
        return delivery.run.notifications[delivery.index]

    def _update(self, delivery: _Delivery, **changes) -> None:
        entries = list(delivery.run.notifications)  # replaced, never changed in place
        entries[delivery.index] = {**entries[delivery.index], **changes}
        delivery.run.notifications = entries

    def _finish(
        self, delivery: _Delivery, delivered: bool = False, abandoned: bool = False
    ) -> None:
        delivery.done = True
        self._pending.remove(delivery)
        self._update(delivery, delivered=delivered, abandoned=abandoned)
        if abandoned:
            log.warning(
                "run %s: webhook %s abandoned: petit is stopping",
                delivery.run.id,
                delivery.webhook.safe_url,
            )
        self._record(delivery.run)

    def _record(self, run: Run) -> None:
        try:
            self._store.record_followups(run, notifications=run.notifications)
        except StorageError as exc:
            log.error("run %s: cannot record its notifications: %s", run.id, exc)
