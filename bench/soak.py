#!/usr/bin/env python3
"""Soak test for axon: steady message load and /sync long polls while the server and its
embedded PostgreSQL are killed and restarted, then a check that nothing acknowledged was
lost, duplicated, or hidden from /sync.

What it does:
  1. Starts `axon serve` (the given binary) on a fresh temporary data dir, with open
     registration and rate limits off, listening on a free loopback port; axon runs its
     own PostgreSQL cluster under the data dir. axon's output goes to axon.log in the work
     dir.
  2. Registers --users users, creates one public room and has every user join it.
  3. Load: --senders threads send m.room.message events (each with a unique sequence
     number); a send counts as acknowledged only on 200 with an event_id. Failed sends
     (connection errors, 5xx, 503, 429) are retried with the same txnId until
     acknowledged or the run ends. Every user long-polls /sync, records the messages it
     sees and, when a timeline is "limited", pages /messages backwards to fill the gap.
  4. Chaos: every --chaos-min..--chaos-max seconds, one of: kill -9 axon (then start it
     again; the orphaned postmaster is stopped and restarted by the new axon), kill -9
     the postmaster only (axon's supervisor restarts it; skipped with --no-pg-kill, and
     meaningless for binaries without the supervisor), or SIGTERM axon and start it
     again. Each outage is timed until /versions and a request that needs the database
     (/messages) answer 200 again (after a postmaster kill: once a new postmaster runs).
  5. At the end: stops the load, lets every /sync catch up, pages the whole room through
     /messages, replays some txnIds, and checks that every acknowledged event is in the
     room and was seen by every user's /sync, and that no txnId produced two events.
     Prints a summary and writes it as JSON; exits 1 if anything acknowledged was lost,
     duplicated, or missed by a /sync, or if axon did not recover from a disruption.
  6. Stops axon with SIGTERM and removes the work dir (unless --keep).

Run (from the repository root, after `cargo build --release`):

    python3 bench/soak.py --binary target/release/axon --duration 300

Python 3.11 standard library only. This is a manual tool: it is NOT part of CI or of
./scripts/test. As root the embedded cluster runs as user `postgres`, so the work dir is
made mode 0755.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

HTTP_TIMEOUT = 15.0  # every request but /sync
SYNC_TIMEOUT_MS = 5000  # the long-poll timeout asked of the server
SYNC_HTTP_TIMEOUT = 40.0
START_TIMEOUT = 180.0  # first start includes initdb
RECOVERY_TIMEOUT = 120.0
PG_RESTART_TIMEOUT = 60.0  # for a new postmaster after the old one was killed
ERROR_GRACE = 3.0  # errors this close to a disruption are expected

T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[{now():7.1f}s] {msg}", flush=True)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int  # 0: no HTTP answer (see error)
    body: dict | None
    error: str | None  # refused, reset, timeout, other:<Exception>; or http:<code>:<errcode>
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Client:
    """One fresh connection per request: simple, and nothing stale survives a restart."""

    def __init__(self, port: int):
        self.port = port

    def call(self, method, path, body=None, token=None, timeout=HTTP_TIMEOUT) -> Reply:
        started = now()
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        except ConnectionRefusedError:
            return Reply(0, None, "refused", started, now())
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                http.client.IncompleteRead):
            return Reply(0, None, "reset", started, now())
        except (TimeoutError, socket.timeout):
            return Reply(0, None, "timeout", started, now())
        except (OSError, http.client.HTTPException) as e:
            return Reply(0, None, f"other:{type(e).__name__}:{e}", started, now())
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        error = None
        if status != 200:
            errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
            error = f"http:{status}:{errcode}"
        return Reply(status, parsed, error, started, now())


# --------------------------------------------------------------------------- axon process


class Axon:
    """The axon process under test, and the cluster it runs."""

    def __init__(self, binary: str, workdir: str, port: int):
        self.binary = binary
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "axon.log")
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.lock = threading.Lock()
        self.closed = False  # set by the final stop: no more starts
        os.makedirs(self.data_dir, exist_ok=True)
        os.chmod(self.data_dir, 0o755)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AXON_") or k == "AXON_LOG"}
        # ruma's state resolution logs two INFO lines per event; keep axon.log readable.
        env.setdefault("AXON_LOG", "info,ruma_state_res=warn")
        env.update({
            "AXON_SERVER_NAME": "localhost",
            "AXON_DATA_DIR": self.data_dir,
            "AXON_LISTEN__CLIENT": f"127.0.0.1:{self.port}",
            "AXON_REGISTRATION__MODE": "open",
            "AXON_RATE_LIMITS__ENABLED": "false",
        })
        return env

    def start(self) -> None:
        with self.lock:
            if self.closed:
                raise SystemExit("the soak test is stopping; axon is not started again")
            self._start()

    def _start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(f"\n===== soak: start #{self.starts} at {now():.1f}s =====\n".encode())
            # Its own session: a Ctrl-C on the terminal reaches only this script, which
            # then stops axon itself.
            self.proc = subprocess.Popen(
                [self.binary, "serve"], env=self.env(), stdin=subprocess.DEVNULL,
                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds until the process exited, or None if it is still running."""
        if self.proc is None:
            return 0.0
        started = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic() - started

    def stop(self, timeout: float = 60.0) -> tuple[float | None, int | None]:
        """SIGTERM and wait; SIGKILL after `timeout`. Returns (seconds or None, exit code).
        No start after this one."""
        with self.lock:
            self.closed = True
        if not self.alive():
            return 0.0, self.proc.returncode if self.proc else None
        self.send_signal(signal.SIGTERM)
        took = self.wait_exit(timeout)
        if took is None:
            log(f"axon did not exit {timeout:.0f}s after SIGTERM; killing it")
            self.send_signal(signal.SIGKILL)
            self.wait_exit(10)
        return took, self.proc.returncode

    # The cluster lives under data_dir, or under the target of data_dir/postgres when
    # data_dir is not reachable by the cluster's user.
    def cluster_root(self) -> str:
        link = os.path.join(self.data_dir, "postgres")
        if os.path.islink(link):
            return os.path.realpath(link)
        return self.data_dir

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.cluster_root(), "pgdata", "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if postgres_alive(pid) else None

    def stop_orphaned_cluster(self) -> None:
        """After axon is gone: a postmaster it left behind is stopped."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        log(f"stopping leftover postmaster {pid}")
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not postgres_alive(pid):
                    return
                time.sleep(0.2)


def postgres_alive(pid: int) -> bool:
    """The PID runs and is a postgres process (not a zombie, not a reused PID)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    state = stat[stat.rfind(")") + 2:].split()[0]
    return state not in ("Z", "X") and comm in ("postgres", "postmaster")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- shared state


