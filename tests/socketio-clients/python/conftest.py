"""The harness of the Python suite: one `roomcast` for the session, started from the real
binary (ROOMCAST_BIN, default target/debug/roomcast, relative to the repository root) on
127.0.0.1:0 with ../roomcast.test.toml, plus tokens and HTTP API calls; `start_roomcast`
starts more, with a configuration of their own.

Deadlines below only turn a missing answer into a failure instead of a hang; no test
asserts how long anything took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import redis

SUITE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = SUITE_DIR.parent.parent
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
READY = re.compile(r"roomcast listening on (\S+)")


@dataclass
class Server:
    addr: str
    secret: str
    api_key: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def token(self, sub: str, tenant: str, **claims) -> str:
        """An HS256 token for user `sub` of `tenant`, valid for an hour."""
        payload = {"sub": sub, "tenant_id": tenant, "exp": int(time.time()) + 3600, **claims}
        return jwt.encode(payload, self.secret, algorithm="HS256")

    def api(self, method: str, route: str, body: dict | None = None) -> tuple[int, object]:
        """Calls the HTTP API with the platform key; returns (status, parsed JSON body).
        Blocking: call it through asyncio.to_thread from a coroutine."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{route}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.api_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def publish(self, body: dict) -> dict:
        status, answer = self.api("POST", "/api/publish", body)
        assert status == 200, f"publish answered {status}: {answer}"
        return answer


def redis_or_skip(url: str, what: str) -> redis.Redis:
    """A client of the shared Redis at `url`; when it is absent, `what` (the tests that need
    it) is skipped, or fails under CI=true."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as err:
        client.close()
        message = f"the Redis at {url} is absent ({err})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: an absent service is a failure)")
        pytest.skip(f"{message}: skipping {what}")
    return client


def _child_env() -> dict[str, str]:
    # A ROOMCAST_* variable of the caller would override the test configuration.
    return {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}


def suite_config() -> str:
    """The suite's configuration, ../roomcast.test.toml, with its @SECRET@ and @API_KEY@
    placeholders: a test that needs more appends its own sections and passes the text to
    `start_roomcast`."""
    return (SUITE_DIR / "roomcast.test.toml").read_text()


@contextlib.contextmanager
def start_roomcast(
    config_text: str | None = None,
    secret: str | None = None,
    api_key: str | None = None,
    name: str = "roomcast",
):
    """Runs `roomcast` with `config_text` (default: the suite's configuration) and a fresh
    secret and API key (or `secret` and `api_key`, which the nodes of a cluster share);
    yields its `Server`, and stops it on the way out. `name` names its log."""
    binary = (REPO_ROOT / os.environ.get("ROOMCAST_BIN", "target/debug/roomcast")).resolve()
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: build it first (see .ci/socketio-clients.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="roomcast-sio-py-"))
    secret = secret or secrets.token_hex(32)
    api_key = api_key or f"test-{secrets.token_hex(16)}"
    template = suite_config() if config_text is None else config_text
    config = tmp / "roomcast.toml"
    config.write_text(template.replace("@SECRET@", secret).replace("@API_KEY@", api_key))
    log_path = tmp / f"{name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(binary), "--config", str(config)],
        cwd=tmp,
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    found: list[str] = []

    def read_stdout():
        assert proc.stdout is not None
        for line in proc.stdout:
            m = READY.search(line)
            if m and not found:
                found.append(m.group(1))

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"{name} did not start (exit {proc.returncode}):\n{log_path.read_text()}")
    try:
        yield Server(addr=found[0], secret=secret, api_key=api_key, log_path=log_path)
    finally:
        unexpected = proc.poll() is not None
        if not unexpected:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if unexpected:
            print(f"{name} exited during the tests (code {proc.returncode}); its log:", file=sys.stderr)
            print(log_path.read_text(), file=sys.stderr)
        if not os.environ.get("SIO_TESTS_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def two_nodes(keys: redis.Redis, config_a: str, config_b: str, channel: str, prefix: str):
    """Nodes a and b of a cluster (sharing a secret and an API key), yielded once both are
    counted among the subscribers of emitter channel `channel`; on the way out, every key of
    the shared Redis `keys` under `prefix` is removed and `keys` closed."""
    try:
        with start_roomcast(config_a, name="roomcast-a") as a:
            with start_roomcast(
                config_b, secret=a.secret, api_key=a.api_key, name="roomcast-b"
            ) as b:
                # A node sends SUBSCRIBE before it prints its ready line, but Redis may act on
                # it a moment later.
                deadline = time.monotonic() + START_TIMEOUT_S
                while (n := keys.pubsub_numsub(channel)[0][1]) < 2:
                    assert time.monotonic() < deadline, f"{channel} has {n} subscribers, not 2"
                    time.sleep(0.02)
                yield [a, b]
    finally:
        # The nodes leave their registry entries on the way out; anything else under the
        # prefix goes too.
        stale = list(keys.scan_iter(match=f"{prefix}*", count=1000))
        if stale:
            keys.delete(*stale)
        keys.close()


@pytest.fixture(scope="session")
def server():
    with start_roomcast() as server:
        yield server
