"""The SDK's typed answers mirror the one wire schema (`penguin12.schemas`) field for field.

The client package is published on its own and must not depend on the services, so it keeps its
own small dataclasses; this test is what keeps them the schema's mirror.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import BaseModel

import penguin12_client
from penguin12 import schemas

# client class -> (schema class, client-only fields)
MIRRORS: dict[type, tuple[type[BaseModel], set[str]]] = {
    penguin12_client.ModelInfo: (schemas.ModelInfo, set()),
    penguin12_client.Finding: (schemas.Finding, set()),
    penguin12_client.Result: (schemas.Result, set()),
    penguin12_client.JobState: (schemas.JobState, {"raw"}),
}


@pytest.mark.parametrize("client_class", list(MIRRORS), ids=lambda c: c.__name__)
def test_sdk_classes_have_the_schema_fields(client_class: type) -> None:
    schema, client_only = MIRRORS[client_class]
    fields = {f.name for f in dataclasses.fields(client_class)} - client_only
    assert fields == set(schema.model_fields)


def test_a_schema_result_reads_back_whole_in_the_sdk() -> None:
    model = schemas.ModelInfo(
        name="m",
        version="0123456789ab",
        architecture="clip",
        demo=False,
        family="onnx_probe",
        license="MIT",
        origin="PyPI",
        caveat="a signal, not proof",
    )
    state = schemas.JobState(
        request_id="r1",
        status=schemas.JobStatus.COMPLETED,
        submitted_at=1.0,
        last_updated=2.0,
        result=schemas.Result(
            prediction="FAKE",
            confidence=0.9,
            fake_probability=0.9,
            assessment="likely_fake",
            model=model,
            demo=False,
            evidence=[schemas.Finding(source="xmp", finding="ai_declared", detail="declared")],
        ),
    )
    read = penguin12_client.JobState.from_json(json.loads(state.model_dump_json()))
    assert read.result is not None and read.result.model is not None
    assert dataclasses.asdict(read.result.model) == model.model_dump()
    assert read.result.evidence is not None
    assert [dataclasses.asdict(f) for f in read.result.evidence] == [
        f.model_dump() for f in state.result.evidence or []
    ]
    assert (read.status, read.result.prediction, read.result.assessment) == (
        "COMPLETED",
        "FAKE",
        "likely_fake",
    )