@dataclass
class User:
    user_id: str
    token: str
    device_id: str


@dataclass
class Send:
    sender: int
    user: User
    txn: str
    seq: int
    first_try: float
    attempts: int = 0
    event_id: str | None = None
    acked_at: float | None = None
    latency: float | None = None  # of the request that got the 200
    failed: str | None = None  # a non-retryable answer


@dataclass
class Outage:
    kind: str
    at: float
    seconds: float | None  # until /versions and whoami answer 200; None: never
    versions_seconds: float | None
    shutdown_seconds: float | None = None  # SIGTERM only: until the process exited
    exit_code: int | None = None


@dataclass
class Run:
    args: argparse.Namespace
    client: Client
    axon: Axon
    room_id: str = ""
    users: list[User] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sends: list[Send] = field(default_factory=list)
    seq: int = 0
    send_requests: int = 0
    errors: list[tuple[str, str, float, float]] = field(default_factory=list)
    windows: list[list[float]] = field(default_factory=list)  # [start, end] of disruptions
    outages: list[Outage] = field(default_factory=list)
    kills: dict = field(default_factory=lambda: {"axon_kill9": 0, "postmaster_kill9": 0,
                                                  "axon_sigterm": 0})
    unexpected_exits: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop_load: threading.Event = field(default_factory=threading.Event)
    stop_sync: threading.Event = field(default_factory=threading.Event)
    load_stopped_at: float = 0.0

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def error(self, what: str, reply: Reply) -> None:
        with self.lock:
            self.errors.append((what, reply.error or f"http:{reply.status}",
                                reply.started, reply.ended))

    def note(self, msg: str) -> None:
        log("NOTE: " + msg)
        with self.lock:
            self.notes.append(f"{now():.1f}s {msg}")

    def open_window(self) -> list[float]:
        window = [now(), math.inf]
        with self.lock:
            self.windows.append(window)
        return window

    def expected(self, started: float, ended: float) -> bool:
        return any(started <= w[1] + ERROR_GRACE and ended >= w[0] - 0.5
                   for w in self.windows)


# --------------------------------------------------------------------------- readiness


def probe(run: Run) -> bool:
    """A request that needs the database: the newest event of the room (whoami before the
    room exists). /versions alone is served without it."""
    if not run.users:
        return True
    if run.room_id:
        path = f"/_matrix/client/v3/rooms/{q(run.room_id)}/messages?dir=b&limit=1"
    else:
        path = "/_matrix/client/v3/account/whoami"
    return run.client.call("GET", path, token=run.users[0].token, timeout=5).ok


