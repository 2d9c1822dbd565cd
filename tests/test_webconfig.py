"""--web-config: the exporter-toolkit format, validated like promtool, TLS and basic auth served, reloaded live."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import encode_basic_auth
from aiohttp.test_utils import TestClient

from exporter.http import basicauth, webconfig
from exporter.http.server import build_app
from exporter.http.webconfig import WebConfigError, WebConfigWatcher
from exporter.sampler import Sampler
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.processes import ExporterProcess, wait_until
from tests.support.tls import Pki, bcrypt_hash

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]

HASH = bcrypt_hash("secret")

# (id, file body, accepted, key the rejection must name). Paths are relative to the file, as in the format.
CORPUS: list[tuple[str, str, bool, str]] = [
    ("empty", "", True, ""),
    ("basic-auth", f"basic_auth_users:\n  prometheus: {HASH}\n", True, ""),
    ("tls", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n", True, ""),
    (
        "mtls",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: test-ca.crt\n",
        True,
        "",
    ),
    (
        "verify-if-given",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: test-ca.crt\n",
        True,
        "",
    ),
    (
        "versions-ciphers-curves",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n"
        "  max_version: TLS13\n  prefer_server_cipher_suites: false\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
        "  curve_preferences: [X25519, CurveP256]\n",
        True,
        "",
    ),
    (
        "headers",
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n",
        True,
        "",
    ),
    ("unknown-top-key", "tls_config:\n  cert_file: server.crt\n", False, "tls_config"),
    ("unknown-tls-key", "tls_server_config:\n  client_allowed_sans: [a]\n", False, "client_allowed_sans"),
    ("cert-without-key", "tls_server_config:\n  cert_file: server.crt\n", False, "key_file"),
    ("key-without-cert", "tls_server_config:\n  key_file: server.key\n", False, "cert_file"),
    ("missing-cert-file", "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n", False, "cert_file"),
    ("cert-key-mismatch", "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n", False, "key_file"),
    (
        "bad-client-auth",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
        False,
        "client_auth_type",
    ),
    (
        "ca-without-policy",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: test-ca.crt\n",
        False,
        "client_ca_file",
    ),
    (
        "bad-version",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
        False,
        "min_version",
    ),
    (
        "insecure-cipher",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  cipher_suites: [TLS_RSA_WITH_3DES_EDE_CBC_SHA]\n",
        False,
        "cipher_suites",
    ),
    (
        "ciphers-not-a-list",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  cipher_suites: TLS_AES_128_GCM_SHA256\n",
        False,
        "cipher_suites",
    ),
    (
        "nested-cipher",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [[a]]\n",
        False,
        "cipher_suites",
    ),
    (
        "bad-curve",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [P256]\n",
        False,
        "curve_preferences",
    ),
    ("bad-header", "http_server_config:\n  headers:\n    x-frame-options: deny\n", False, "x-frame-options"),
    ("bad-header-value", "http_server_config:\n  headers:\n    X-Frame-Options: allow\n", False, "X-Frame-Options"),
    ("bad-http2", "http_server_config:\n  http2: maybe\n", False, "http2"),
    ("numeric-user", f"basic_auth_users:\n  123: {HASH}\n", True, ""),
    ("not-bcrypt", "basic_auth_users:\n  alice: plaintext\n", False, "basic_auth_users.alice"),
    ("duplicate-user", f"basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n", False, "alice"),
    ("not-a-mapping", "- tls_server_config\n", False, "expected a mapping"),
    ("invalid-yaml", "tls_server_config: [\n", False, "invalid YAML"),
]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    pki = Pki(folder)
    pki.issue("server", "127.0.0.1", server=True)
    pki.issue("client", "scraper", server=False)
    return folder


def write_config(folder: Path, body: str, name: str = "web.yml") -> Path:
    path = folder / name
    path.write_text(body)
    return path


@pytest.mark.parametrize(("body", "accepted", "key"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_same_verdict_as_promtool(promtool: str, pki_dir: Path, body: str, accepted: bool, key: str) -> None:
    """promtool check web-config and mig-exporter accept or reject each file alike; rejections name the key."""
    path = write_config(pki_dir, body)
    checked = subprocess.run([promtool, "check", "web-config", str(path)], capture_output=True, text=True)
    assert (checked.returncode == 0) is accepted, checked.stdout + checked.stderr
    if accepted:
        webconfig.load(path)
    else:
        with pytest.raises(WebConfigError, match=key.replace(".", r"\.")):
            webconfig.load(path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert accepts any self-signed certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
            "  max_version: TLS12\n",
            "min_version: TLS13 is above max_version TLS12",
        ),
    ],
)
def test_rejects_what_could_never_be_secure_or_serve(pki_dir: Path, body: str, key: str) -> None:
    """Two files promtool lets through are refused: unverified client certificates, and no usable TLS version."""
    with pytest.raises(WebConfigError, match=key):
        webconfig.load(write_config(pki_dir, body, "deviation.yml"))


def test_bad_web_config_exits_2_naming_the_key(pki_dir: Path) -> None:
    """`serve --web-config` with a bad file exits 2 with one line naming the file and the key."""
    path = write_config(pki_dir, "tls_server_config:\n  cert_file: server.crt\n", "cli-bad.yml")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"web-config {path}: tls_server_config.key_file: missing" in result.stderr


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": encode_basic_auth(user, password)}


@pytest.fixture
async def auth_client(aiohttp_client: ClientFactory, demo: Simulator, tmp_path: Path) -> TestClient:  # type: ignore[type-arg]
    path = write_config(
        tmp_path,
        f"basic_auth_users:\n  prometheus: {HASH}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    watcher = WebConfigWatcher(path, check_interval=0)
    return await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=60), web_config=watcher))


async def test_basic_auth_required(auth_client: TestClient) -> None:  # type: ignore[type-arg]
    """Without credentials, or with a wrong password or user, /metrics is 401 with a Basic challenge."""
    for headers in ({}, basic("prometheus", "wrong"), basic("nobody", "secret"), {"Authorization": "Basic %%%"}):
        response = await auth_client.get("/metrics", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "mig_gpu_info" not in await response.text()
    for path in ("/", "/readyz"):
        assert (await auth_client.get(path)).status == 401


async def test_basic_auth_accepts_the_listed_user(auth_client: TestClient) -> None:  # type: ignore[type-arg]
    """The right user and password get the metrics, with the configured extra headers."""
    response = await auth_client.get("/metrics", headers=basic("prometheus", "secret"))
    assert response.status == 200
    assert response.headers["X-Frame-Options"] == "deny"
    assert "mig_gpu_info" in await response.text()


async def test_healthz_stays_open(auth_client: TestClient) -> None:  # type: ignore[type-arg]
    """The liveness probe answers without credentials and says nothing but ok."""
    response = await auth_client.get("/healthz")
    assert response.status == 200 and await response.text() == "ok\n"


async def test_bcrypt_runs_once_per_credential(auth_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    """Repeated scrapes with the same credentials cost one bcrypt check, not one per scrape."""
    calls = []
    original = basicauth._checkpw
    monkeypatch.setattr(basicauth, "_checkpw", lambda p, h, c: calls.append(1) or original(p, h, c))
    for _ in range(5):
        assert (await auth_client.get("/metrics", headers=basic("prometheus", "secret"))).status == 200
        assert (await auth_client.get("/metrics", headers=basic("prometheus", "nope"))).status == 401
    assert len(calls) == 2


async def status_soon(client: TestClient, headers: dict[str, str], expected: int, path: str = "/metrics") -> int:  # type: ignore[type-arg]
    """GET `path` until it answers `expected` (a reload runs in the background), for up to 5 s; the last status."""
    deadline = time.monotonic() + 5
    while True:
        status = (await client.get(path, headers=headers)).status
        if status == expected or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)


async def logged_soon(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait (up to 5 s) until a log record holds `text`."""
    for _ in range(250):
        if any(text in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never logged: {text}")


async def test_users_reload_without_restart(
    aiohttp_client: ClientFactory, demo: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Changing a user's hash in the file takes effect without a restart; a broken edit keeps the last good one."""
    path = write_config(tmp_path, f"basic_auth_users:\n  prometheus: {HASH}\n")
    watcher = WebConfigWatcher(path, check_interval=0)
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=60), web_config=watcher))
    assert (await client.get("/metrics", headers=basic("prometheus", "secret"))).status == 200
    path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('rotated')}\n")
    assert await status_soon(client, basic("prometheus", "secret"), 401) == 401
    assert (await client.get("/metrics", headers=basic("prometheus", "rotated"))).status == 200
    path.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    assert (await client.get("/metrics", headers=basic("prometheus", "rotated"))).status == 200  # starts the reload
    await logged_soon(caplog, "keeping the previous web-config")
    assert (await client.get("/metrics", headers=basic("prometheus", "rotated"))).status == 200


