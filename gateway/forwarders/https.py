"""HTTPS forwarder: FHIR transaction (or batch) Bundles POSTed to a FHIR server's base URL.

Each send packs the entries of up to `window` readings into one Bundle. The entries already use
conditional create (`ifNoneExist` on the deterministic identifier), so resending after a lost answer makes
no duplicates. The response decides every item on its own:

- all of the item's entries 200/201 -> confirmed;
- an entry 4xx (not 429) -> the item is rejected with a summary of the OperationOutcome kept in the clear
  (status, severity, code, a sanitised expression) and the server's own words reported apart, for the
  queue to seal (they may echo a patient's name);
- 429/503 -> unconfirmed, with the server's Retry-After as the hint; other 5xx, timeouts and resets ->
  `RetryableError`; a whole-request 401 -> one token refresh and one retry (the only retry done here).

`bundle_type = "transaction"` (default) is all-or-nothing (FHIR R4 3.1.0.11.2): when the server refuses
the whole Bundle with a 4xx, nothing was stored. With one item in the batch that item is rejected; with
several, the failing entry is located from the OperationOutcome (`Bundle.entry[n]`) when the server says
so, otherwise the forwarder narrows its `window` to 1 for as many sends as the batch had items, so the
drainer's next leases isolate the culprit while the good readings go through. `bundle_type = "batch"`
gets per-entry outcomes directly; because batch entries are processed independently (R4 3.1.0.11.1),
the forwarder turns `urn:uuid` references between entries into logical references by identifier, so
the server stores `Reference.identifier` rather than a resolved link: choose it only for a backend that
accepts that.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import structlog

from gateway.errors import ConfigError, GatewayError, KeyFileError
from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError, SendReport
from gateway.forwarders.fhir_bundle import BundleType, Packed, entry_count, pack
from gateway.https_tls import client_context, transport_error
from gateway.oauth import MAX_ASSERTION_LIFETIME, OAuthSettings, TokenSource
from gateway.retry_after import parse_retry_after
from gateway.secrets import resolve_secret_path

__all__ = ["HttpsForwarder", "HttpsSettings", "build", "outcome_summary", "outcome_text", "safe_expression"]

log = structlog.get_logger(__name__)

FHIR_JSON = "application/fhir+json"
_RESPONSE_TYPE: dict[str, str] = {"transaction": "transaction-response", "batch": "batch-response"}
_ENTRY_INDEX = re.compile(r"Bundle\.entry\[(\d+)\]")
# Whole-request statuses meaning "this server/config is wrong", not "this reading is wrong".
_CONFIG_STATUSES = frozenset({403, 404, 405, 406, 415})
# A refusal for the Bundle's size, not its content: 413, or an OperationOutcome saying so (Medplum:
# "Transaction requires strict isolation but has too many entries").
_SIZE_LIMIT = re.compile(
    r"too many (?:entries|resources|operations)|too large|exceeds? (?:the )?(?:maximum|max|limit)|"
    r"maximum (?:number of )?entries|bundle size|entry limit",
    re.IGNORECASE,
)
_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class HttpsSettings:
    base_url: str
    bundle_type: BundleType = "transaction"
    window: int = 20
    # Entries per Bundle the server accepts (None: no limit). Several readings still share a Bundle up to it.
    max_entries: int | None = None
    timeout_seconds: float = 30.0
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    auth: OAuthSettings | None = None
    # Trust for the token endpoint when it is not the FHIR server's: a CA file, or "system" for the
    # system's store. None: the same connection (and trust) as the FHIR server.
    token_ca_file: Path | Literal["system"] | None = None


# --- response interpretation -------------------------------------------------------------------------


def _issues(outcome: Any) -> list[Mapping[str, Any]]:
    """The OperationOutcome's issues that are objects; anything malformed yields none."""
    if not isinstance(outcome, Mapping) or outcome.get("resourceType") != "OperationOutcome":
        return []
    issues = outcome.get("issue")
    return [i for i in issues if isinstance(i, Mapping)] if isinstance(issues, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# FHIRPath as servers write it in `expression`: dotted element names, each with an optional [index].
_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?:\[\d{1,6}\])?")
_ROOTS = frozenset({"Bundle", "Observation", "Device", "OperationOutcome", "Resource", "DomainResource"})
_MAX_EXPRESSION = 80
# OperationOutcome.issue.severity and .code are required codes from closed value sets (FHIR R4
# http://hl7.org/fhir/R4/valueset-issue-severity.html, valueset-issue-type.html): anything else in them is
# the server's own words (a hostile one can put a name there) and is shown as "?".
_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
# fmt: off
_ISSUE_TYPES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
    "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
})
# fmt: on