def wait_ready(run: Run, timeout: float) -> tuple[float | None, float | None]:
    """Polls /versions, then a database request, until both answer 200. Returns the
    seconds until each did (None on timeout or when axon exited)."""
    started = time.monotonic()
    deadline = started + timeout
    versions_at = None
    while time.monotonic() < deadline:
        if not run.axon.alive():
            return versions_at, None
        if versions_at is None:
            if run.client.call("GET", "/_matrix/client/versions", timeout=5).status == 200:
                versions_at = time.monotonic() - started
                continue
        elif probe(run):
            return versions_at, time.monotonic() - started
        time.sleep(0.2)
    return versions_at, None


def start_until_ready(run: Run, timeout: float) -> tuple[float | None, float | None]:
    """Starts axon, restarting it if it exits during start-up (up to 3 times)."""
    for _ in range(3):
        run.axon.start()
        versions, ready = wait_ready(run, timeout)
        if ready is not None:
            return versions, ready
        if run.axon.alive():
            run.note(f"axon start #{run.axon.starts} not ready after {timeout:.0f}s; killing it")
            run.axon.send_signal(signal.SIGKILL)
            run.axon.wait_exit(10)
        else:
            run.note(f"axon start #{run.axon.starts} exited with {run.axon.proc.returncode} "
                     "during start-up")
    return None, None


def restart_hard(run: Run, why: str) -> None:
    """kill -9 and start again, for a server that does not recover by itself."""
    run.note(f"{why}; kill -9 axon and start it again")
    run.axon.send_signal(signal.SIGKILL)
    run.axon.wait_exit(30)
    if start_until_ready(run, RECOVERY_TIMEOUT)[1] is None:
        raise SystemExit("axon does not come back; giving up")


# --------------------------------------------------------------------------- setup


def setup(run: Run) -> None:
    c = run.client
    for i in range(run.args.users):
        for _ in range(5):
            r = c.call("POST", "/_matrix/client/v3/register", {
                "username": f"soak{i}", "password": f"soak-password-{i}",
                "auth": {"type": "m.login.dummy"}})
            if r.ok:
                break
            time.sleep(1)
        if not r.ok:
            raise SystemExit(f"registering soak{i} failed: {r.error} {r.body}")
        run.users.append(User(r.body["user_id"], r.body["access_token"], r.body["device_id"]))
    owner = run.users[0]
    r = c.call("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
               token=owner.token)
    if not r.ok:
        raise SystemExit(f"createRoom failed: {r.error} {r.body}")
    run.room_id = r.body["room_id"]
    for user in run.users[1:]:
        r = c.call("POST", f"/_matrix/client/v3/join/{q(run.room_id)}", {}, token=user.token)
        if not r.ok:
            raise SystemExit(f"{user.user_id} joining failed: {r.error} {r.body}")
    log(f"{len(run.users)} users in {run.room_id}")


# --------------------------------------------------------------------------- load


RETRYABLE = {0, 429, 500, 502, 503, 504}


def sender(run: Run, index: int) -> None:
    """Sends one message at a time, retrying the same txnId until it is acknowledged."""
    user = run.users[index % len(run.users)]
    count = 0
    while not run.stop_load.is_set():
        count += 1
        send = Send(index, user, f"soak-{index}-{count}", run.next_seq(), now())
        with run.lock:
            run.sends.append(send)
        path = (f"/_matrix/client/v3/rooms/{q(run.room_id)}/send/m.room.message/"
                f"{q(send.txn)}")
        body = {"msgtype": "m.text", "body": f"soak message {send.seq}",
                "soak_seq": send.seq, "soak_txn": send.txn}
        backoff = 0.25
        while True:
            send.attempts += 1
            with run.lock:
                run.send_requests += 1
            r = run.client.call("PUT", path, body, token=user.token)
            if r.ok and isinstance(r.body.get("event_id"), str):
                send.event_id = r.body["event_id"]
                send.acked_at = r.ended
                send.latency = r.seconds
                break
            run.error("send", r)
            if r.status not in RETRYABLE:
                send.failed = r.error
                run.note(f"send {send.txn} got a non-retryable {r.error}: {r.body}")
                break
            if run.stop_load.is_set():
                break
            delay = backoff * random.uniform(0.5, 1.5)
            if r.status == 429 and isinstance(r.body, dict) and r.body.get("retry_after_ms"):
                delay = max(delay, r.body["retry_after_ms"] / 1000)
            time.sleep(min(delay, 3.0))
            backoff = min(backoff * 2, 2.0)


