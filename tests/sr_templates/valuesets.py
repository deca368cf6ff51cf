"""Context group membership from pydicom's CID dictionaries, by (scheme, value) only.

pydicom's code meanings may carry zero-width spaces and differ from the meanings in a
document; membership is therefore decided by coding scheme designator and code value.
A CID pydicom does not have (e.g. CID 5000 "Language", CID 5001 "Country") is an open
value set: ``members()`` returns None and the checker accepts any code there, saying so.
"""

from __future__ import annotations

from functools import cache

from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr.codedict import codes


@cache
def members(cid: int) -> frozenset[tuple[str, str]] | None:
    """(scheme, value) of every code in CID ``cid``; None when pydicom lacks the CID."""
    if cid not in cid_concepts:
        return None
    collection = getattr(codes, f"cid{cid}")
    found = set()
    for keyword in collection.dir():
        code = getattr(collection, keyword)
        found.add((code.scheme_designator, code.value))
    return frozenset(found)


def meaning(cid: int, key: tuple[str, str]) -> str:
    """The meaning pydicom gives ``key`` in CID ``cid`` (zero-width spaces removed)."""
    if cid not in cid_concepts:
        return ""
    collection = getattr(codes, f"cid{cid}")
    for keyword in collection.dir():
        code = getattr(collection, keyword)
        if (code.scheme_designator, code.value) == key:
            return code.meaning.replace("\u200b", "")
    return ""
