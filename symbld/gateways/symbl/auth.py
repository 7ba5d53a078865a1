"""Symbl app credentials and access tokens, for both sides of the protocol.

Client side: :func:`load_credentials` finds appId/appSecret, :class:`TokenClient` calls
``POST /oauth2/token:generate`` and caches the token, renewing it *before* it expires (Symbl's own
Python SDK renews at expiry, so requests just before can carry a dead token).

Server side: :class:`TokenIssuer` checks app credentials and mints JWT-shaped tokens (HS256 with a
per-server secret, ``iat``/``exp`` claims) so JS/Web clients that decode ``exp`` work too.

Secrets never reach a log line: log calls here carry the appId at most.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import structlog

log = structlog.get_logger(__name__)

ENV_APP_ID = "SYMBL_APP_ID"
ENV_APP_SECRET = "SYMBL_APP_SECRET"
SYSTEMD_SECRET_NAME = "symbl-app-secret"  # LoadCredential=symbl-app-secret:... in the unit
AUDIENCE = "https://api.symbl.ai/"  # the aud of the tokens the Symbl server issues (as Symbl's own)


class CredentialsError(Exception):
    """Credentials are missing, or their file is unsafe or unreadable."""


class AuthError(Exception):
    """The token service refused us or could not be reached.

    ``fatal`` is true when retrying cannot help (bad credentials, bad request).
    """

    def __init__(self, message: str, status: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fatal = fatal


@dataclass(frozen=True)
class Credentials:
    app_id: str
    app_secret: str

    def __repr__(self) -> str:  # keep the secret out of tracebacks and logs
        return f"Credentials(app_id={self.app_id!r}, app_secret='***')"


def _read_private_file(path: Path) -> str:
    """Read a secret file that only its owner may read (mode 0600 or stricter)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"credentials file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
        )
    return path.read_text(encoding="utf-8")