class Syncer(threading.Thread):
    """One user's /sync loop: records every m.room.message it sees, filling gaps."""

    def __init__(self, run: Run, user: User):
        super().__init__(daemon=True, name=f"sync-{user.user_id}")
        self.run_ = run
        self.user = user
        self.known: set[str] = set()  # every event ID seen in the room, any type
        self.messages: set[str] = set()
        self.since: str | None = None
        self.last_new = now()
        self.syncs = 0
        self.syncs_after_stop = 0
        self.limited = 0
        self.gap_pages = 0
        self.gap_events = 0
        self.slowest = 0.0

    def record(self, events: list) -> int:
        new = 0
        for e in events:
            eid = e.get("event_id")
            if not isinstance(eid, str):
                continue
            self.known.add(eid)
            if e.get("type") == "m.room.message" and eid not in self.messages:
                self.messages.add(eid)
                new += 1
        if new:
            self.last_new = now()
        return new

    def run(self) -> None:
        run = self.run_
        while not run.stop_sync.is_set():
            params = {"timeout": str(SYNC_TIMEOUT_MS if self.since else 0)}
            if self.since:
                params["since"] = self.since
            after_stop = run.stop_load.is_set()
            r = run.client.call("GET", "/_matrix/client/v3/sync?" + urllib.parse.urlencode(params),
                                token=self.user.token, timeout=SYNC_HTTP_TIMEOUT)
            self.slowest = max(self.slowest, r.seconds)
            if not r.ok or not isinstance(r.body.get("next_batch"), str):
                run.error("sync", r)
                time.sleep(0.5)
                continue
            room = r.body.get("rooms", {}).get("join", {}).get(run.room_id)
            if room:
                timeline = room.get("timeline", {})
                if timeline.get("limited"):
                    self.limited += 1
                    if not self.fill_gap(timeline.get("prev_batch")):
                        continue  # sync again from the same token
                self.record(timeline.get("events", []))
            self.since = r.body["next_batch"]
            self.syncs += 1
            if after_stop:
                self.syncs_after_stop += 1

    def fill_gap(self, prev_batch: str | None) -> bool:
        """Pages /messages backwards from prev_batch until it reaches an event this user
        already had (or the start of the room). False if it could not finish."""
        run = self.run_
        if not prev_batch:
            run.note(f"{self.user.user_id}: limited timeline without prev_batch")
            return False
        before = set(self.known)
        token = prev_batch
        while True:
            path = (f"/_matrix/client/v3/rooms/{q(run.room_id)}/messages?"
                    + urllib.parse.urlencode({"dir": "b", "from": token, "limit": 100}))
            r = get_with_retry(run, "gap", path, self.user.token, run.stop_sync)
            if r is None:
                return False
            self.gap_pages += 1
            chunk = r.body.get("chunk", [])
            reached = any(e.get("event_id") in before for e in chunk)
            self.gap_events += self.record(chunk)
            end = r.body.get("end")
            if reached or not chunk or not end or end == token:
                return True
            token = end


def get_with_retry(run: Run, what: str, path: str, token: str,
                   stop: threading.Event | None = None, limit: float = 120.0) -> Reply | None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        r = run.client.call("GET", path, token=token)
        if r.ok:
            return r
        run.error(what, r)
        time.sleep(0.5)
    return None


# --------------------------------------------------------------------------- chaos


def chaos(run: Run, end_at: float) -> None:
    try:
        chaos_loop(run, end_at)
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        if not run.axon.closed:
            run.note(f"chaos stopped: {e!r}")
        raise


def chaos_loop(run: Run, end_at: float) -> None:
    kinds = ["axon_kill9", "axon_sigterm"]
    if not run.args.no_pg_kill:
        kinds.append("postmaster_kill9")
    while True:
        wake = now() + random.uniform(run.args.chaos_min, run.args.chaos_max)
        while now() < min(wake, end_at) and not run.stop_load.is_set():
            time.sleep(0.5)
            if not run.axon.alive() and not run.stop_load.is_set():
                code = run.axon.proc.returncode
                run.note(f"axon exited by itself with {code}; starting it again")
                window = run.open_window()
                ready = start_until_ready(run, RECOVERY_TIMEOUT)[1]
                window[1] = now()
                with run.lock:
                    run.unexpected_exits.append({"at": round(window[0], 1), "exit_code": code,
                                                 "recovery_seconds": ready})
                if ready is None:
                    raise SystemExit("axon does not come back; giving up")
        if run.stop_load.is_set() or now() >= end_at - 5:
            return
        disrupt(run, random.choice(kinds))


