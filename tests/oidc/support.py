"""What the FranceConnect tests share: the real OpenID Provider (npm `oidc-provider`, started
on loopback, bounded in time, killed at the end), a stand-in provider whose tokens the tests
mint with joserfc, a browser that follows redirects and fills the provider's forms, people
enrolled with the NIR a case needs, and a snapshot of every row a login could write."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import select
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from uuid import uuid4

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey
from stdnum.fr import nir as stdnum_nir

from models.account import Account, Role
from models.franceconnect import AuthorizationRequest, LoginTicket, ProviderSession
from models.patient import Patient, Sex, SpaceStatus, seal_nir
from tests.conftest import free_port
from tests.factories import PASSWORD, vault
from tests.lifecycle_support import db_snapshot

HERE = Path(__file__).parent
FRONTEND_URL = "http://frontend.test/fc-landing"
REDIRECT_URI = "http://testserver/auth/franceconnect/callback"
CLIENT_SECRET = "client-secret-" + "s" * 32
PROVIDER_LIFETIME_SECONDS = 900


# --- the real provider ------------------------------------------------------------------


@dataclass
class NodeProvider:
    issuer: str
    identities: Path

    def add(self, login: str, **claims: str) -> str:
        """A person the provider knows: logging in as `login` proves these claims."""
        people = json.loads(self.identities.read_text())
        people[login] = claims
        self.identities.write_text(json.dumps(people))
        return login


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are needed for the FranceConnect tests (CI=true)")
        pytest.skip("node is not installed: the real OpenID Provider cannot run")
    return node, npm


def _install(npm: str) -> None:
    """`npm ci` from tests/oidc/package-lock.json, once (node_modules is not committed)."""
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in tests/oidc:\n{done.stdout}\n{done.stderr}")


def _wait_ready(process: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    assert process.stdout is not None
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    line = b""
    while not line.endswith(b"\n"):
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        readable, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if not readable:
            raise AssertionError(f"the OpenID Provider did not start:\n{log.read_text()}")
        chunk = os.read(process.stdout.fileno(), 1024)
        if not chunk:
            raise AssertionError(f"the OpenID Provider exited:\n{log.read_text()}")
        line += chunk
    word, _, issuer = line.decode().strip().partition(" ")
    assert word == "ready", line
    return issuer


@contextmanager
def node_provider(folder: Path, clients: list[dict[str, Any]]) -> Iterator[NodeProvider]:
    """npm `oidc-provider` configured like FranceConnect v2 (tests/oidc/provider.js), on a
    loopback port; it exits with its stdin, after PROVIDER_LIFETIME_SECONDS, or when killed
    here at the end."""
    node, npm = _tools()
    _install(npm)
    identities = folder / "identities.json"
    identities.write_text("{}")
    config = folder / "provider.json"
    config.write_text(
        json.dumps(
            {
                "port": free_port(),
                "identities": str(identities),
                "lifetime_seconds": PROVIDER_LIFETIME_SECONDS,
                "clients": clients,
            }
        )
    )
    log = folder / "provider.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [node, str(HERE / "provider.js"), str(config)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    try:
        issuer = _wait_ready(process, log, timeout=30)
        yield NodeProvider(issuer=issuer, identities=identities)
    finally:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()


# --- the stand-in provider --------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signing_key(kid: str, kind: str = "EC") -> Key:
    if kind == "EC":
        return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def sign(claims: dict[str, Any], key: Key | None, alg: str) -> str:
    """A JWS compact token; with key None, alg `none` (no signature at all)."""
    if key is None:
        unsigned = b64url(json.dumps({"alg": "none"}).encode())
        return f"{unsigned}.{b64url(json.dumps(claims).encode())}."
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    return jwt.encode(header, claims, key, algorithms=[alg])


@dataclass
class StandInProvider:
    """A provider on loopback (stdlib HTTP server, a thread of its own) that speaks like
    FranceConnect v2 (discovery under /api/v2, PKCE, client_secret_post, signed userinfo),
    with tokens the tests shape: what the real one never sends."""

    client_id: str
    issuer: str = ""
    key: Key = field(default_factory=lambda: signing_key("stand-in-1"))
    published: list[Key] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)
    # Per test: a change to the ID token's claims, the key and algorithm that sign it, ...
    id_token_changes: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    id_token_key: Key | None = None
    id_token_alg: str = "ES256"
    userinfo_changes: dict[str, Any] = field(default_factory=dict)
    userinfo_signed: bool = True
    userinfo_key: Key | None = None
    userinfo_alg: str = "ES256"
    # Per test: what its discovery document says otherwise (None removes a member).
    metadata_changes: dict[str, Any] = field(default_factory=dict)
    # Every form the token endpoint received, with the Authorization header it came with.
    token_requests: list[dict[str, str]] = field(default_factory=list)
    jwks_fetches: int = 0
    tokens_issued: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def id_token(self, grant: dict[str, str]) -> str:
        now = int(datetime.now(UTC).timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "stand-in-subject",
            "aud": self.client_id,
            "exp": now + 60,
            "iat": now,
            "nonce": grant["nonce"],
            "acr": "eidas1",
        }
        if self.id_token_changes is not None:
            claims = self.id_token_changes(claims)
        key = self.id_token_key if self.id_token_key is not None else self.key
        if self.id_token_alg == "none":
            return sign(claims, None, "none")
        return sign(claims, key, self.id_token_alg)

    def userinfo(self) -> tuple[str, str]:
        now = int(datetime.now(UTC).timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": "stand-in-subject",
            "iat": now,
            "exp": now + 60,
            **self.identity,
            **self.userinfo_changes,
        }
        if not self.userinfo_signed:
            return "application/json", json.dumps(claims)
        if self.userinfo_alg == "none":
            return "application/jwt", sign(claims, None, "none")
        key = self.userinfo_key if self.userinfo_key is not None else self.key
        return "application/jwt", sign(claims, key, self.userinfo_alg)

    def metadata(self) -> dict[str, Any]:
        published = {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "jwks_uri": self.issuer + "/jwks",
            "end_session_endpoint": self.issuer + "/session/end",
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "authorization_response_iss_parameter_supported": True,
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
            "acr_values_supported": ["eidas1"],
        }
        changed = {**published, **self.metadata_changes}
        return {k: v for k, v in changed.items() if v is not None}

    def client_authenticated(self, form: dict[str, str], authorization: str) -> bool:
        """client_secret_post, or HTTP Basic when the discovery offers only that."""
        methods = self.metadata()["token_endpoint_auth_methods_supported"]
        if "client_secret_post" in methods:
            return (form.get("client_id"), form.get("client_secret")) == (
                self.client_id,
                CLIENT_SECRET,
            )
        pair = f"{self.client_id}:{CLIENT_SECRET}".encode()
        return "client_secret" not in form and authorization == (
            "Basic " + base64.b64encode(pair).decode()
        )


def _handler(provider: StandInProvider) -> type[BaseHTTPRequestHandler]:
    def route(path: str) -> str:
        return urlsplit(path).path.removeprefix(urlsplit(provider.issuer).path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, media_type: str, body: str, **headers: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            where = route(self.path)
            if where == "/.well-known/openid-configuration":
                self.answer(200, "application/json", json.dumps(provider.metadata()))
            elif where == "/jwks":
                provider.jwks_fetches += 1
                keys = [key.as_dict(private=False) for key in provider.published]
                self.answer(200, "application/json", json.dumps({"keys": keys}))
            elif where == "/authorize":
                code = secrets.token_urlsafe(16)
                provider.codes[code] = query
                back = {"code": code, "state": query["state"], "iss": provider.issuer}
                self.answer(
                    302, "text/plain", "", Location=f"{query['redirect_uri']}?{urlencode(back)}"
                )
            elif where == "/userinfo":
                media_type, body = provider.userinfo()
                self.answer(200, media_type, body)
            else:
                self.answer(404, "text/plain", "not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if route(self.path) != "/token":
                self.answer(404, "text/plain", "not found")
                return
            authorization = self.headers.get("Authorization", "")
            provider.token_requests.append({**form, "authorization": authorization})
            grant = provider.codes.pop(form.get("code", ""), None)
            if grant is not None and "code_challenge" in grant:
                verifier = form.get("code_verifier", "")
                pkce = b64url(hashlib.sha256(verifier.encode()).digest()) == grant["code_challenge"]
            else:  # a provider without PKCE: nothing to prove, nothing expected
                pkce = grant is not None and "code_verifier" not in form
            if (
                grant is None
                or not provider.client_authenticated(form, authorization)
                or form.get("redirect_uri") != grant["redirect_uri"]
                or not pkce
            ):
                self.answer(400, "application/json", json.dumps({"error": "invalid_grant"}))
                return
            id_token = provider.id_token(grant)
            provider.tokens_issued.append(id_token)
            body = {
                "access_token": "at-" + uuid4().hex,
                "token_type": "Bearer",
                "id_token": id_token,
            }
            self.answer(200, "application/json", json.dumps(body))

    return Handler


@contextmanager
def stand_in_provider(client_id: str) -> Iterator[StandInProvider]:
    provider = StandInProvider(client_id=client_id)
    provider.published = [provider.key]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}/api/v2"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the browser ------------------------------------------------------------------------


class _FormReader(HTMLParser):
    """The first form of a page: where it posts, its fields, and the button a person would
    press (the one with `autofocus`), even one placed outside the form (`form=` attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif a.get("name") and (tag == "input" or (tag == "button" and "autofocus" in a)):
            self.fields[a["name"]] = a.get("value", "")


async def browse(
    browser: httpx.AsyncClient,
    url: str,
    *,
    login: str | None = None,
    until: str = FRONTEND_URL,
    steps: int = 20,
) -> str:
    """Go to `url` as a browser does: follow each redirect, fill and send each form (the
    provider's login form with `login` and any password, its consent and logout forms),
    until a redirect leads to `until`; answers that URL."""
    response = await browser.get(url)
    for _ in range(steps):
        if response.is_redirect:
            target = str(response.url.join(response.headers["location"]))
            if target.startswith(until):
                return target
            response = await browser.get(target)
        elif response.status_code == 200 and "<form" in response.text:
            form = _FormReader()
            form.feed(response.text)
            assert form.action is not None
            if "login" in form.fields:
                assert login is not None, "the provider asks who logs in"
                form.fields |= {"login": login, "password": "any password"}
            response = await browser.post(response.url.join(form.action), data=form.fields)
        else:
            raise AssertionError(f"{response.status_code} at {response.url}: {response.text[:500]}")
    raise AssertionError(f"more than {steps} steps from {url}")


def landing(url: str) -> dict[str, str]:
    """The query FRONTEND_URL was reached with: {"ticket": …} or {"error": …}."""
    assert url.startswith(FRONTEND_URL + "?"), url
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- people and rows --------------------------------------------------------------------

_order = iter(range(1, 1000))


def nir_for(sex: Sex, born: date, place: str, order: int | None = None) -> str:
    """A valid NIR: sex, year and month of birth, `place` (characters 6 to 10), order, key."""
    serial = next(_order) if order is None else order
    body = f"{1 if sex is Sex.MALE else 2}{born:%y%m}{place}{serial:03d}"
    return body + stdnum_nir.calc_check_digits(body)


async def enrolled(
    first_name: str,
    last_name: str,
    *,
    born: date = date(1984, 7, 21),
    sex: Sex = Sex.FEMALE,
    place: str = "75107",
    status: SpaceStatus = SpaceStatus.ACTIVE,
    email: str | None = None,
    contact_email: str | None = None,
) -> Patient:
    """A person as enrolment leaves them, born at `place` (NIR characters 6 to 10), with a
    password account when `email` is given."""
    number = nir_for(sex, born, place)
    patient_id = uuid4()
    patient = await Patient.create(
        id=patient_id,
        nir_encrypted=seal_nir(vault, patient_id, number),
        nir_hash=vault.keyed_hash(number, purpose="nir"),
        first_name=first_name,
        last_name=last_name,
        birth_date=born,
        sex=sex,
        status=status,
        contact_email=contact_email,
    )
    if email is not None:
        from models.passwords import hash_password

        await Account.create(
            email=email,
            password_hash=await hash_password(PASSWORD),
            role=Role.PATIENT,
            patient_id=patient.id,
        )
    return patient


def claims_of(
    given_name: str,
    family_name: str,
    *,
    born: date = date(1984, 7, 21),
    gender: str = "female",
    birthplace: str = "75107",
    birthcountry: str = "99100",
    email: str = "person@fc.example",
) -> dict[str, str]:
    return {
        "given_name": given_name,
        "family_name": family_name,
        "birthdate": born.isoformat(),
        "gender": gender,
        "birthplace": birthplace,
        "birthcountry": birthcountry,
        "email": email,
    }


async def rows() -> dict[str, Any]:
    """Every row a login could write: people, accounts, sessions, tickets, kept ID tokens."""
    return {
        **await db_snapshot(),
        "tickets": await LoginTicket.all().order_by("id").values(),
        "provider_sessions": await ProviderSession.all().order_by("id").values(),
    }


async def pending_requests() -> int:
    return await AuthorizationRequest.all().count()
