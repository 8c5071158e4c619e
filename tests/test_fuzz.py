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