def disrupt(run: Run, kind: str) -> None:
    """One disruption, timed until axon serves database requests again."""
    axon = run.axon
    pid = axon.postmaster_pid() if kind == "postmaster_kill9" else None
    if kind == "postmaster_kill9" and pid is None:
        run.note("no live postmaster in postmaster.pid; killing axon instead")
        kind = "axon_kill9"
    run.kills[kind] += 1
    window = run.open_window()
    outage = Outage(kind, round(window[0], 1), None, None)
    started = time.monotonic()
    if kind == "axon_kill9":
        log(f"chaos: kill -9 axon (pid {axon.proc.pid})")
        axon.send_signal(signal.SIGKILL)
        axon.wait_exit(30)
        versions, ready = start_until_ready(run, RECOVERY_TIMEOUT)
    elif kind == "axon_sigterm":
        log(f"chaos: SIGTERM axon (pid {axon.proc.pid})")
        axon.send_signal(signal.SIGTERM)
        took = axon.wait_exit(60)
        if took is None:
            run.note("axon still running 60s after SIGTERM; killing it")
            axon.send_signal(signal.SIGKILL)
            axon.wait_exit(10)
        else:
            outage.shutdown_seconds = round(took, 2)
        outage.exit_code = axon.proc.returncode
        if axon.proc.returncode != 0:
            run.note(f"axon exited with {axon.proc.returncode} after SIGTERM")
        versions, ready = start_until_ready(run, RECOVERY_TIMEOUT)
    else:
        log(f"chaos: kill -9 postmaster (pid {pid})")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            run.note(f"postmaster {pid} was already gone")
        # The backends of the dead postmaster may answer for a moment: wait for a new
        # postmaster before asking whether the server is back.
        versions, ready = None, None
        deadline = time.monotonic() + PG_RESTART_TIMEOUT
        while time.monotonic() < deadline and axon.alive():
            new = axon.postmaster_pid()
            if new is not None and new != pid:
                versions, ready = wait_ready(run, RECOVERY_TIMEOUT)
                break
            time.sleep(0.2)
        if ready is None:
            # Not an outage the server recovered from by itself: it stays None.
            restart_hard(run, "axon did not bring the cluster back after the postmaster kill")
    window[1] = now()
    if ready is not None:
        outage.seconds = round(time.monotonic() - started, 2)
    outage.versions_seconds = None if versions is None else round(versions, 2)
    run.outages.append(outage)
    if ready is None:
        log(f"chaos: {kind}: axon did not recover by itself")
    else:
        log(f"chaos: {kind}: back after {outage.seconds}s "
            f"(/versions after {outage.versions_seconds}s)")
    if ready is None and kind != "postmaster_kill9":
        raise SystemExit("axon does not come back; giving up")


# --------------------------------------------------------------------------- verification


def scan_room(run: Run) -> dict[str, dict]:
    """Every event of the room, paging /messages backwards from the end."""
    events: dict[str, dict] = {}
    token = None
    pages = 0
    while True:
        params = {"dir": "b", "limit": 100}
        if token:
            params["from"] = token
        path = f"/_matrix/client/v3/rooms/{q(run.room_id)}/messages?" + urllib.parse.urlencode(params)
        r = get_with_retry(run, "scan", path, run.users[0].token)
        if r is None:
            raise SystemExit("cannot page the room's /messages")
        pages += 1
        chunk = r.body.get("chunk", [])
        for e in chunk:
            if isinstance(e.get("event_id"), str):
                events[e["event_id"]] = e
        end = r.body.get("end")
        if not chunk or not end or end == token:
            break
        token = end
    log(f"room scan: {len(events)} events in {pages} pages")
    return events


def replay(run: Run, acked: list[Send]) -> tuple[int, int, list[str]]:
    """Sends acknowledged txnIds again: each must answer the event ID it answered first."""
    retried = [s for s in acked if s.attempts > 1]
    others = [s for s in acked if s.attempts == 1]
    sample = retried + random.sample(others, min(len(others), run.args.replay_sample))
    mismatched, failed, examples = 0, 0, []
    for s in sample:
        path = (f"/_matrix/client/v3/rooms/{q(run.room_id)}/send/m.room.message/{q(s.txn)}")
        body = {"msgtype": "m.text", "body": f"soak message {s.seq}",
                "soak_seq": s.seq, "soak_txn": s.txn}
        for _ in range(10):
            r = run.client.call("PUT", path, body, token=s.user.token)
            if r.ok or r.status not in RETRYABLE:
                break
            time.sleep(0.5)
        if not r.ok:
            failed += 1
            examples.append(f"{s.txn}: replay answered {r.error}")
        elif r.body.get("event_id") != s.event_id:
            mismatched += 1
            examples.append(f"{s.txn}: first {s.event_id}, replay {r.body.get('event_id')}")
    log(f"replayed {len(sample)} txnIds ({len(retried)} that had been retried)")
    return len(sample), mismatched + failed, examples[:10]