def _parse_credentials_file(text: str) -> tuple[str | None, str | None]:
    """JSON ``{"appId", "appSecret"}`` or Symbl's INI ``[credentials] app_id/app_secret``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        obj = json.loads(stripped)
        return obj.get("appId") or obj.get("app_id"), obj.get("appSecret") or obj.get("app_secret")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    if not parser.has_section("credentials"):
        raise CredentialsError("credentials file has no [credentials] section and is not JSON")
    return parser.get("credentials", "app_id", fallback=None), parser.get("credentials", "app_secret", fallback=None)


def load_credentials(config: dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Credentials:
    """App credentials, first found wins per field.

    Order: config ``app_id``/``app_secret``; env ``SYMBL_APP_ID``/``SYMBL_APP_SECRET``; config
    ``credentials_file`` (JSON or Symbl's ``symbl.conf`` INI, must be 0600);
    ``$CREDENTIALS_DIRECTORY/symbl-app-secret`` (systemd credentials; holds the secret only).
    """
    config = config or {}
    environ: Mapping[str, str] = os.environ if env is None else env
    app_id = config.get("app_id") or environ.get(ENV_APP_ID)
    app_secret = config.get("app_secret") or environ.get(ENV_APP_SECRET)
    if (not app_id or not app_secret) and config.get("credentials_file"):
        file_id, file_secret = _parse_credentials_file(_read_private_file(Path(config["credentials_file"])))
        app_id = app_id or file_id
        app_secret = app_secret or file_secret
    if not app_secret and environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(environ["CREDENTIALS_DIRECTORY"]) / SYSTEMD_SECRET_NAME
        if path.exists():
            # systemd already made this private to the service; no mode check needed there.
            app_secret = path.read_text(encoding="utf-8").strip()
    if not app_id:
        raise CredentialsError(f"no Symbl appId: set app_id in config, {ENV_APP_ID}, or credentials_file")
    if not app_secret:
        raise CredentialsError(
            f"no Symbl appSecret: set {ENV_APP_SECRET}, credentials_file, or the systemd credential "
            f"{SYSTEMD_SECRET_NAME}"
        )
    return Credentials(str(app_id), str(app_secret))


def generate_app_credentials() -> Credentials:
    """Credentials in Symbl's format: 64 and 128 lowercase hex characters."""
    return Credentials(secrets.token_hex(32), secrets.token_hex(64))


# ---------------------------------------------------------------- client side


class TokenClient:
    """Fetches and caches an access token; thread-safe.

    The token is renewed when less than ``renew_before`` seconds (or a tenth of its lifetime,
    whichever is larger) remain, so no request carries a token about to expire.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
        renew_before: float = 300.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._timeout = timeout
        self._renew_before = renew_before
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0
        self.fetches = 0  # how many times the token service was called (tests read it)

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it, e.g. after a restart)."""
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        body = json.dumps(
            {"type": "application", "appId": self._credentials.app_id, "appSecret": self._credentials.app_secret}
        ).encode()
        req = urllib.request.Request(
            self.base_url + "/oauth2/token:generate",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                payload = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            message = _error_message(exc.read(), exc.reason)
            fatal = exc.code in (400, 401, 403)
            log.warning("symbl token refused", status=exc.code, app_id=self._credentials.app_id)
            raise AuthError(f"token service refused the credentials: {message}", exc.code, fatal) from exc
        except (OSError, ValueError) as exc:
            raise AuthError(f"token service unreachable at {self.base_url}: {exc}") from exc
        token = payload.get("accessToken")
        if not isinstance(token, str) or not token:
            raise AuthError("token service answered without an accessToken", fatal=True)
        expires_in = payload.get("expiresIn")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 86400.0
        now = time.monotonic()
        self._token = token
        self._expires_at = now + lifetime
        # Renew renew_before seconds early, but never later than half-way through a short lifetime.
        margin = max(min(self._renew_before, lifetime / 2), lifetime / 10)
        self._renew_at = now + lifetime - margin
        self.fetches += 1
        log.debug("symbl token fetched", expires_in=lifetime, app_id=self._credentials.app_id)


def _error_message(raw: bytes, fallback: Any) -> str:
    try:
        obj = json.loads(raw)
        return str(obj.get("message") or obj.get("details") or fallback)
    except ValueError:
        return str(fallback)


# ---------------------------------------------------------------- server side


class TokenIssuer:
    """Checks app credentials and mints/validates HS256 JWTs with ``iat`` and ``exp`` (PyJWT).

    Like Symbl's service, asking again while a token is still valid returns the same token with
    its remaining lifetime (during the first half of its lifetime; then a fresh one).
    """

    def __init__(self, credentials: Credentials, *, ttl: float = 86400, secret: bytes | None = None) -> None:
        self._credentials = credentials
        self._ttl = ttl
        # A configured secret of any length becomes a 32-byte key (HS256's recommended minimum, RFC 7518 3.2).
        self._secret = hashlib.sha256(secret).digest() if secret else secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (token, exp)

    def check(self, app_id: Any, app_secret: Any) -> bool:
        if not isinstance(app_id, str) or not isinstance(app_secret, str):
            return False
        ok_id = hmac.compare_digest(app_id.encode(), self._credentials.app_id.encode())
        ok_secret = hmac.compare_digest(app_secret.encode(), self._credentials.app_secret.encode())
        return ok_id and ok_secret

    def issue(self) -> tuple[str, int]:
        """(token, expiresIn seconds)."""
        now = time.time()
        with self._lock:
            # Reuse only for the first half of the lifetime, so a client never gets an almost-dead one.
            if self._cached and self._cached[1] - now > self._ttl / 2:
                return self._cached[0], int(self._cached[1] - now)
            exp = now + self._ttl
            claims = {
                "iss": "symbld",
                "sub": self._credentials.app_id,
                "aud": AUDIENCE,
                "iat": int(now),
                "exp": int(exp),
                "azp": self._credentials.app_id,
                "gty": "client-credentials",
                "https://platform.symbl.ai/userId": self._credentials.app_id,
            }
            token = self._sign(claims)
            self._cached = (token, exp)
            return token, int(self._ttl)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def validate(self, token: str | None) -> bool:
        """True for a token this issuer signed that has not expired."""
        if not token:
            return False
        try:  # signature, exp (required) and our audience; only HS256, never the token's own choice
            jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE,
                       options={"require": ["exp", "iat"]})
        except jwt.InvalidTokenError:
            return False
        return True


def decode_claims(token: str) -> dict[str, Any]:
    """The (unverified) payload of a JWT, as JS clients read ``exp``."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
