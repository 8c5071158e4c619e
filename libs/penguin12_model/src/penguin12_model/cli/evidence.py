"""``detect`` offline, like the service: each file's own metadata read and the one rule applied.

The same readers as the preprocessor (`penguin12.evidence.read_evidence`) and the same verdict
rule as the classifier (`apply_declarations`): a valid C2PA or IPTC declaration of AI generation
makes the verdict FAKE (assessment ``declared_ai``); nothing in the metadata ever makes it REAL.
Trust anchors come from ``PENGUIN12_C2PA_TRUST_ANCHORS_FILE``, as for the preprocessor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from penguin12.schemas import ModelInfo

    from .scoring import Scored


def apply_file_evidence(results: Sequence[Scored], info: ModelInfo) -> None:
    """Attach ``evidence`` and ``assessment`` to each scored image, and apply the rule."""
    from penguin12 import schemas
    from penguin12.evidence import TrustAnchors, apply_declarations, read_evidence

    trust = TrustAnchors.from_file(os.environ.get("PENGUIN12_C2PA_TRUST_ANCHORS_FILE") or None)
    for scored in results:
        if scored.error is not None or scored.prediction is None:
            continue
        assert scored.confidence is not None and scored.fake_probability is not None
        try:
            data = scored.path.read_bytes()
        except OSError:
            continue
        model_verdict = schemas.Result(
            prediction=scored.prediction,
            confidence=scored.confidence,
            fake_probability=scored.fake_probability,
            assessment=scored.assessment,
            model=info,
            demo=info.demo,
        )
        final = apply_declarations(model_verdict, read_evidence(data, trust=trust))
        scored.prediction, scored.confidence = final.prediction, final.confidence
        scored.assessment, scored.evidence = final.assessment, final.evidence or []


def print_file_evidence(results: Sequence[Scored], out: Any) -> None:
    """Each image's findings under the table, in words; the file's text is never markup."""
    from rich.markup import escape

    words = {
        "c2pa": "Content Credentials (C2PA)",
        "xmp": "IPTC metadata (XMP)",
        "png": "PNG text",
        "exif": "EXIF",
        "evidence": "Metadata reader",
    }
    for scored in results:
        if not scored.evidence:
            continue
        out.print(f"[bold]{escape(str(scored.path))}[/bold]: what the file says about itself")
        for f in scored.evidence:
            out.print(
                f"  • [bold]{words.get(f.source, escape(f.source))}[/bold]: {escape(f.detail)}"
            )
        if scored.assessment == "declared_ai":
            out.print("  The file declares AI generation, so the verdict is FAKE.")
