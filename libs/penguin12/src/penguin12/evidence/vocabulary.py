"""The words the evidence readers look for: IPTC digital source types and generator names."""

from __future__ import annotations

import re

# IPTC NewsCodes "digitalsourcetype"; C2PA actions use the same URIs.
AI_SOURCE_TYPES = {
    "trainedAlgorithmicMedia": "made by a trained AI model (generative AI)",
    "compositeWithTrainedAlgorithmicMedia": "a composite that includes AI-generated elements",
}
OTHER_SOURCE_TYPES = {
    "digitalCapture": "captured by a camera or scanner",
    "negativeFilm": "scanned from a film negative",
    "positiveFilm": "scanned from a film positive",
    "print": "scanned from a print",
    "minorHumanEdits": "captured, with minor human edits",
    "humanEdits": "edited by a person",
    "compositeCapture": "a composite of captured images",
    "algorithmicallyEnhanced": "a capture enhanced by an algorithm",
    "dataDrivenMedia": "made from data by an algorithm",
    "digitalArt": "drawn or made by a person with digital tools",
    "digitalCreation": "made by a person with digital tools",
    "virtualRecording": "recorded in a virtual environment",
    "compositeSynthetic": "a composite including synthetic elements",
    "algorithmicMedia": "made by an algorithm without training data",
    "screenCapture": "a screen capture",
    "composite": "a composite of several sources",
}


def source_type_code(value: str) -> str:
    """The IPTC code of a source type, whatever form it is written in (URI, prefixed, bare)."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def describe_source_type(code: str) -> str:
    return AI_SOURCE_TYPES.get(code) or OTHER_SOURCE_TYPES.get(code) or "of an unknown kind"


# Names that generators and their front ends write into Software/Artist tags, lower case.
GENERATOR_NAMES = (
    "stable diffusion",
    "stablediffusion",
    "automatic1111",
    "comfyui",
    "invokeai",
    "fooocus",
    "novelai",
    "midjourney",
    "dall-e",
    "dall·e",
    "dalle",
    "openai",
    "chatgpt",
    "firefly",
    "imagen",
    "gemini",
    "leonardo.ai",
    "ideogram",
    "flux",
    "dreamstudio",
    "nightcafe",
    "craiyon",
    "bing image creator",
    "image creator from designer",
    "microsoft designer",
    "grok",
    "kandinsky",
    "playground ai",
    "runway",
)
_GENERATOR_RE = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in GENERATOR_NAMES) + r")\b")
# What AUTOMATIC1111 and its forks write after the prompt: "Steps: 20, Sampler: Euler a, ..."
A1111_PARAMETERS_RE = re.compile(r"(?:^|\n)Steps: \d+, Sampler: ")
_A1111_FIELD_RE = re.compile(r"(?:^|, )(Model|Sampler|Steps|Version): ([^,\n]{1,80})")


def generator_named_in(text: str) -> str | None:
    """The generator name found in ``text`` (first 4 KB), as written there, or None."""
    head = text[:4096]
    match = _GENERATOR_RE.search(head.lower())
    return head[match.start() : match.end()] if match else None


def a1111_summary(text: str) -> str:
    """The model, sampler and steps from an AUTOMATIC1111 parameters block, in a short phrase."""
    settings = text[-4096:]
    fields = dict(_A1111_FIELD_RE.findall(settings))
    parts = [f"{k.lower()} {fields[k]}" for k in ("Model", "Sampler", "Steps") if k in fields]
    return ", ".join(parts)
