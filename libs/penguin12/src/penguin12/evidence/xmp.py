"""XMP: the IPTC digital source type, and whether the file says it had a C2PA manifest.

Parsed by expat as a stream (no tree is built, so memory does not grow with the packet), with
DTDs refused outright: no entity can be declared, so none can be expanded (billion laughs,
external entities). Packets that mention neither field are not parsed at all.
"""

from __future__ import annotations

import xml.parsers.expat
from dataclasses import dataclass, field

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
DCTERMS = "http://purl.org/dc/terms/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_SEP = "\x01"  # expat joins namespace and local name with this
_SOURCE_TYPE = f"{IPTC_EXT}{_SEP}DigitalSourceType"
_PROVENANCE = f"{DCTERMS}{_SEP}provenance"
_RESOURCE = f"{RDF}{_SEP}resource"
_MAX_VALUE = 512  # characters kept of one value
_MAX_DEPTH = 64  # real XMP nests about 8 deep; expat slows down sharply on deep nesting


class XmpRefused(ValueError):
    """The packet is malformed or declares a DTD."""


@dataclass
class XmpFacts:
    source_types: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)  # dcterms:provenance: a C2PA manifest URI


def read_xmp(packet: bytes) -> XmpFacts:
    facts = XmpFacts()
    if b"DigitalSourceType" not in packet and b"provenance" not in packet:
        return facts
    parser = xml.parsers.expat.ParserCreate(namespace_separator=_SEP)
    capturing: list[str] | None = None
    text: list[str] = []
    depth = 0

    def refuse(*_: object) -> None:
        raise XmpRefused("XMP declares a DTD, which is never needed and is refused")

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal capturing, depth
        depth += 1
        if depth > _MAX_DEPTH:
            raise XmpRefused(f"XMP nests elements more than {_MAX_DEPTH} deep")
        for key, target in ((_SOURCE_TYPE, facts.source_types), (_PROVENANCE, facts.provenance)):
            if key in attrs:  # rdf:Description attribute form
                target.append(attrs[key][:_MAX_VALUE])
            if name == key:  # element form: the text, or rdf:resource
                if _RESOURCE in attrs:
                    target.append(attrs[_RESOURCE][:_MAX_VALUE])
                else:
                    capturing = target
                    text.clear()

    def end(name: str) -> None:
        nonlocal capturing, depth
        depth -= 1
        if capturing is not None and name in (_SOURCE_TYPE, _PROVENANCE):
            value = "".join(text).strip()
            if value:
                capturing.append(value[:_MAX_VALUE])
            capturing = None

    def chars(data: str) -> None:
        if capturing is not None and sum(map(len, text)) < _MAX_VALUE:
            text.append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(_strip_packet_wrapper(packet), True)
    except xml.parsers.expat.ExpatError as exc:
        raise XmpRefused(f"XMP is not well-formed XML ({exc})") from exc
    return facts


def _strip_packet_wrapper(packet: bytes) -> bytes:
    """The <?xpacket?> wrapper may be followed by padding nulls that expat calls junk."""
    return packet.rstrip(b"\x00 \t\r\n")