@pytest.mark.parametrize(
    "edit",
    [
        "",
        "basic_auth_users:\n",
        "basic_auth_users: {}\n",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    ],
    ids=["truncated", "bare-key", "empty-mapping", "users-removed"],
)
async def test_reload_that_drops_users_fails_closed(
    aiohttp_client: ClientFactory,
    demo: Simulator,
    tmp_path: Path,
    edit: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A web-config that held users and is reloaded without any keeps the users in force and logs an error."""
    path = write_config(tmp_path, f"basic_auth_users:\n  prometheus: {HASH}\n")
    watcher = WebConfigWatcher(path, check_interval=0)
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=60), web_config=watcher))
    path.write_text(edit)
    with caplog.at_level(logging.INFO, logger=webconfig.log.name):
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=basic("prometheus", "secret"))).status == 200
        assert not watcher.reload()  # SIGHUP takes the same path
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("lists no basic_auth_users" in r.getMessage() for r in errors)
    assert not any("reloaded" in r.getMessage() for r in caplog.records)
    path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('rotated')}\n")  # the edit finished
    assert await status_soon(client, basic("prometheus", "rotated"), 200) == 200


async def test_a_reload_never_blocks_the_event_loop(
    aiohttp_client: ClientFactory, demo: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Replaced by a file that takes a second or more to read (24,000 users, near the value limit), then by an
    alias bomb and by deep nesting, the web-config is re-read beside the event loop: /healthz answers within
    a second throughout (read on the loop, the alias bomb stalled it for 17 s; beside it, only the GIL's switch
    interval and a loaded CI machine delay it), the users in force keep working, and each bad file is one error
    line."""
    path = write_config(tmp_path, f"basic_auth_users:\n  prometheus: {HASH}\n")
    watcher = WebConfigWatcher(path, check_interval=0)
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=60), web_config=watcher))
    bomb = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
    edits = {
        "basic_auth_users.user0: not a bcrypt hash": "basic_auth_users:\n"
        + "".join(f"  user{i}: x{i}\n" for i in range(24_000)),
        "expands to more than 50,000 values": "a0: &a0 [x]\n" + bomb,
        "nested deeper than 32 levels": "[" * 100_000 + "]" * 100_000,
    }
    with caplog.at_level(logging.INFO, logger=webconfig.log.name):
        for message, body in edits.items():
            path.write_text(body)
            slowest = 0.0
            for _ in range(1500):  # until the reload is over, at most ~30 s
                started = time.perf_counter()
                assert (await client.get("/healthz")).status == 200
                slowest = max(slowest, time.perf_counter() - started)
                if any(message in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"never logged: {message}")
            assert slowest < 1.0, f"/healthz took {slowest:.2f} s while reading a file ending in: {message}"
            assert (await client.get("/metrics", headers=basic("prometheus", "secret"))).status == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) >= 3 and all(len(e) < 300 and "keeping the previous web-config" in e for e in errors)


