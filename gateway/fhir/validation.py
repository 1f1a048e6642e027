"""Full validation of a transaction Bundle: fhir.resources R4B models plus the transaction rules they skip.

Too slow for every reading (see `mapping`), so it runs in the tests, at start-up on a sample, and
wherever a caller wants proof. fhir.resources validates each entry's resource with its own model (an
Observation inside a Bundle is checked as an Observation). On top of that we check what the models do not:
unique fullUrls, conditional-create requests that match the resource's identifiers (every OR'ed
alternative), no identifier holding a fullUrl (servers rewrite placeholder strings), every `urn:uuid`
reference resolving inside the bundle, and FHIR string rules (no control characters, not blank).
Errors carry locations and error types only: pydantic's input values would be PHI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import pydantic
from fhir.resources.R4B.bundle import Bundle

from gateway.fhir.errors import InvalidBundleError

__all__ = ["validate_bundle"]

_BAD_STRING = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _identifiers(resource: Mapping[str, Any]) -> set[str]:
    return {f"{i.get('system', '')}|{i.get('value', '')}" for i in resource.get("identifier", ())}


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _condition_identifiers(condition: str) -> list[str] | None:
    """`identifier=a|b,c|d` (FHIR-escaped, URL-encoded) as ["a|b", "c|d"]; None if not that form."""
    if not condition.startswith("identifier="):
        return None
    out = []
    for alt in _UNESCAPED_COMMA.split(unquote(condition[11:])):
        parts = _UNESCAPED_PIPE.split(alt)
        if len(parts) != 2:
            return None
        out.append(f"{_unescape(parts[0])}|{_unescape(parts[1])}")
    return out


def _transaction_problems(bundle: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if bundle.get("type") != "transaction":
        problems.append(("type", "not_transaction"))
    entries = bundle.get("entry") or []
    urls: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        url = entry.get("fullUrl")
        if not isinstance(url, str) or not url.startswith("urn:uuid:"):
            problems.append((f"{where}.fullUrl", "not_urn_uuid"))
        elif url in urls:
            problems.append((f"{where}.fullUrl", "duplicate_full_url"))
        else:
            urls.add(url)
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        if request.get("method") != "POST" or request.get("url") != resource.get("resourceType"):
            problems.append((f"{where}.request", "not_post_of_resource_type"))
        alternatives = _condition_identifiers(request.get("ifNoneExist", ""))
        if not alternatives or not set(alternatives) <= _identifiers(resource):
            problems.append((f"{where}.request.ifNoneExist", "not_an_identifier_of_the_resource"))
    for i, entry in enumerate(entries):
        for ident in (entry.get("resource") or {}).get("identifier", ()):
            value = ident.get("value")
            if isinstance(value, str) and any(url in value for url in urls):
                # A server rewrites every string holding a placeholder; the identifier would stop matching.
                problems.append((f"entry[{i}].resource.identifier", "identifier_holds_a_full_url"))
    for path, node in _walk(entries, "entry"):
        if isinstance(node, str):
            if _BAD_STRING.search(node) or not node.strip():
                problems.append((path, "bad_fhir_string"))
        elif isinstance(node, Mapping):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.startswith("urn:uuid:") and ref not in urls:
                problems.append((f"{path}.reference", "unresolved_reference"))
    return problems


def validate_bundle(bundle: Mapping[str, Any]) -> None:
    """Raise InvalidBundleError unless `bundle` is a valid R4B transaction Bundle that resolves in itself."""
    try:
        Bundle.model_validate(bundle)
    except pydantic.ValidationError as exc:
        problems = tuple((".".join(str(p) for p in err["loc"]), err["type"]) for err in exc.errors(include_input=False))
        message = f"bundle is not valid FHIR R4B ({len(problems)} problems)"
        raise InvalidBundleError(message, problems) from None
    rules = _transaction_problems(bundle)
    if rules:
        raise InvalidBundleError(f"bundle breaks transaction rules ({len(rules)} problems)", tuple(rules))
