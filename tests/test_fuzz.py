"""Property-based fuzzing of both HTTP APIs from their own OpenAPI documents (schemathesis).

Every operation gets a bounded number of schema-valid and schema-violating requests; no answer may
be a 5xx, and every answer must be one the document declares, in the declared media type and shape.
Deterministic (derandomized) so a failure reproduces; the whole module runs in well under a minute.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import Stack

EXAMPLES = int(os.environ.get("PENGUIN12_FUZZ_EXAMPLES", "25"))
# "POST /v1/infer/batch,GET /readyz": operations to leave out while exploring past a known finding.
SKIP = {s.strip() for s in os.environ.get("PENGUIN12_FUZZ_SKIP", "").split(",") if s.strip()}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.mark.parametrize("service", ["preprocessor", "provenance"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_under_fuzzing(
    stack: Stack, service: str, mode: GenerationMode
) -> None:
    base = stack.url(service)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())  # type: ignore[union-attr]
        if f"{op.method.upper()} {op.path}" not in SKIP
    ]
    assert operations, f"{service} documents no operation"
    strategies = [op.as_strategy(generation_mode=mode) for op in operations]

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=EXAMPLES * len(operations),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base, checks=CHECKS, timeout=30)

    fuzz()


@given(
    peer=st.sampled_from(["203.0.113.9", "10.1.2.3", "127.0.0.1", "::1", "unknown"]),
    forwarded=st.lists(st.text(max_size=40), max_size=6),
)
@settings(max_examples=EXAMPLES * 20, deadline=None, derandomize=True, database=None)
def test_client_address_never_trusts_what_the_client_wrote(peer: str, forwarded: list[str]) -> None:
    """Whatever a client puts in X-Forwarded-For, it cannot choose its identity unless it is
    talking through a trusted proxy, and then only the hops that proxy appended count."""
    from starlette.requests import Request

    from penguin12.security import client_address, parse_networks

    header = ",".join(forwarded)
    try:
        raw = header.encode("latin-1")
    except UnicodeEncodeError:
        raw = header.encode("utf-8")
    request = Request({"type": "http", "client": (peer, 1), "headers": [(b"x-forwarded-for", raw)]})
    trusted = parse_networks("10.0.0.0/8,127.0.0.1/32")
    assert client_address(request, ()) == peer  # no trusted proxy: always the peer
    got = client_address(request, trusted)
    if peer in ("203.0.113.9", "::1", "unknown"):
        assert got == peer
    else:
        hops = [h.strip() for h in raw.decode("latin-1").split(",") if h.strip()]
        assert got == peer or got in hops
        # Never a hop the client wrote before the last untrusted one.
        untrusted = [h for h in hops if not h.startswith(("10.", "127.0.0.1"))]
        if untrusted and got != peer:
            assert got == untrusted[-1] or got in hops[hops.index(untrusted[-1]) :]
