"""Hostile clients on the control socket (issue 6, "Hostile input: Control socket") against the
real `bin/petit run --no-api`: garbage bytes, a 10 MB line, half a line then silence, 200 idle
connections, clients that hang up before or while the reply comes, many clients at once, a line
that is neither JSON nor UTF-8. Through all of it another client's `petit ctl status` answers
promptly, and afterwards the supervisor is alive and serving (status answers, a trigger runs),
logged no traceback, and holds no more file descriptors than before once the clients are gone.

PETIT_SOAK=1 multiplies the case counts by ten; run with -s to see the figures (cases per kind,
latencies, fd counts)."""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from harness import Service
from jobfiles import job_yaml
from processes import wait_until

from petit.ipc.control import MAX_LINE_BYTES

SEED = int(os.environ.get("PETIT_FUZZ_SEED", "20240606"))
PROMPT_SECS = 5.0  # what "answers promptly" means for a ctl status under attack
FD_MARGIN = 8  # the supervisor may open a few descriptors of its own meanwhile
IDLE_CLIENTS = 200
HANG_UPS = 100
CONCURRENT_CLIENTS = 50
SOAK = os.environ.get("PETIT_SOAK") == "1"
JOBS = {"hello": job_yaml("hello", "echo hello")}
# What a hostile client may not leave in the supervisor's log: tracebacks, and what asyncio logs
# for an exception nobody handled in a connection's task or callback.
BAD_LOG = (
    "Traceback",
    "Task exception was never retrieved",
    "Exception in callback",
    "Unhandled error",
    "socket.send() raised exception",
)


# -- clients --------------------------------------------------------------------------------------


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    """A connected client. A full accept queue answers EAGAIN on a Unix socket (the server is
    busy, not gone): retry until the deadline."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                sock.close()
                raise
            time.sleep(0.005)


def read_lines(sock: socket.socket, count: int | None = None) -> list[dict]:
    """Reply lines until `count` are in, or the server closes."""
    raw = b""
    try:
        while count is None or raw.count(b"\n") < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    except ConnectionResetError:
        pass
    return [json.loads(line) for line in raw.splitlines()]


def ask(path: str, data: bytes, replies: int = 1) -> list[dict]:
    """Send `data` on a fresh connection, shut our side, read up to `replies` reply lines."""
    with connect(path) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we were done: read why
        return read_lines(sock, replies)


def reset_close(sock: socket.socket) -> None:
    """Close at once (SO_LINGER 0): a TCP socket would send a reset; on a Unix socket the
    server's next read or write simply fails."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def timed_status(svc: Service) -> float:
    """`petit ctl status` (the real CLI) under attack: it must answer, and promptly."""
    started = time.monotonic()
    status = svc.call("status")
    elapsed = time.monotonic() - started
    assert status["supervisor"]["pid"] == svc.pid
    assert elapsed < PROMPT_SECS, f"ctl status took {elapsed:.1f}s"
    return elapsed


def num_fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def settle_fds(pid: int, baseline: int) -> int:
    """Descriptors are released as the server notices each hang-up: poll, with a deadline."""
    return wait_until(
        lambda: (n := num_fds(pid)) <= baseline + FD_MARGIN and n,
        timeout=15,
        interval=0.1,
        message=f"the supervisor's fds back within {FD_MARGIN} of {baseline} (now {num_fds(pid)})",
    )


def assert_serving(svc: Service) -> None:
    assert svc.proc.poll() is None, "the supervisor died"
    timed_status(svc)
    run_id = svc.trigger("hello")
    assert svc.wait_run(run_id, "completed").status.value == "completed"
    log = svc.log()
    bad = [marker for marker in BAD_LOG if marker in log]
    assert not bad, f"{bad} in the supervisor's log:\n{log[-4000:]}"


def is_error(reply: dict, code: str = "BAD_REQUEST") -> bool:
    return (
        reply.get("ok") is False
        and reply.get("code") == code
        and isinstance(reply.get("error"), str)
    )