def scan_log(path: str) -> dict:
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    errors = warns = panics = 0
    samples: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = ansi.sub("", line).rstrip()
                if " ERROR " in line or line.startswith("ERROR"):
                    errors += 1
                    if len(samples) < 15:
                        samples.append(line[:300])
                elif " WARN " in line or line.startswith("WARN"):
                    warns += 1
                if "panicked" in line:
                    panics += 1
    except OSError:
        pass
    return {"error_lines": errors, "warn_lines": warns, "panics": panics,
            "error_samples": samples}


def summarize(run: Run, syncers: list[Syncer], room: dict[str, dict],
              replayed: tuple[int, int, list[str]], load_seconds: float) -> dict:
    acked = [s for s in run.sends if s.event_id]
    acked_ids = {s.event_id for s in acked}
    lost = [s for s in acked if s.event_id not in room]

    # One event per txnId: group the room's soak messages by sender and txnId.
    by_txn: dict[tuple[str, str], list[str]] = {}
    for eid, e in room.items():
        content = e.get("content") or {}
        if e.get("type") == "m.room.message" and "soak_txn" in content:
            by_txn.setdefault((e.get("sender"), content["soak_txn"]), []).append(eid)
    duplicates = {f"{k[0]} {k[1]}": v for k, v in by_txn.items() if len(v) > 1}
    acked_keys = {(s.user.user_id, s.txn) for s in acked}
    landed_unacked = sum(1 for k in by_txn if k not in acked_keys)
    wrong_id = [s.txn for s in acked if s.event_id in room
                and len(by_txn.get((s.user.user_id, s.txn), [])) == 1
                and by_txn[(s.user.user_id, s.txn)][0] != s.event_id]

    sync_missing = {y.user.user_id: len(acked_ids - y.messages) for y in syncers}
    sync = {y.user.user_id: {"syncs": y.syncs, "limited": y.limited, "gap_pages": y.gap_pages,
                             "events_from_gaps": y.gap_events,
                             "slowest_sync_seconds": round(y.slowest, 2),
                             "missing": sync_missing[y.user.user_id]} for y in syncers}

    errors: dict[str, int] = {}
    unexpected: dict[str, int] = {}
    unexpected_examples: list[str] = []
    for what, kind, started, ended in run.errors:
        key = f"{what} {kind}"
        errors[key] = errors.get(key, 0) + 1
        if not run.expected(started, ended):
            unexpected[key] = unexpected.get(key, 0) + 1
            if len(unexpected_examples) < 10:
                unexpected_examples.append(f"{started:.1f}-{ended:.1f}s {key}")

    outages = []
    for o in run.outages:  # the errors each disruption caused, to tell them apart
        until = o.at + (o.seconds if o.seconds is not None else RECOVERY_TIMEOUT) + ERROR_GRACE
        caused: dict[str, int] = {}
        for what, kind, started, ended in run.errors:
            if started <= until and ended >= o.at - 0.5:
                caused[f"{what} {kind}"] = caused.get(f"{what} {kind}", 0) + 1
        outages.append({**o.__dict__, "errors": caused})

    outage_secs = [o.seconds for o in run.outages if o.seconds is not None]
    latencies = [s.latency * 1000 for s in acked]
    to_ack = [(s.acked_at - s.first_try) * 1000 for s in acked]

    def ms(v):
        return None if v is None else round(v, 1)

    passed = (not lost and not duplicates and not wrong_id and replayed[1] == 0
              and all(v == 0 for v in sync_missing.values())
              and all(o.seconds is not None for o in run.outages))
    return {
        "passed": passed,
        "binary": run.args.binary,
        "run_seconds": round(load_seconds, 1),
        "users": len(run.users),
        "senders": run.args.senders,
        "sends_attempted": len(run.sends),
        "send_requests": run.send_requests,
        "sends_acknowledged": len(acked),
        "sends_retried": sum(1 for s in run.sends if s.attempts > 1),
        "sends_unacknowledged_at_end": sum(1 for s in run.sends if not s.event_id and not s.failed),
        "sends_failed_non_retryable": sum(1 for s in run.sends if s.failed),
        "landed_but_unacknowledged": landed_unacked,
        "kills": run.kills,
        "unexpected_axon_exits": run.unexpected_exits,
        "outage_seconds": {
            "count": len(run.outages),
            "min": min(outage_secs) if outage_secs else None,
            "median": round(statistics.median(outage_secs), 2) if outage_secs else None,
            "max": max(outage_secs) if outage_secs else None,
            "not_recovered": sum(1 for o in run.outages if o.seconds is None),
        },
        "outages": outages,
        "acknowledged_lost": len(lost),
        "lost_examples": [f"{s.txn} {s.event_id}" for s in lost[:10]],
        "duplicate_txns": len(duplicates),
        "duplicate_examples": dict(list(duplicates.items())[:10]),
        "acked_event_id_differs_from_room": len(wrong_id),
        "txn_replays": replayed[0],
        "txn_replay_mismatches": replayed[1],
        "txn_replay_examples": replayed[2],
        "sync_missing": sync_missing,
        "sync": sync,
        "send_latency_ms": {"p50": ms(percentile(latencies, 50)),
                            "p99": ms(percentile(latencies, 99)),
                            "max": ms(max(latencies) if latencies else None)},
        "send_to_ack_ms_with_retries": {"p50": ms(percentile(to_ack, 50)),
                                        "p99": ms(percentile(to_ack, 99)),
                                        "max": ms(max(to_ack) if to_ack else None)},
        "errors": dict(sorted(errors.items())),
        "errors_outside_disruptions": dict(sorted(unexpected.items())),
        "errors_outside_disruptions_examples": unexpected_examples,
        "notes": run.notes,
        "axon_log": scan_log(run.axon.log_path),
    }


