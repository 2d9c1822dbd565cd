"""`--web-config FILE`: TLS and basic auth in the web-config format Prometheus exporters share.

The file format is the Prometheus exporter-toolkit's (`tls_server_config`, `http_server_config`,
`basic_auth_users`), validated the way `promtool check web-config` validates it, so users reuse
their files. Relative paths are relative to the file's folder. `WebConfigWatcher` re-reads the
file, and the certificate, key and client CA files it names, when one of them changes (checked at
most once a second, on a request or a TLS handshake) or on demand (SIGHUP), in a worker thread:
new connections use the new certificate once it is read, without a restart, and no request waits
for the reading. A changed file that fails validation is logged and ignored; the last good
configuration stays in force. So is one that would drop basic auth or switch
between HTTP and HTTPS: a reload fails closed, and removing auth or TLS takes a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter import yamlfile
from exporter.excerpt import excerpt
from exporter.http.basicauth import BasicAuth, bcrypt_available

log = logging.getLogger(__name__)


class WebConfigError(ValueError):
    """A web-config file that cannot be used; the message names the file and the bad key."""


CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    # The certificate is asked for but neither required nor checked, so it lets in the same clients as
    # NoClientCert; OpenSSL cannot ask without checking, so it is not asked for.
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    # Any certificate, even self-signed, would pass; OpenSSL always verifies, so these need client_ca_file.
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_IN_GO = ("RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# The cipher suite names exporter-toolkit accepts (Go's tls.CipherSuites()), with their OpenSSL names.
# TLS 1.3 suites are accepted but, as in Go, not configurable: every TLS 1.3 suite stays enabled.
CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# Accepted for compatibility; Python's ssl module cannot set the key-exchange group list, so OpenSSL's
# default preference applies (it includes all four).
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# The headers exporter-toolkit lets a web-config set, with their allowed values (None: any value).
HEADERS: Mapping[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# htpasswd's range. Above it one check takes minutes to days: a single wrong password would hold a core.
BCRYPT_COSTS = range(4, 18)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """tls_server_config, with paths made absolute."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """The files the TLS context is built from."""
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A validated web-config file."""

    tls: TlsConfig | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash


class _Reader:
    """Validates the parsed YAML, keeping the file name and key path for error messages."""

    def __init__(self, origin: str, base: Path) -> None:
        self.origin = origin
        self.base = base

    def fail(self, key: str, message: str) -> WebConfigError:
        return WebConfigError(f"web-config {self.origin}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if allowed is None and isinstance(k, int | float) and not isinstance(k, bool):
                continue  # a user name YAML reads as a number, as Go reads it into a string
            if not isinstance(k, str):
                raise self.fail(key, f"expected string keys, got {excerpt(k)}")
            if allowed is not None and k not in allowed:
                where = f"{key}.{key_name(k)}" if key else key_name(k)
                raise self.fail(where, f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def string(self, value: Any, key: str) -> str:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(key, f"expected a string, got {excerpt(value)}")
        return str(value)

    def boolean(self, value: Any, key: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {excerpt(value)}")
        return value

    def names(self, value: Any, key: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        for item in value:
            if not isinstance(item, str) or item not in allowed:
                raise self.fail(key, f"unknown value {excerpt(item)} (valid: {', '.join(allowed)})")
        return tuple(value)

    def path(self, value: str) -> Path:
        return self.base / value

    def config(self, doc: Any) -> WebConfig:
        top = self.mapping(doc, "", ("tls_server_config", "http_server_config", "basic_auth_users"))
        return WebConfig(
            tls=self.tls(self.mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS)),
            headers=self.http(self.mapping(top.get("http_server_config"), "http_server_config", ("http2", "headers"))),
            users=self.users(self.mapping(top.get("basic_auth_users"), "basic_auth_users", None)),
        )

    def tls(self, m: dict[str, Any]) -> TlsConfig | None:
        key = "tls_server_config"
        text = {k: self.string(m.get(k), f"{key}.{k}") for k in ("cert_file", "key_file", "client_auth_type")}
        text |= {k: self.string(m.get(k), f"{key}.{k}") for k in ("client_ca_file", "min_version", "max_version")}
        ciphers = self.names(m.get("cipher_suites"), f"{key}.cipher_suites", CIPHER_SUITES)
        curves = self.names(m.get("curve_preferences"), f"{key}.curve_preferences", CURVES)
        prefer = self.boolean(m.get("prefer_server_cipher_suites"), f"{key}.prefer_server_cipher_suites", True)
        versions = {}
        for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            versions[k] = text[k] or default
            if versions[k] not in TLS_VERSIONS:
                raise self.fail(
                    f"{key}.{k}", f"unknown TLS version {excerpt(versions[k])} (valid: {', '.join(TLS_VERSIONS)})"
                )
        auth = text["client_auth_type"]
        if auth not in CLIENT_AUTH_TYPES:
            raise self.fail(
                f"{key}.client_auth_type", f"invalid value {excerpt(auth)} (valid: {', '.join(CLIENT_AUTH_TYPES)})"
            )
        if not any(text[k] for k in ("cert_file", "key_file", "client_auth_type", "client_ca_file")):
            return None  # no TLS: plain HTTP, as exporter-toolkit does
        if not text["cert_file"]:
            raise self.fail(f"{key}.cert_file", "missing (TLS needs cert_file and key_file)")
        if not text["key_file"]:
            raise self.fail(f"{key}.key_file", "missing (TLS needs cert_file and key_file)")
        if text["client_ca_file"] and CLIENT_AUTH_TYPES[auth] == ssl.CERT_NONE:
            raise self.fail(
                f"{key}.client_ca_file",
                "set without a client_auth_type that checks client certificates (use RequireAndVerifyClientCert)",
            )
        if auth in _UNVERIFIED_IN_GO and not text["client_ca_file"]:
            raise self.fail(
                f"{key}.client_auth_type",
                f"{auth} accepts any self-signed certificate; use RequireAndVerifyClientCert with client_ca_file",
            )
        if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
            raise self.fail(
                f"{key}.min_version", f"{versions['min_version']} is above max_version {versions['max_version']}"
            )
        tls = TlsConfig(
            cert_file=self.path(text["cert_file"]),
            key_file=self.path(text["key_file"]),
            client_auth_type=auth or "NoClientCert",
            client_ca_file=self.path(text["client_ca_file"]) if text["client_ca_file"] else None,
            min_version=versions["min_version"],
            max_version=versions["max_version"],
            cipher_suites=ciphers,
            prefer_server_cipher_suites=prefer,
            curve_preferences=curves,
        )
        build_ssl_context(tls, self.origin)  # loads the certificate, key and CA now, so a bad one fails here
        return tls

    def http(self, m: dict[str, Any]) -> dict[str, str]:
        self.boolean(m.get("http2"), "http_server_config.http2", True)  # aiohttp serves HTTP/1.1 only
        headers = self.mapping(m.get("headers"), "http_server_config.headers", tuple(HEADERS))
        out = {}
        for name, value in headers.items():
            text = self.string(value, f"http_server_config.headers.{name}")
            allowed = HEADERS[name]
            if allowed is not None and text not in allowed:
                raise self.fail(
                    f"http_server_config.headers.{name}", f"invalid value {excerpt(text)} (valid: {', '.join(allowed)})"
                )
            if text:
                out[name] = text
        return out

    def users(self, m: dict[str, Any]) -> dict[str, bytes]:
        out = {}
        for name, hashed in m.items():
            user = str(name)
            key = f"basic_auth_users.{key_name(user)}"
            text = self.string(hashed, key)
            match = _BCRYPT_HASH.fullmatch(text)
            if match is None:
                raise self.fail(key, 'not a bcrypt hash (make one with `htpasswd -nBC 10 ""`)')
            if int(match.group(1)) not in BCRYPT_COSTS:
                raise self.fail(
                    key,
                    f"bcrypt cost {match.group(1)} is outside {BCRYPT_COSTS.start}..{BCRYPT_COSTS.stop - 1} "
                    "(htpasswd's range; 10 to 12 is usual)",
                )
            out[user] = text.encode()
        if out and not bcrypt_available():
            raise self.fail("basic_auth_users", "needs the bcrypt package, which is not installed")
        return out


_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)


def key_name(key: object) -> str:
    """A key from the file as it goes into a key path: as it is when it is a short plain name, else escaped."""
    text = str(key) if isinstance(key, str | int | float) else ""
    return text if _PLAIN_KEY.fullmatch(text) else excerpt(key)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


def parse(text: str, origin: str = "<web-config>", base: Path = Path(".")) -> WebConfig:
    """Parse and validate web-config YAML; relative file paths are taken from `base`."""
    try:
        doc = yamlfile.parse(text)
    except yamlfile.YamlError as exc:
        raise WebConfigError(f"web-config {origin}: {exc}") from None
    return _Reader(origin, base).config(doc)


def load(path: str | Path) -> WebConfig:
    """Read and validate a web-config file."""
    path = Path(path)
    try:
        text = yamlfile.read(path)
    except yamlfile.YamlError as exc:
        raise WebConfigError(f"web-config {path}: {exc}") from None
    return parse(text, origin=str(path), base=path.parent)


def build_ssl_context(tls: TlsConfig, origin: str = "<web-config>") -> ssl.SSLContext:
    """A server SSLContext for `tls`; raises WebConfigError naming the key whose file is bad."""
    key = "tls_server_config"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"web-config {origin}: {key}.cert_file/key_file: cannot load {tls.cert_file} with {tls.key_file}: "
            f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc}"
        ) from None
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    openssl_ciphers = [name for c in tls.cipher_suites if (name := CIPHER_SUITES[c]) is not None]
    if openssl_ciphers:
        try:
            ctx.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError:
            raise WebConfigError(
                f"web-config {origin}: {key}.cipher_suites: none of them is available in this OpenSSL"
            ) from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"web-config {origin}: {key}.client_ca_file: cannot load {tls.client_ca_file}: "
                f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc}"
            ) from None
    elif ctx.verify_mode != ssl.CERT_NONE:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


