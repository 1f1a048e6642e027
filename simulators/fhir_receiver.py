"""Reference FHIR receiver for development and tests: HTTPS FHIR endpoint plus OAuth2 token endpoint.

- `POST /fhir` takes a transaction or batch Bundle, validates every resource with fhir.resources (R4B
  models), implements conditional create by identifier (`ifNoneExist` -> 200 for an existing match, 201
  for a new one), resolves `urn:uuid` references inside a transaction and is all-or-nothing for
  transactions (a bad entry -> 400 OperationOutcome naming `Bundle.entry[n]`, nothing stored) and
  per-entry for batches.
- `POST /token` issues bearer tokens for `client_secret_basic` (RFC 6749 2.3.1) and `private_key_jwt`
  (RFC 7523 / SMART Backend Services, RS384 or ES384, checked against the registered public key, exp at
  most five minutes ahead, `jti` never reused).
- It keeps what it stored (`resources`, and optionally an NDJSON file) and can inject faults
  (`Faults`): queued whole-request statuses (401, 429 + Retry-After, 500, 503), slow answers, dropping
  the connection after committing, revoked clients, short token lifetimes.

Written independently of the gateway's forwarder and FHIR mapping: it is a second opinion, not a mirror.

Run by hand:
    python -m simulators.fhir_receiver --port 8443 --cert server.crt --key server.key \\
        --client-secret gw-1=secret.txt --client-key gw-2=public.pem
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import json
import re
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fhir.resources.R4B import get_fhir_model_class

__all__ = ["Client", "Faults", "Receiver", "main"]

FHIR_JSON = "application/fhir+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 422: "Unprocessable Entity"}


@dataclass
class Client:
    client_id: str
    secret: str | None = None  # client_secret_basic
    public_key_pem: bytes | None = None  # private_key_jwt


@dataclass
class Faults:
    """Faults the tests (or CLI flags) arm; each queued one is used once."""

    statuses: deque[tuple[int, int | None]] = field(default_factory=deque)  # (status, retry_after)
    token_statuses: deque[tuple[int, int | None]] = field(default_factory=deque)
    drop_after_commit: int = 0  # store the Bundle, then cut the connection without answering
    delay_seconds: float = 0.0  # before answering a FHIR request
    token_lifetime: int = 3600
    revoked: set[str] = field(default_factory=set)
    omit_entry_location: bool = False  # refuse a transaction without saying which entry failed
    batch_entry_statuses: dict[int, int] = field(default_factory=dict)  # batch entry index -> status, once
    max_entries: int = 0  # refuse larger Bundles (413 naming the limit), as capped servers do; 0 = no cap


def _tokens(condition: str) -> list[str]:
    """The `system|value` alternatives of an `identifier=` condition, unescaped."""
    if not condition.startswith("identifier="):
        raise _EntryError(400, "only identifier= conditions are supported")
    out = []
    for alt in re.split(r"(?<!\\),", unquote_plus(condition[len("identifier=") :])):
        parts = re.split(r"(?<!\\)\|", alt, maxsplit=1)
        if len(parts) != 2:
            raise _EntryError(400, "identifier condition needs system|value")
        out.append(f"{_unescape(parts[0])}|{_unescape(parts[1])}")
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class _EntryError(Exception):
    def __init__(self, status: int, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _outcome(diagnostics: str, expression: str | None = None, code: str = "invalid") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


class Receiver:
    """The in-memory FHIR store with its HTTP handlers; `start()` serves it over HTTPS."""

    def __init__(
        self,
        clients: list[Client] | None = None,
        *,
        require_auth: bool = True,
        ndjson: Path | None = None,
        validate: bool = True,
    ) -> None:
        self.clients = {c.client_id: c for c in clients or []}
        self.require_auth = require_auth
        self.ndjson = ndjson
        self.validate = validate  # off only to measure the sender without the receiver's pydantic cost
        self.faults = Faults()
        self.resources: dict[str, dict[str, Any]] = {}  # "Type/id" -> resource as stored
        self._by_identifier: dict[tuple[str, str], str] = {}  # (Type, "system|value") -> "Type/id"
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client_id, expires at, monotonic)
        self._jtis: set[str] = set()
        self.bundles_received = 0
        self.tokens_issued = 0
        self.issued_tokens: list[str] = []
        self.assertions: list[tuple[dict[str, Any], dict[str, Any]]] = []  # verified (header, claims)
        self.token_requests: list[str] = []  # client ids, in order
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- store ---------------------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for key, r in self.resources.items() if key.startswith(resource_type + "/")]

    def _match(self, resource_type: str, condition: str, pending: dict[tuple[str, str], str]) -> str | None:
        """`identifier=a|b,c|d`: a comma is OR (FHIR search), `\\,` `\\|` `\\\\` are escapes."""
        for token in _tokens(condition):
            key = (resource_type, token)
            found = pending.get(key) or self._by_identifier.get(key)
            if found is not None:
                return found
        return None

    def _validate(self, resource: Any) -> str:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise _EntryError(400, "entry has no resource")
        rtype: str = resource["resourceType"]
        if not self.validate:
            return rtype
        try:
            model = get_fhir_model_class(rtype)
        except (KeyError, ValueError):
            raise _EntryError(400, f"unknown resource type {rtype}") from None
        try:
            model.model_validate(resource)
        except Exception as exc:  # pydantic ValidationError; real servers echo details too
            raise _EntryError(422, f"{rtype} failed validation: {exc}") from None
        return rtype

    def _plan(self, index: int, entry: Any, pending: dict[tuple[str, str], str]) -> tuple[int, str, bool]:
        """(status, "Type/id", is_new) for one POST entry, without storing anything."""
        if not isinstance(entry, dict):
            raise _EntryError(400, "entry is not an object")
        request = entry.get("request") or {}
        resource = entry.get("resource")
        rtype = self._validate(resource)
        if request.get("method") != "POST" or request.get("url") != rtype:
            raise _EntryError(400, "only POST [type] entries are supported")
        condition = request.get("ifNoneExist")
        if condition:
            found = self._match(rtype, condition, pending)
            if found is not None:
                return 200, found, False
        return 201, f"{rtype}/{uuid.uuid4().hex[:16]}", True

    def _commit(self, ref: str, resource: dict[str, Any], condition: str | None) -> None:
        rtype, rid = ref.split("/", 1)
        meta = {**(resource.get("meta") or {}), "versionId": "1", "lastUpdated": _now()}  # keeps security labels
        stored = dict(resource, id=rid, meta=meta)
        self.resources[ref] = stored
        for ident in resource.get("identifier") or ():
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                self._by_identifier[(rtype, f"{ident.get('system', '')}|{ident['value']}")] = ref
        if self.ndjson is not None:
            with self.ndjson.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(stored, separators=(",", ":")) + "\n")

    @staticmethod
    def _response_entry(status: int, ref: str) -> dict[str, Any]:
        return {
            "response": {
                "status": f"{status} {_REASONS.get(status, '')}".strip(),
                "location": f"{ref}/_history/1",
            }
        }

    def process(self, bundle: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for a posted Bundle."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return 400, _outcome("body is not a Bundle", code="structure")
        kind = bundle.get("type")
        entries = bundle.get("entry") or []
        if kind == "transaction":
            return self._transaction(entries)
        if kind == "batch":
            return self._batch(entries)
        return 400, _outcome("Bundle.type must be transaction or batch", "Bundle.type", "structure")

    def _transaction(self, entries: list[Any]) -> tuple[int, dict[str, Any]]:
        pending: dict[tuple[str, str], str] = {}
        plans: list[tuple[int, str, bool]] = []
        full_urls: dict[str, str] = {}
        for index, entry in enumerate(entries):
            try:
                status, ref, new = self._plan(index, entry, pending)
            except _EntryError as exc:
                where = None if self.faults.omit_entry_location else f"Bundle.entry[{index}]"
                return exc.status, _outcome(exc.diagnostics, where)
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                if full_url in full_urls:
                    return 400, _outcome("duplicate fullUrl", f"Bundle.entry[{index}].fullUrl")
                full_urls[full_url] = ref
            condition = entry["request"].get("ifNoneExist")
            if new and condition:
                for token in _tokens(condition):
                    pending[(ref.split("/")[0], token)] = ref
            plans.append((status, ref, new))
        answer = []
        for entry, (status, ref, new) in zip(entries, plans, strict=True):
            if new:
                resource = json.loads(json.dumps(entry["resource"]))
                for node in _references(resource):
                    node["reference"] = full_urls.get(node["reference"], node["reference"])
                self._commit(ref, resource, entry["request"].get("ifNoneExist"))
            answer.append(self._response_entry(status, ref))
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": answer}

    def _batch(self, entries: list[Any]) -> tuple[int, dict[str, Any]]:
        answer: list[dict[str, Any]] = []
        for index, entry in enumerate(entries):
            injected = self.faults.batch_entry_statuses.pop(index, None)
            if injected is not None:
                answer.append(
                    {"response": {"status": str(injected), "outcome": _outcome("injected", code="transient")}}
                )
                continue
            try:
                if any(n["reference"].startswith("urn:") for n in _references(entry.get("resource"))):
                    raise _EntryError(400, "batch entries may not reference other entries (urn:uuid)")
                status, ref, new = self._plan(index, entry, {})
                if new:
                    self._commit(ref, entry["resource"], entry["request"].get("ifNoneExist"))
                answer.append(self._response_entry(status, ref))
            except _EntryError as exc:
                answer.append(
                    {
                        "response": {
                            "status": f"{exc.status} {_REASONS.get(exc.status, '')}".strip(),
                            "outcome": _outcome(exc.diagnostics),
                        }
                    }
                )
        return 200, {"resourceType": "Bundle", "type": "batch-response", "entry": answer}

    def expire_tokens(self) -> None:
        """Forget every issued token, as a server does when they expire early or it restarts."""
        self._tokens.clear()

    # --- HTTP ----------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if not self.require_auth:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        found = self._tokens.get(header[len("Bearer ") :])
        if found is None:
            return False
        client_id, until = found
        return time.monotonic() < until and client_id not in self.faults.revoked

    async def handle_fhir(self, request: web.Request) -> web.StreamResponse:
        if self.faults.delay_seconds:
            await asyncio.sleep(self.faults.delay_seconds)
        if not self._authorized(request):
            return web.json_response(
                _outcome("bearer token missing, invalid or expired", code="login"),
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                content_type=FHIR_JSON,
            )
        if self.faults.statuses:
            status, retry_after = self.faults.statuses.popleft()
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.json_response(
                _outcome(f"injected fault {status}", code="transient"),
                status=status,
                headers=headers,
                content_type=FHIR_JSON,
            )
        if not request.content_type.startswith(FHIR_JSON):
            return web.json_response(_outcome("expected application/fhir+json"), status=415)
        try:
            bundle = json.loads(await request.read())
        except ValueError:
            return web.json_response(_outcome("body is not JSON", code="structure"), status=400)
        self.bundles_received += 1
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        if self.faults.max_entries and isinstance(entries, list) and len(entries) > self.faults.max_entries:
            limit = self.faults.max_entries
            return web.json_response(
                _outcome(f"Bundle exceeds the maximum of {limit} entries", code="too-costly"),
                status=413,
                content_type=FHIR_JSON,
            )
        status, answer = self.process(bundle)
        if self.faults.drop_after_commit and status == 200:
            self.faults.drop_after_commit -= 1
            if request.transport is not None:
                request.transport.abort()  # committed, but the client never hears about it
            raise asyncio.CancelledError  # aiohttp stops this handler without writing a response
        return web.json_response(answer, status=status, content_type=FHIR_JSON)

    def _client_from_basic(self, header: str) -> Client | None:
        try:
            user, _, password = base64.b64decode(header[len("Basic ") :], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        client = self.clients.get(unquote_plus(user))
        if client is None or client.secret is None:
            return None
        if not hmac.compare_digest(unquote_plus(password).encode(), client.secret.encode()):
            return None
        return client

    def _client_from_assertion(self, form: Any, audience: str) -> Client | None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return None
        assertion = str(form.get("client_assertion", ""))
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        client = self.clients.get(str(issuer))
        if client is None or client.public_key_pem is None:
            return None
        try:
            claims = jwt.decode(
                assertion,
                load_pem_public_key(client.public_key_pem),  # type: ignore[arg-type]
                algorithms=["RS384", "ES384"],
                audience=audience,
                issuer=client.client_id,
                options={"require": ["exp", "iat", "jti", "iss", "sub", "aud"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError):  # TypeError: alg does not fit the registered key
            return None
        if claims["sub"] != client.client_id or claims["exp"] - time.time() > 300 + 5:
            return None
        if claims["jti"] in self._jtis:
            return None  # replayed assertion
        self._jtis.add(claims["jti"])
        self.assertions.append((jwt.get_unverified_header(assertion), claims))
        return client

    async def handle_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.faults.token_statuses:
            status, retry_after = self.faults.token_statuses.popleft()
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.json_response({"error": "temporarily_unavailable"}, status=status, headers=headers)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client = self._client_from_basic(header)
        else:
            client = self._client_from_assertion(form, str(request.url.with_query(None)))
        if client is None or client.client_id in self.faults.revoked:
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_requests.append(client.client_id)
        token = secrets.token_urlsafe(32)
        lifetime = self.faults.token_lifetime
        self._tokens[token] = (client.client_id, time.monotonic() + lifetime)
        self.tokens_issued += 1
        self.issued_tokens.append(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": lifetime}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return web.json_response(body)

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/fhir", self.handle_fhir)
        application.router.add_post("/fhir/", self.handle_fhir)
        application.router.add_post("/token", self.handle_token)
        return application

    async def start(self, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def server_context(
    cert: Path, key: Path, client_ca: Path | None = None, *, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """The receiver's TLS context; `client_ca` demands client certificates (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if maximum is not None:
        ctx.maximum_version = maximum
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _pairs(values: list[str], flag: str) -> Iterator[tuple[str, Path]]:
    for value in values:
        client_id, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"{flag} wants CLIENT_ID=FILE, got {value!r}")
        yield client_id, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.fhir_receiver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, help="demand client certificates signed by this CA")
    parser.add_argument("--client-secret", action="append", default=[], help="CLIENT_ID=SECRET_FILE")
    parser.add_argument("--client-key", action="append", default=[], help="CLIENT_ID=PUBLIC_KEY_PEM")
    parser.add_argument("--no-auth", action="store_true", help="accept FHIR requests without a token")
    parser.add_argument("--ndjson", type=Path, help="append every stored resource here")
    parser.add_argument("--no-validate", action="store_true", help="skip fhir.resources validation (benchmarks)")
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each FHIR answer")
    parser.add_argument("--fail", action="append", default=[], help="STATUS[:RETRY_AFTER], queued, once each")
    parser.add_argument("--drop-after-commit", type=int, default=0)
    parser.add_argument("--revoked", action="append", default=[])
    parser.add_argument("--max-entries", type=int, default=0, help="refuse Bundles with more entries (413)")
    args = parser.parse_args(argv)

    clients = [Client(cid, secret=p.read_text().strip()) for cid, p in _pairs(args.client_secret, "--client-secret")]
    clients += [Client(cid, public_key_pem=p.read_bytes()) for cid, p in _pairs(args.client_key, "--client-key")]
    receiver = Receiver(clients, require_auth=not args.no_auth, ndjson=args.ndjson, validate=not args.no_validate)
    receiver.faults.token_lifetime = args.token_lifetime
    receiver.faults.delay_seconds = args.delay
    receiver.faults.drop_after_commit = args.drop_after_commit
    receiver.faults.max_entries = args.max_entries
    receiver.faults.revoked.update(args.revoked)
    for spec in args.fail:
        status, _, after = spec.partition(":")
        receiver.faults.statuses.append((int(status), int(after) if after else None))

    async def serve() -> None:
        port = await receiver.start(server_context(args.cert, args.key, args.client_ca), args.host, args.port)
        print(f"FHIR base https://{args.host}:{port}/fhir  token https://{args.host}:{port}/token", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await receiver.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