def print_summary(s: dict) -> None:
    o = s["outage_seconds"]
    lines = [
        "",
        "================ axon soak summary ================",
        f"binary                   {s['binary']}",
        f"run length               {s['run_seconds']} s ({s['users']} users, {s['senders']} senders)",
        f"sends attempted          {s['sends_attempted']} ({s['send_requests']} requests, "
        f"{s['sends_retried']} retried)",
        f"sends acknowledged       {s['sends_acknowledged']} "
        f"(unacknowledged at end {s['sends_unacknowledged_at_end']}, non-retryable "
        f"{s['sends_failed_non_retryable']}, landed unacknowledged {s['landed_but_unacknowledged']})",
        "kills                    " + ", ".join(f"{k} {v}" for k, v in s["kills"].items()),
        f"unexpected axon exits    {len(s['unexpected_axon_exits'])}",
        f"outages (s)              min {o['min']} / median {o['median']} / max {o['max']} "
        f"over {o['count']} (not recovered: {o['not_recovered']})",
        f"acknowledged lost        {s['acknowledged_lost']}",
        f"duplicate txnIds         {s['duplicate_txns']} (replayed {s['txn_replays']}, "
        f"mismatched {s['txn_replay_mismatches']})",
        "missing from /sync       " + ", ".join(f"{u} {n}" for u, n in s["sync_missing"].items()),
        f"send latency (ms)        p50 {s['send_latency_ms']['p50']} / p99 "
        f"{s['send_latency_ms']['p99']} / max {s['send_latency_ms']['max']}",
        f"send to ack incl retries p50 {s['send_to_ack_ms_with_retries']['p50']} / p99 "
        f"{s['send_to_ack_ms_with_retries']['p99']} ms",
        f"errors                   {s['errors'] or 'none'}",
        f"errors off disruptions   {s['errors_outside_disruptions'] or 'none'}",
        f"axon log                 {s['axon_log']['error_lines']} ERROR, "
        f"{s['axon_log']['warn_lines']} WARN, {s['axon_log']['panics']} panics",
        f"result                   {'PASS' if s['passed'] else 'FAIL'}",
        "===================================================",
    ]
    print("\n".join(lines), flush=True)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/release/axon", help="axon binary (default: %(default)s)")
    p.add_argument("--duration", type=float, default=300, help="seconds of load and chaos (default: %(default)s)")
    p.add_argument("--users", type=int, default=4, help="users, each with a /sync loop (default: %(default)s)")
    p.add_argument("--senders", type=int, default=4, help="sender threads (default: %(default)s)")
    p.add_argument("--chaos-min", type=float, default=10, help="least seconds between disruptions (default: %(default)s)")
    p.add_argument("--chaos-max", type=float, default=40, help="most seconds between disruptions (default: %(default)s)")
    p.add_argument("--no-pg-kill", action="store_true",
                   help="never kill the postmaster alone (for binaries without the database supervisor)")
    p.add_argument("--no-chaos", action="store_true", help="load only, no kills")
    p.add_argument("--settle", type=float, default=5, help="seconds without new events that end the /sync catch-up (default: %(default)s)")
    p.add_argument("--replay-sample", type=int, default=200,
                   help="acknowledged txnIds sent again at the end, besides every retried one (default: %(default)s)")
    p.add_argument("--seed", type=int, help="random seed (default: random)")
    p.add_argument("--json", help="summary JSON path (default: $TMPDIR/axon-soak-<time>.json)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, axon.log)")
    args = p.parse_args()
    if args.users < 1 or args.senders < 1 or args.chaos_min > args.chaos_max:
        p.error("need --users >= 1, --senders >= 1 and --chaos-min <= --chaos-max")
    return args


