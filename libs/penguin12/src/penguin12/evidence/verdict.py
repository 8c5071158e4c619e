"""The one rule by which evidence changes a verdict.

A declaration of AI generation in the file itself (a C2PA manifest whose signature verifies, or
an IPTC digital source type in XMP) makes the verdict FAKE with the assessment ``declared_ai``,
whatever the pixel model says; the pixel model's own probability stays in the result beside it.
Nothing ever makes a verdict REAL: metadata is easy to strip or forge, so its absence, or a
claim of a camera capture, proves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from penguin12.schemas import Finding, Result

DECLARED_AI = "declared_ai"
FAKE = "FAKE"
# (source, finding) pairs that are declarations of AI generation. A C2PA manifest that does not
# verify is reported as ``manifest_invalid``, never as ``ai_declared``, so it cannot count.
_DECLARATIONS = frozenset({("c2pa", "ai_declared"), ("xmp", "ai_declared")})


def is_declaration(finding: Finding) -> bool:
    return (finding.source, finding.finding) in _DECLARATIONS


def apply_declarations(model_verdict: Result, evidence: Sequence[Finding]) -> Result:
    """The final verdict: the model's, unless the file declares itself AI-made.

    The evidence is attached either way. ``confidence`` and ``fake_probability`` stay the pixel
    model's: the declaration decides the label, not the model's estimate.
    """
    final = model_verdict.model_copy(update={"evidence": list(evidence)})
    if not any(is_declaration(f) for f in evidence):
        return final
    return final.model_copy(
        update={
            "prediction": FAKE,
            "confidence": model_verdict.fake_probability,
            "assessment": DECLARED_AI,
        }
    )