def _code(value: Any, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "?"


def safe_expression(expression: str, vocabulary: frozenset[str] | None = None) -> str | None:
    """The leading part of a FHIRPath `expression` that is plainly a path, or None.

    A hostile backend can put anything in `expression`, a patient's name included. Kept: dotted segments
    of FHIRPath name characters with an optional `[n]` (n shown as `#`), starting at a resource type we
    send; each later segment must be an element name in `vocabulary` (the JSON keys of the Bundle sent) or,
    without one, a lower-case FHIR element name. Cut at the first other segment (function calls, quoted
    strings, spaces, names we never sent), bounded in length."""
    kept: list[str] = []
    for n, segment in enumerate(expression[:200].split(".")):
        if not _SEGMENT.fullmatch(segment):
            break
        name = segment.split("[", 1)[0]
        if n == 0:
            ok = name in _ROOTS or (vocabulary is not None and name in vocabulary)
        else:
            ok = name in vocabulary if vocabulary is not None else name[0].islower()
        if not ok:
            break
        kept.append(re.sub(r"\d+", "#", segment))
    if not kept:
        return None
    path = ".".join(kept) + (".…" if len(kept) < len(expression.split(".")) else "")
    return path if len(path) <= _MAX_EXPRESSION else path[: _MAX_EXPRESSION - 1] + "…"


def _has_text(issue: Mapping[str, Any]) -> bool:
    details = issue.get("details")
    return bool(issue.get("diagnostics") or (isinstance(details, Mapping) and details.get("text")))


def outcome_summary(outcome: Any, fallback: str, vocabulary: frozenset[str] | None = None) -> str:
    """`severity code [at expression]` for the first issues: what is stored and logged in the clear.

    The server's free text (`diagnostics`, `details.text`) is withheld here: it can echo anything, a
    patient's name included, and no scrubber can tell a name from a word. `outcome_text` gives it to the
    queue to seal (gateway.echo). Severity and code only from their value sets; the expression is `safe_expression`."""
    parts: list[str] = []
    for issue in _issues(outcome)[:3]:
        text = f"{_code(issue.get('severity'), _SEVERITIES)} {_code(issue.get('code'), _ISSUE_TYPES)}"
        if _has_text(issue):
            text += " (server text withheld)"
        where = _strings(issue.get("expression")) or _strings(issue.get("location"))
        path = safe_expression(where[0], vocabulary) if where else None
        if path:
            text += f" at {path}"
        parts.append(text)
    return f"{fallback}: " + "; ".join(parts) if parts else fallback


def outcome_text(outcome: Any) -> str:
    """The server's own words in an OperationOutcome (diagnostics, details.text, expressions, locations),
    one line per issue; "" when it has none. May carry PHI: only ever sealed, never logged or shown."""
    lines: list[str] = []
    for issue in _issues(outcome)[:20]:
        details = issue.get("details")
        words = [
            issue.get("diagnostics"),
            details.get("text") if isinstance(details, Mapping) else None,
            *_strings(issue.get("expression")),
            *_strings(issue.get("location")),
        ]
        said = [w for w in words if isinstance(w, str) and w.strip()]
        if said:
            lines.append(f"{issue.get('severity', '?')} {issue.get('code', '?')}: " + " | ".join(said))
    return "\n".join(lines)


def _vocabulary(batch: Sequence[Outgoing]) -> frozenset[str]:
    """Every JSON key of the Bundles sent: the element names an honest server's expression can name."""
    keys: set[str] = set()
    stack: list[Any] = [o.bundle for o in batch]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            keys.update(k for k in value if isinstance(k, str))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return frozenset(keys)


def _entry_status(entry: Any) -> int:
    try:
        return int(str(entry["response"]["status"]).split()[0])
    except (KeyError, TypeError, ValueError, IndexError):
        return 0  # unreadable: treated as "not confirmed", retried


def _located_entries(outcome: Any) -> set[int]:
    """Entry indexes named by the issues (`Bundle.entry[n]` in expression, location or diagnostics)."""
    found: set[int] = set()
    for issue in _issues(outcome):
        texts = _strings(issue.get("expression")) + _strings(issue.get("location"))
        if isinstance(issue.get("diagnostics"), str):
            texts.append(issue["diagnostics"])
        for text in texts:
            found.update(int(m) for m in _ENTRY_INDEX.findall(text))
    return found


def _names_size_limit(status: int, outcome: Any) -> bool:
    if status == 413:
        return True
    for issue in _issues(outcome):
        details = issue.get("details")
        texts = [issue.get("diagnostics"), details.get("text") if isinstance(details, Mapping) else None]
        if any(isinstance(t, str) and _SIZE_LIMIT.search(t) for t in texts):
            return True
    return False


class _TooLarge(Exception):
    """The server refused the Bundle for its size (internal to `HttpsForwarder.send`)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: Bundle too large")
        self.status = status


# --- the forwarder -----------------------------------------------------------------------------------


class HttpsForwarder:
    """Posts batches to a FHIR server; see the module docstring for how answers map to items."""

    name = "https"

    def __init__(self, settings: HttpsSettings) -> None:
        self.settings = settings
        self._ssl = self._tls_context()
        self._token_ssl = self._token_tls_context()
        self._auth = TokenSource(settings.auth) if settings.auth is not None else None
        self._client: httpx.AsyncClient | None = None
        self._token_client: httpx.AsyncClient | None = None  # only with its own trust (token_ca_file)
        self._reconnect = False  # set by reload(): rebuild the client with the new TLS files
        self._isolating = 0  # sends left with window 1 after an unlocatable transaction refusal
        self._max_entries = settings.max_entries  # lowered when the server refuses a Bundle's size
        # Told the new size when it is lowered (the daemon's health model: status, --json, metrics).
        self.on_max_entries: Callable[[int], None] | None = None

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        return client_context(s.ca_file, s.client_cert_file, s.client_key_file)

    def _token_tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.token_ca_file is None:
            return None
        ca = None if s.token_ca_file == "system" else s.token_ca_file
        return client_context(ca, s.client_cert_file, s.client_key_file)

    @property
    def window(self) -> int:
        return 1 if self._isolating else self.settings.window

    @property
    def max_entries(self) -> int | None:
        """Entries per Bundle in use: the configured cap, or the size the server last accepted if lower."""
        return self._max_entries

    @property
    def auth(self) -> TokenSource | None:
        return self._auth

    def reload(self) -> None:
        """SIGHUP: re-read rotated credentials, CA bundle and client certificate without a restart.

        A file that fails to load keeps the old one in use (logged), so a half-done rotation does not
        stop forwarding.
        """
        if self._auth is not None:
            self._auth.reload()
        try:
            self._ssl = self._tls_context()
            self._token_ssl = self._token_tls_context()
        except (OSError, GatewayError) as exc:
            log.error("tls_reload_failed", error=type(exc).__name__)
            return
        self._reconnect = True

    def _new_client(self, tls: ssl.SSLContext | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=tls or self._ssl,
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            follow_redirects=False,  # a redirect could carry the bearer token elsewhere
            headers={"Accept": FHIR_JSON},
            trust_env=False,  # no HTTPS_PROXY / .netrc from the environment: PHI goes where the config says
        )

    async def __aenter__(self) -> Self:
        proxies = sorted(k for k in os.environ if k.lower() in ("https_proxy", "http_proxy", "all_proxy"))
        if proxies:
            log.warning("https_proxy_ignored", variables=proxies, detail="VitalGate connects directly to base_url")
        self._client = self._new_client()
        if self._token_ssl is not None:
            self._token_client = self._new_client(self._token_ssl)
        self._reconnect = False
        if self._auth is not None:
            self._auth.check_expiry()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._token_client is not None:
            await self._token_client.aclose()
            self._token_client = None

    def _chunks(self, batch: Sequence[Outgoing]) -> list[list[Outgoing]]:
        """Consecutive readings packed into Bundles of at most `max_entries` entries (merged: shared
        Devices count once). A reading larger than the cap on its own still goes, alone."""
        limit = self._max_entries
        if limit is None:
            return [list(batch)]
        chunks: list[list[Outgoing]] = []
        current: list[Outgoing] = []
        for item in batch:
            if current and entry_count([*current, item]) > limit:
                chunks.append(current)
                current = []
            current.append(item)
        if current:
            chunks.append(current)
        return chunks

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        """Send `batch` in as few Bundles as the server's size limit allows; one report for all.

        A Bundle refused for its size is split in halves and sent again at once, and the smaller size is
        kept for later sends (the one resend done here besides the 401 refresh: nothing was stored, and
        the data is fine). A failure after some Bundles went through reports those as confirmed and the
        rest as unconfirmed, so the drainer resends only the rest.
        """
        if not batch:
            return SendReport(confirmed=frozenset())
        if self._reconnect and self._client is not None:
            await self.__aexit__(None, None, None)
            await self.__aenter__()
        pending = self._chunks(batch)
        confirmed: set[int] = set()
        rejected: dict[int, str] = {}
        echoed: dict[int, str] = {}
        retry_after: float | None = None
        while pending:
            chunk = pending.pop(0)
            try:
                report = await self._send_chunk(chunk)
            except _TooLarge as exc:
                entries = entry_count(chunk)
                self._max_entries = max(1, min(entries - 1, entries // 2))
                log.warning(
                    "fhir_bundle_too_large_shrinking",
                    entries=entries,
                    max_entries=self._max_entries,
                    status=exc.status,
                    sentence=f"The FHIR server refused a Bundle of {entries} entries for its size; sending "
                    f"at most {self._max_entries} per Bundle from now on (set output.https.max_entries).",
                )
                if self.on_max_entries is not None:
                    self.on_max_entries(self._max_entries)
                pending[:0] = self._chunks(chunk)
                continue
            except (RetryableError, PermanentError) as exc:
                if not confirmed and not rejected:
                    raise
                retry = exc.retry_after if isinstance(exc, RetryableError) else None
                return SendReport(frozenset(confirmed), rejected, retry, echoed)
            confirmed.update(report.confirmed)
            rejected.update(report.rejected)
            echoed.update(report.echoed)
            retry_after = report.retry_after if report.retry_after is not None else retry_after
        return SendReport(frozenset(confirmed), rejected, retry_after, echoed)

    async def _send_chunk(self, batch: Sequence[Outgoing]) -> SendReport:
        packed = pack(batch, self.settings.bundle_type)
        resp = await self._post(packed.body)
        report = self._interpret(resp, batch, packed)
        if self._isolating and len(batch) == 1 and (report.confirmed or report.rejected):
            self._isolating -= 1
        log.info(
            "fhir_batch_sent",
            items=len(batch),
            entries=len(packed.owners),
            confirmed=len(report.confirmed),
            rejected=len(report.rejected),
            status=resp.status_code,
        )
        return report

    async def _request(self, body: bytes, token: str | None) -> httpx.Response:
        assert self._client is not None, "use `async with` before send()"
        headers = {"Content-Type": FHIR_JSON}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return await self._client.post(self.settings.base_url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise transport_error(exc, "fhir") from None

    async def _post(self, body: bytes) -> httpx.Response:
        """POST once; on 401 refresh the token and POST once more (the forwarder's only retry)."""
        if self._auth is None:
            return await self._request(body, None)
        assert self._client is not None, "use `async with` before send()"
        token = await self._auth.bearer(self._token_client or self._client)
        resp = await self._request(body, token)
        if resp.status_code != 401:
            return resp
        log.warning("fhir_unauthorized_refreshing_token")
        token = await self._auth.refresh(self._token_client or self._client, stale=token)
        resp = await self._request(body, token)
        if resp.status_code == 401:
            log.critical("fhir_unauthorized_with_fresh_token", alert=True)
            raise PermanentError("fhir: HTTP 401 with a freshly issued token")
        return resp

    def _interpret(self, resp: httpx.Response, batch: Sequence[Outgoing], packed: Packed) -> SendReport:
        status = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if status >= 500 or status in _RETRY_STATUSES:  # 429 and 503 usually carry Retry-After
            raise RetryableError(f"fhir: HTTP {status}", retry_after=retry_after)
        if status in _CONFIG_STATUSES or 300 <= status < 400:  # redirects are not followed (token leak)
            log.critical("fhir_request_refused", alert=True, status=status)
            raise PermanentError(f"fhir: HTTP {status} (check base_url, scopes and server configuration)")
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if 400 <= status < 500:
            return self._whole_refusal(status, payload, batch, packed)
        if not 200 <= status < 300:
            raise RetryableError(f"fhir: unexpected HTTP {status}")
        return self._per_entry(payload, batch, packed, retry_after)

    def _per_entry(
        self, payload: Any, batch: Sequence[Outgoing], packed: Packed, retry_after: float | None
    ) -> SendReport:
        expected = _RESPONSE_TYPE[self.settings.bundle_type]
        if not isinstance(payload, Mapping) or payload.get("type") != expected:
            raise RetryableError(f"fhir: answer is not a {expected} Bundle")
        entries = payload.get("entry") or []
        if not isinstance(entries, list) or len(entries) != len(packed.owners):
            raise RetryableError("fhir: response entry count differs from request")
        failed: dict[int, tuple[str, str]] = {}
        pending: set[int] = set()
        vocabulary: frozenset[str] | None = None
        for index, (entry, owners) in enumerate(zip(entries, packed.owners, strict=True)):
            code = _entry_status(entry)
            if 200 <= code < 300:
                continue
            if 400 <= code < 500 and code not in _RETRY_STATUSES:
                response = entry.get("response") if isinstance(entry, Mapping) else None
                outcome = response.get("outcome") if isinstance(response, Mapping) else None
                vocabulary = vocabulary if vocabulary is not None else _vocabulary(batch)
                reason = outcome_summary(outcome, f"entry {index}: HTTP {code}", vocabulary)
                said = outcome_text(outcome)
                for pos in owners:
                    failed.setdefault(pos, (reason, said))
            else:
                pending.update(owners)
        confirmed = frozenset(
            item.item_id for pos, item in enumerate(batch) if pos not in failed and pos not in pending
        )
        rejected = {batch[pos].item_id: reason for pos, (reason, _) in failed.items()}
        echoed = {batch[pos].item_id: said for pos, (_, said) in failed.items() if said}
        return SendReport(confirmed, rejected, retry_after if pending else None, echoed)

    def _whole_refusal(self, status: int, payload: Any, batch: Sequence[Outgoing], packed: Packed) -> SendReport:
        """A 4xx for the whole Bundle: nothing was stored; a size limit shrinks the Bundle, otherwise find
        which reading caused it."""
        reason = outcome_summary(payload, f"HTTP {status}", _vocabulary(batch))
        said = outcome_text(payload)
        if _names_size_limit(status, payload):
            if len(batch) > 1:
                raise _TooLarge(status)
            # One reading's Devices and Observations are already too many: no smaller Bundle exists. Keep
            # the reading (not quarantined) and tell the operator to raise the server's limit.
            log.critical("fhir_bundle_limit_below_one_reading", alert=True, entries=len(packed.owners))
            raise PermanentError(f"fhir: the server refuses a Bundle of one reading ({reason})")
        if len(batch) == 1:
            return SendReport(frozenset(), {batch[0].item_id: reason}, echoed={batch[0].item_id: said} if said else {})
        culprits = {pos for i in _located_entries(payload) if i < len(packed.owners) for pos in packed.owners[i]}
        if culprits:
            ids = [batch[pos].item_id for pos in culprits]
            return SendReport(frozenset(), dict.fromkeys(ids, reason), echoed=dict.fromkeys(ids, said) if said else {})
        self._isolating = len(batch)
        log.warning("fhir_bundle_refused_isolating", status=status, items=len(batch))
        return SendReport(frozenset())


# --- config ------------------------------------------------------------------------------------------

_TOP_KEYS = frozenset(
    {
        "base_url",
        "bundle_type",
        "window",
        "max_entries",
        "timeout_seconds",
        "ca_file",
        "client_cert_file",
        "client_key_file",
        "auth",
        "token_ca_file",
    }
)
_AUTH_KEYS = frozenset(
    {
        "method",
        "token_url",
        "client_id",
        "client_secret_file",
        "private_key_file",
        "scope",
        "algorithm",
        "key_id",
        "token_skew_seconds",
        "assertion_lifetime_seconds",
        "credential_expires",
        "expiry_warning_days",
    }
)


class _Section:
    """Typed getters that raise ConfigError naming `output.https.<key>`."""

    def __init__(self, data: Mapping[str, Any], prefix: str, file: str, allowed: frozenset[str]) -> None:
        self.data, self.prefix, self.file = data, prefix, file
        for key in data:
            if key not in allowed:
                raise ConfigError(file, f"{prefix}.{key}", "unknown key")

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.prefix}.{key}", problem)

    def str_(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.error(key, "must be a non-empty string")
        return value

    def required(self, key: str) -> str:
        value = self.str_(key)
        if value is None:
            raise self.error(key, "is required")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(key, f"must be a number from {low:g} to {high:g}")
        return float(value)

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> str:
        value = self.data.get(key, default)
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(repr(o) for o in options)}")
        return str(value)

    def path(self, key: str) -> Path | None:
        value = self.str_(key)
        if value is None:
            return None
        try:
            path = resolve_secret_path(value)
        except KeyFileError as exc:
            raise self.error(key, str(exc)) from None
        if not path.is_file():
            raise self.error(key, f"{path}: no such file")
        return path


def _https_url(section: _Section, key: str) -> str:
    url = section.required(key)
    parsed = httpx.URL(url)
    if parsed.scheme != "https" or not parsed.host:
        raise section.error(key, "must be an https:// URL (plain HTTP would expose PHI and tokens)")
    return url


def _auth_settings(data: Any, file: str) -> OAuthSettings | None:
    if not isinstance(data, Mapping):
        raise ConfigError(file, "output.https.auth", "must be a table")
    sec = _Section(data, "output.https.auth", file, _AUTH_KEYS)
    method = sec.choice("method", "", ("none", "client_secret_basic", "private_key_jwt"))
    if method == "none":
        return None
    secret_key = "client_secret_file" if method == "client_secret_basic" else "private_key_file"
    other = "private_key_file" if method == "client_secret_basic" else "client_secret_file"
    if other in data:
        raise sec.error(other, f"does not apply to method {method!r}")
    expires = data.get("credential_expires")
    if expires is not None and not isinstance(expires, date):
        raise sec.error("credential_expires", "must be a TOML date, e.g. 2027-02-01")
    lifetime = sec.number("assertion_lifetime_seconds", MAX_ASSERTION_LIFETIME, 30, MAX_ASSERTION_LIFETIME)
    settings = OAuthSettings(
        method="client_secret_basic" if method == "client_secret_basic" else "private_key_jwt",
        token_url=_https_url(sec, "token_url"),
        client_id=sec.required("client_id"),
        secret=sec.required(secret_key),
        scope=sec.str_("scope"),
        algorithm="ES384" if sec.choice("algorithm", "RS384", ("RS384", "ES384")) == "ES384" else "RS384",
        key_id=sec.str_("key_id"),
        skew_seconds=sec.number("token_skew_seconds", 60, 0, 600),
        assertion_lifetime=int(lifetime),
        credential_expires=expires,
        expiry_warning_days=int(sec.number("expiry_warning_days", 14, 0, 365)),
    )
    if settings.method == "private_key_jwt" and not settings.key_id:
        raise sec.error("key_id", "required with private_key_jwt (SMART Backend Services: the registered key's kid)")
    try:
        TokenSource(settings)  # reads and checks the secret now: fail at startup, not at the first send
    except GatewayError as exc:
        raise sec.error(secret_key, str(exc)) from None
    return settings


def settings_from(section: Mapping[str, Any], file: str) -> HttpsSettings:
    sec = _Section(section, "output.https", file, _TOP_KEYS)
    if "auth" not in section:
        raise sec.error("auth", 'is required (use method = "none" explicitly for an open test server)')
    cert, key = sec.path("client_cert_file"), sec.path("client_key_file")
    if (cert is None) != (key is None):
        raise sec.error("client_key_file" if key is None else "client_cert_file", "mTLS needs both cert and key")
    window = sec.number("window", 20, 1, 1000)
    if window != int(window):
        raise sec.error("window", "must be a whole number")
    bundle_type = sec.choice("bundle_type", "transaction", ("transaction", "batch"))
    max_entries: int | None = None
    if "max_entries" in section:
        limit = sec.number("max_entries", 0, 1, 100_000)
        if limit != int(limit):
            raise sec.error("max_entries", "must be a whole number")
        max_entries = int(limit)
    return HttpsSettings(
        base_url=_https_url(sec, "base_url"),
        bundle_type="batch" if bundle_type == "batch" else "transaction",
        window=int(window),
        max_entries=max_entries,
        timeout_seconds=sec.number("timeout_seconds", 30, 1, 600),
        ca_file=sec.path("ca_file"),
        client_cert_file=cert,
        client_key_file=key,
        auth=_auth_settings(section["auth"], file),
        token_ca_file="system" if sec.str_("token_ca_file") == "system" else sec.path("token_ca_file"),
    )


def build(section: Mapping[str, Any], ctx: ForwarderContext) -> HttpsForwarder:
    """The forwarder for `[output.https]`; every problem is a ConfigError naming the key."""
    settings = settings_from(section, ctx.config_file)
    try:
        return HttpsForwarder(settings)
    except (OSError, GatewayError) as exc:  # unreadable CA bundle, client cert or key
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(ctx.config_file, "output.https.ca_file/client_cert_file", problem) from None