def main() -> int:
    args = parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"not an executable: {args.binary}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.json or os.path.join(tempfile.gettempdir(), f"axon-soak-{stamp}.json")

    # A SIGTERM to the script cleans up like Ctrl-C does.
    def on_sigterm(_sig, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)

    workdir = tempfile.mkdtemp(prefix="axon-soak-")
    os.chmod(workdir, 0o755)
    port = free_port()
    axon = Axon(args.binary, workdir, port)
    run = Run(args, Client(port), axon)
    log(f"work dir {workdir}, port {port}, seed {seed}, binary {args.binary}")
    summary = None
    try:
        ready = start_until_ready(run, START_TIMEOUT)[1]
        if ready is None:
            raise SystemExit(f"axon did not start; see {axon.log_path}")
        log(f"axon up after {ready:.1f}s")
        setup(run)

        syncers = [Syncer(run, u) for u in run.users]
        for y in syncers:
            y.start()
        senders = [threading.Thread(target=sender, args=(run, i), daemon=True, name=f"send-{i}")
                   for i in range(args.senders)]
        load_start = now()
        end_at = load_start + args.duration
        for t in senders:
            t.start()
        chaos_thread = None
        if not args.no_chaos:
            chaos_thread = threading.Thread(target=chaos, args=(run, end_at), daemon=True,
                                            name="chaos")
            chaos_thread.start()
        last_report = now()
        while now() < end_at:
            time.sleep(1)
            if now() - last_report >= 15:
                last_report = now()
                acked = sum(1 for s in run.sends if s.event_id)
                log(f"progress: {acked} acknowledged of {len(run.sends)} sends")
            if chaos_thread is not None and not chaos_thread.is_alive() and now() < end_at - 6:
                raise SystemExit("the chaos thread stopped early (axon did not come back)")
        run.stop_load.set()
        load_seconds = now() - load_start
        log("load stopped; waiting for senders and chaos")
        for t in senders:
            t.join(HTTP_TIMEOUT + 10)
        if chaos_thread is not None:
            chaos_thread.join(2 * RECOVERY_TIMEOUT + 100)
        if not axon.alive() or wait_ready(run, RECOVERY_TIMEOUT)[1] is None:
            restart_hard(run, "axon not serving after the load")

        # Let every /sync catch up: a few syncs since the load stopped and nothing new
        # for --settle seconds.
        catch_up_end = time.monotonic() + 180
        while time.monotonic() < catch_up_end:
            if all(y.syncs_after_stop >= 2 and now() - y.last_new >= args.settle
                   for y in syncers):
                break
            time.sleep(0.5)
        else:
            run.note("syncs did not settle within 180s")
        run.stop_sync.set()
        for y in syncers:
            y.join(SYNC_HTTP_TIMEOUT + 5)
        log("syncs settled")

        acked = [s for s in run.sends if s.event_id]
        replayed = replay(run, acked)
        room = scan_room(run)
        summary = summarize(run, syncers, room, replayed, load_seconds)
        summary["seed"] = seed
        summary["work_dir"] = workdir if args.keep else None
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        run.stop_load.set()
        run.stop_sync.set()
        took, code = axon.stop()
        if summary is not None:
            summary["final_sigterm"] = {"seconds": None if took is None else round(took, 2),
                                        "exit_code": code}
            if took is None or code != 0:
                summary["notes"].append(f"final SIGTERM: exit code {code}, took {took}")
        axon.stop_orphaned_cluster()
        if summary is not None:
            print_summary(summary)
            with open(json_path, "w") as f:
                json.dump(summary, f, indent=2)
            log(f"summary written to {json_path}")
            if not summary["passed"] and not args.keep:
                kept_log = json_path.rsplit(".", 1)[0] + ".axon.log"
                shutil.copyfile(axon.log_path, kept_log)
                log(f"axon log kept at {kept_log}")
        if args.keep:
            log(f"work dir kept: {workdir}")
        else:
            cluster = axon.cluster_root()
            if cluster != axon.data_dir and cluster.startswith("/var/lib/axon/clusters/"):
                shutil.rmtree(cluster, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if summary is not None and summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