def https_get(
    url: str, ca: Path, client: tuple[Path, Path] | None = None, headers: dict[str, str] | None = None
) -> int:
    """GET over TLS verifying the server against `ca`; the HTTP status."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(*client)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_tls_with_client_certificates_and_live_certificate_rotation(tmp_path: Path) -> None:
    """The real exporter serves HTTPS, demands a client certificate, and picks up a new certificate without restart."""
    pki = Pki(tmp_path / "a", "ca-a")
    pki.issue("server", "127.0.0.1", server=True)
    client = pki.issue("client", "scraper", server=False)
    config = write_config(
        tmp_path,
        "tls_server_config:\n  cert_file: a/server.crt\n  key_file: a/server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: a/ca-a.crt\n"
        f"basic_auth_users:\n  prometheus: {HASH}\n",
    )
    exporter = ExporterProcess(
        ["--source", "synthetic", "--web-config", str(config)], log_path=tmp_path / "exporter.log"
    )
    exporter.url = exporter.url.replace("http://", "https://")
    exporter._ready = lambda: https_get(exporter.url + "/healthz", pki.ca.cert, (client.cert, client.key)) == 200  # type: ignore[method-assign]
    with exporter:
        creds = basic("prometheus", "secret")
        assert https_get(exporter.url + "/metrics", pki.ca.cert, (client.cert, client.key), creds) == 200
        assert https_get(exporter.url + "/metrics", pki.ca.cert, (client.cert, client.key)) == 401
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            https_get(exporter.url + "/metrics", pki.ca.cert, None, creds)  # no client certificate

        # Rotate to a certificate from another CA, in place: new connections must present it.
        other = Pki(tmp_path / "b", "ca-b")
        new_server = other.issue("server", "127.0.0.1", server=True)
        shutil.copy(new_server.key, tmp_path / "a" / "server.key.new")
        shutil.copy(new_server.cert, tmp_path / "a" / "server.crt.new")
        (tmp_path / "a" / "server.key.new").replace(tmp_path / "a" / "server.key")
        (tmp_path / "a" / "server.crt.new").replace(tmp_path / "a" / "server.crt")
        wait_until(
            lambda: https_get(exporter.url + "/metrics", other.ca.cert, (client.cert, client.key), creds) == 200,
            10,
            "the rotated certificate",
        )
        assert exporter.proc is not None and exporter.proc.poll() is None

        # A broken edit is refused on SIGHUP; the exporter keeps serving with what it had.
        config.write_text("tls_server_config:\n  cert_file: a/server.crt\n")
        exporter.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert https_get(exporter.url + "/metrics", other.ca.cert, (client.cert, client.key), creds) == 200
        assert "keeping the previous web-config" in exporter.log()
