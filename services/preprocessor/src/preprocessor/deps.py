"""The FastAPI dependencies of the preprocessor's routes, in one place: what `main.py` put on
``app.state`` at start, and who is asking."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from penguin12.web import owner_filter, requester
from preprocessor.intake import Intake


async def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]
# Who is asking (API key digest, else address): what an Idempotency-Key belongs to.
ClientDep = Annotated[str, Depends(requester)]
# Whom a new job belongs to (None: API keys are off, anyone may read it).
OwnerDep = Annotated[str | None, Depends(owner_filter)]