# -- the cases ------------------------------------------------------------------------------------


def garbage(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(rng.randint(1, 4000))
    if kind < 0.5:  # almost JSON
        good = json.dumps({"id": "g", "cmd": "status", "args": {}})
        at = rng.randrange(len(good))
        return (
            good[:at]
            + rng.choice(["", "\x00", "}", "{", '"', "\\", "\ud800", "é"])
            + good[at + 1 :]
        ).encode("utf-8", "surrogatepass")
    if kind < 0.65:  # valid JSON, wrong shapes and values
        return json.dumps(
            rng.choice(
                [
                    None,
                    0,
                    1e308,
                    "status",
                    [],
                    ["status"],
                    {},
                    {"cmd": None},
                    {"cmd": 7},
                    {"cmd": {"a": 1}},
                    {"cmd": "trigger"},
                    {"cmd": "trigger", "args": {"job_id": ""}},
                    {"cmd": "trigger", "args": {"job_id": "x" * 60_000}},
                    {"cmd": "trigger", "args": {"job_id": "\ud800"}},
                    {"cmd": "trigger", "args": {"job_id": "../../etc"}},
                    {"cmd": "cancel", "args": {"run_id": "hello-0"}},
                    {"cmd": "cancel", "args": {"run_id": "hello-" + "9" * 30}},
                    {"cmd": "cancel", "args": {"run_id": 5}},
                    {"cmd": "status", "id": {"x": 1}},
                    {"cmd": "status", "id": [1]},
                    {"cmd": "status", "id": 1.5},
                    {"cmd": "status", "id": 10**4000},
                    {"cmd": "status", "args": "x"},
                    {"cmd": "STATUS"},
                    {"cmd": "status\x00"},
                    {"cmd": "reload", "args": {"unexpected": [1] * 1000}},
                ]
            )
        ).encode()
    if kind < 0.75:
        return rng.choice(
            [
                b"[" * 60_000,
                b"{" * 60_000,
                b'{"a":' * 20_000,
                b"\xff\xfe{}",
                b"\xef\xbb\xbf{}",
                b'{"id": NaN, "cmd": "x"}',
                b'{"id": Infinity}',
                b"\x00" * 1000,
                '{"cmd": "status", "id": "\u2028"}'.encode(),
                b"1" * 5000,
                b"-" * 10,
            ]
        )
    return bytes(rng.choice(b'{}[]":,0123456789abc \t\\') for _ in range(rng.randint(1, 500)))


@pytest.mark.timeout(180)
def test_hostile_clients_leave_the_supervisor_serving(service):
    svc = service(JOBS)
    rng = random.Random(SEED)
    figures: dict[str, object] = {}
    pid = svc.pid
    proc = psutil.Process(pid)
    timed_status(svc)
    baseline = num_fds(pid)
    rss_before = proc.memory_info().rss
    latencies: list[float] = []
    started_all = time.monotonic()

    # garbage: every line gets an error reply and the connection still serves the next one
    cases = 1000 * (10 if SOAK else 1)
    kinds = Counter()
    for _ in range(cases):
        data = garbage(rng).replace(b"\n", b" ")
        replies = ask(svc.socket, data + b"\n" + b'{"id": "after", "cmd": "status"}\n', replies=2)
        if len(data) > MAX_LINE_BYTES:
            assert (
                len(replies) == 1 and is_error(replies[0]) and "longer than" in replies[0]["error"]
            ), replies
            kinds["line over the limit: error, closed"] += 1
            continue
        assert len(replies) == 2, (data[:200], replies)
        first, after = replies
        if first.get("ok") is not True:
            assert isinstance(first.get("error"), str) and first.get("code"), first
            assert first.get("id") is None or isinstance(first["id"], (str, int)), first
        kinds[f"{'ok' if first.get('ok') else first.get('code')}"] += 1
        assert after["ok"] is True and after["id"] == "after", after
    figures["garbage lines"] = dict(kinds)
    latencies.append(timed_status(svc))

    # raw garbage bytes without any newline, then EOF: no reply, no harm
    for _ in range(50):
        assert (
            ask(svc.socket, rng.randbytes(rng.randint(1, 60_000)).replace(b"\n", b""), replies=1)
            == []
        )

    # a 10 MB line: refused with an error once it passes the limit; memory stays bounded
    ten_mb = b'{"cmd": "status", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}\n'
    with connect(svc.socket) as sock:
        sender = threading.Thread(target=_send_quietly, args=(sock, ten_mb), daemon=True)
        sender.start()
        replies = read_lines(sock, 1)
        sender.join(10)
    assert replies and is_error(replies[0]) and "longer than" in replies[0]["error"], replies
    assert proc.memory_info().rss - rss_before < 30 * 1024 * 1024, "the 10 MB line was buffered"
    latencies.append(timed_status(svc))

    # a non-JSON, non-UTF-8 line
    [reply] = ask(svc.socket, b"\xff\xfe\xc3\x28 not json \xa0\xa1\n")
    assert is_error(reply) and reply["id"] is None, reply

    # half a line, then silence: held open while another client is served promptly
    with connect(svc.socket) as half:
        half.sendall(b'{"id": "half", "cmd": "sta')
        latencies.append(timed_status(svc))
        [reply] = ask(svc.socket, b'{"id": "other", "cmd": "status"}\n')
        assert reply["ok"] is True and reply["id"] == "other"
        half.sendall(b'tus"}\n')  # completed late, it is still answered
        [late] = read_lines(half, 1)
        assert late["ok"] is True and late["id"] == "half", late

    # 200 idle connections held open while ctl status answers
    idle = []
    try:
        for _ in range(IDLE_CLIENTS):
            idle.append(connect(svc.socket))
        wait_until(
            lambda: num_fds(pid) >= baseline + IDLE_CLIENTS,
            timeout=10,
            message=f"the supervisor to hold {IDLE_CLIENTS} more descriptors",
        )
        figures["fds with 200 idle clients"] = num_fds(pid)
        latencies.append(timed_status(svc))
        for sock in idle[::20]:  # idle ones can still talk
            sock.sendall(b'{"id": "idle", "cmd": "status"}\n')
            [reply] = read_lines(sock, 1)
            assert reply["ok"] is True and reply["id"] == "idle"
    finally:
        for sock in idle:
            sock.close()
    settle_fds(pid, baseline)

    # requests whose client hangs up before the reply, or after reading part of it
    big = (
        json.dumps({"id": "big", "cmd": "trigger", "args": {"job_id": "x" * 60_000}}).encode()
        + b"\n"
    )
    hang_ups = Counter()
    for number in range(HANG_UPS * (10 if SOAK else 1)):
        sock = connect(svc.socket)
        how = number % 4
        if how == 0:  # ask, hang up at once
            sock.sendall(b'{"id": "gone", "cmd": "status"}\n')
            reset_close(sock)
        elif how == 1:  # several requests, hang up at once
            sock.sendall(b'{"cmd": "status"}\n' * 20)
            sock.close()
        elif how == 2:  # read a little of a 60 KB error reply, then hang up
            sock.sendall(big)
            sock.recv(100)
            reset_close(sock)
        else:  # ask for a big reply, shut writing, leave
            sock.sendall(big * 3)
            sock.shutdown(socket.SHUT_WR)
            sock.close()
        hang_ups[how] += 1
    figures["hang-ups"] = sum(hang_ups.values())
    latencies.append(timed_status(svc))
    settle_fds(pid, baseline)

    # a client that asks and asks and never reads: its replies back up, others are still served
    with connect(svc.socket) as hog:
        hog.setblocking(False)
        sent = 0
        request_line = b'{"id": "hog", "cmd": "status"}\n'
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until both socket buffers are full
            try:
                sent += hog.send(request_line * 100)
            except BlockingIOError:
                time.sleep(0.2)  # give the server one last chance to drain before calling it full
                try:
                    sent += hog.send(request_line * 100)
                except BlockingIOError:
                    break
        figures["never-reading client, bytes sent before blocked"] = sent
        latencies.append(timed_status(svc))
    settle_fds(pid, baseline)

    # many clients at once, each with a few requests on one connection
    def client(number: int) -> int:
        with connect(svc.socket, timeout=30) as sock:
            sock.sendall(
                b'{"id": "%d", "cmd": "status"}\n' % number
                + b"not json\n"
                + b'{"id": %d, "cmd": "trigger", "args": {"job_id": "nope"}}\n' % number
            )
            status, bad, unknown = read_lines(sock, 3)
        assert status["ok"] is True and status["id"] == str(number), status
        assert is_error(bad), bad
        assert is_error(unknown, "NOT_FOUND") and unknown["id"] == number, unknown
        return number

    clients = CONCURRENT_CLIENTS * (4 if SOAK else 1)
    with ThreadPoolExecutor(clients) as pool:
        assert sorted(pool.map(client, range(clients))) == list(range(clients))
    latencies.append(timed_status(svc))

    # afterwards: alive, serving, no descriptor leaked, nothing bad in the log
    after = settle_fds(pid, baseline)
    assert_serving(svc)
    figures.update(
        {
            "fds before": baseline,
            "fds after": after,
            "rss growth MB": round((proc.memory_info().rss - rss_before) / 1e6, 1),
            "ctl status under attack, max s": round(max(latencies), 3),
            "total s": round(time.monotonic() - started_all, 1),
        }
    )
    print("\ncontrol socket hostile clients:", json.dumps(figures, indent=1))


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send until the server stops reading (it closes after refusing the line)."""
    try:
        sock.sendall(data)
    except OSError:
        pass


# -- regressions: a deeply nested argument, a full accept queue ----------------------------------


def test_deeply_nested_args_are_answered_at_once(service):
    svc = service(JOBS)
    depth = 600  # json.loads takes it (its limit is near 1000), pickle does not
    line = b'{"id": "deep", "cmd": "pause", "args": {"x": ' + b"[" * depth + b"]" * depth + b"}}\n"
    started = time.monotonic()
    [reply] = ask(svc.socket, line)
    elapsed = time.monotonic() - started
    svc.call("resume")
    assert reply["id"] == "deep" and (reply["ok"] is True or is_error(reply)), reply
    assert elapsed < 2.0, f"answered after {elapsed:.1f}s: {reply}"
    assert "Traceback" not in svc.log(), svc.log()[-3000:]


def test_ctl_waits_while_the_accept_queue_is_full(service):
    import signal

    from petit.ipc.control import call_socket

    svc = service(JOBS)
    queued: list[socket.socket] = []
    result: dict = {}

    def ctl_status() -> None:
        try:
            result["status"] = call_socket(svc.socket, "status", timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    os.kill(svc.pid, signal.SIGSTOP)  # a busy supervisor: it accepts nothing for a moment
    try:
        while len(queued) < 10_000:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(svc.socket)
            except BlockingIOError:
                sock.close()
                break  # the accept queue is full
            queued.append(sock)
        caller = threading.Thread(target=ctl_status)
        caller.start()
        time.sleep(
            1.0
        )  # fault injection: how long the supervisor stays stopped, not a wait for state
    finally:
        os.kill(svc.pid, signal.SIGCONT)
        caller.join(15)
        for sock in queued:
            sock.close()
    assert "status" in result, (
        f"ctl status failed while petit was only busy: {result.get('error')!r}"
    )
    assert result["status"]["supervisor"]["pid"] == svc.pid