Stamps = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The files as read: a valid configuration with its SSLContext, or why not. Stamps are taken before the
    files are read, so one that changes while it is read is read again: `stamps` of the files the new
    configuration names, `before` of those the previous one named (kept when the new one is refused)."""

    before: Stamps
    stamps: Stamps = ()
    config: WebConfig | None = None
    context: ssl.SSLContext | None = None
    error: WebConfigError | None = None


class WebConfigWatcher:
    """The web-config in force, re-read when its files change (checked at most every `check_interval` s, on a
    request or a TLS handshake) or on request_reload() (SIGHUP).

    Reading takes time (YAML, certificates, a bcrypt decoy), so a reload runs in a worker thread and the
    configuration in force keeps serving until a valid new one replaces it; the event loop never waits.
    """

    def __init__(
        self,
        path: str | Path,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        auth: BasicAuth | None = None,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._clock = clock
        self.auth = auth or BasicAuth()
        loaded = self._read(WebConfig())
        if loaded.error is not None:
            raise loaded.error
        assert loaded.config is not None
        self.config, self._ssl, self._stamps = loaded.config, loaded.context, loaded.stamps
        self._checked_at = self._clock()
        self.tls_enabled = self.config.tls is not None
        self._reloading: asyncio.Task[None] | None = None
        self._again = False

    def _current_stamps(self, config: WebConfig) -> Stamps:
        files = (self.path, *(config.tls.files if config.tls else ()))
        return tuple(_stamp(f) for f in files)

    def _read(self, previous: WebConfig) -> _Loaded:
        """Read and validate the files; blocking, and safe in a worker thread (it changes nothing)."""
        before = self._current_stamps(previous)  # what to compare with next, should this file be refused
        try:
            config = load(self.path)
            stamps = (before[0], *(_stamp(f) for f in (config.tls.files if config.tls else ())))
            context = build_ssl_context(config.tls, str(self.path)) if config.tls else None
        except WebConfigError as exc:
            return _Loaded(before, error=exc)
        self.auth.prepare(config.users)
        return _Loaded(before, stamps, config, context)

    def current(self) -> WebConfig:
        """The configuration in force; starts a reload first if a file changed since the last check."""
        now = self._clock()
        if now - self._checked_at >= self.check_interval:
            self._checked_at = now
            if self._current_stamps(self.config) != self._stamps:
                self.request_reload()
        return self.config

    def request_reload(self) -> None:
        """Re-read the files in a worker thread; without a running event loop, at once in this thread."""
        if self._reloading is not None:
            self._again = True  # a change during the reload: read once more when it ends
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.reload()
            return
        self._reloading = loop.create_task(self._reload_in_thread(), name="web-config reload")

    async def _reload_in_thread(self) -> None:
        try:
            self._again = True
            while self._again:
                self._again = False
                self._apply(await asyncio.to_thread(self._read, self.config))
        finally:
            self._reloading = None

    def reload(self) -> bool:
        """Re-read the files now, in this thread; keep the one in force (and log why) when the new one is bad."""
        return self._apply(self._read(self.config))

    def _apply(self, loaded: _Loaded) -> bool:
        if loaded.error is not None:
            log.error("keeping the previous web-config: %s", loaded.error)
            self._stamps = loaded.before
            return False
        assert loaded.config is not None
        refusal = self._refusal(loaded.config)
        if refusal is not None:
            log.error("keeping the previous web-config: %s (%s)", refusal, self.path)
            self._stamps = loaded.before
            return False
        self.config, self._ssl, self._stamps = loaded.config, loaded.context, loaded.stamps
        log.info("web-config %s reloaded", self.path)
        return True

    def _refusal(self, config: WebConfig) -> str | None:
        """Why a valid new file must not replace the one in force, or None.

        A reload never weakens what the process was started with: a file that lost its users (truncated,
        half-written, `basic_auth_users:` left empty) would open every endpoint, and HTTP <-> HTTPS cannot
        change on a listening socket. Removing auth or TLS takes a restart, on purpose.
        """
        if self.config.users and not config.users:
            return "it lists no basic_auth_users while the running one does; remove basic auth by a restart"
        if (config.tls is not None) != self.tls_enabled:
            return "switching between HTTP and HTTPS needs a restart"
        return None

    def ssl_context(self) -> ssl.SSLContext:
        """The SSLContext for a new connection, from the configuration in force now."""
        self.current()
        assert self._ssl is not None, "TLS is not enabled"
        return self._ssl

    async def close(self) -> None:
        """Stop a reload in progress and refuse new credential checks (shutdown)."""
        self.auth.close()
        if self._reloading is not None:
            self._reloading.cancel()
