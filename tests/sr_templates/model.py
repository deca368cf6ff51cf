"""The data model of the template tables: one ``Row`` per PS3.16 table row.

Rows are written in the tables' own notation (``row("4", ">> CONTAINS", "INCLUDE",
'DTID 4020 "CAD Image Library Entry"', "1-n", "M", vsc=...)``) and parsed here, so a row
can be read against the standard side by side. Only the few conditions a checker can
evaluate from the SR content tree are given as structured objects (``when``/``only_if``
and the templates' ``groups``); every condition keeps its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RELATIONSHIPS = ("CONTAINS", "HAS PROPERTIES", "HAS OBS CONTEXT", "HAS ACQ CONTEXT",
                 "HAS CONCEPT MOD", "INFERRED FROM", "SELECTED FROM")
VALUE_TYPES = ("TEXT", "CODE", "NUM", "DATE", "TIME", "DATETIME", "PNAME", "UIDREF",
               "COMPOSITE", "IMAGE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD", "CONTAINER",
               "TABLE", "INCLUDE")
REQUIREMENTS = ("M", "MC", "U", "UC")


@dataclass(frozen=True)
class Code:
    """A coded concept; compared by (scheme, value) only, never by meaning."""

    value: str
    scheme: str
    meaning: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.scheme, self.value)

    def __str__(self) -> str:
        return f'({self.value}, {self.scheme}, "{self.meaning}")'


@dataclass(frozen=True)
class Spec:
    """A concept name, value or units constraint.

    kind: EV (enumerated value), DT (defined term), CODES (one of several EVs),
    DCID / BCID (defined / baseline context group), PARAM ($name, bound by the including
    row), ANY (no constraint; ``text`` says what the table says instead).
    """

    kind: str
    codes: tuple[Code, ...] = ()
    cid: int | None = None
    param: str | None = None
    text: str = ""

    def __str__(self) -> str:
        if self.kind in ("EV", "DT"):
            return f"{self.kind} {self.codes[0]}"
        if self.kind == "CODES":
            return " | ".join(f"EV {c}" for c in self.codes)
        if self.kind in ("DCID", "BCID"):
            return f"{self.kind} {self.cid}" + (f' "{self.text}"' if self.text else "")
        if self.kind == "PARAM":
            return f"${self.param}"
        return self.text or "any"


ANY = Spec("ANY")


# -- conditions that can be evaluated from the content tree ---------------------------


def dcm(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple(("DCM", v) for v in values)


def sct(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple(("SCT", v) for v in values)


@dataclass(frozen=True)
class ParentValueIn:
    """The coded value of the parent Content Item is (not, with negate) one of ``codes``."""

    codes: tuple[tuple[str, str], ...]
    negate: bool = False


@dataclass(frozen=True)
class RowPresent:
    """At least one of the sibling ``rows`` (same template, same level) is present."""

    rows: tuple[str, ...]


@dataclass(frozen=True)
class RowsAbsent:
    """None of the sibling ``rows`` is present."""

    rows: tuple[str, ...]


@dataclass(frozen=True)
class RowValueIn:
    """Sibling ``row`` is present with a value in ``codes`` (or absent, if ``absent``)."""

    row: str
    codes: tuple[tuple[str, str], ...]
    absent: bool = False


@dataclass(frozen=True)
class SiblingConcept:
    """A sibling Content Item with one of these concept names is present (absent: negate)."""

    codes: tuple[tuple[str, str], ...]
    negate: bool = False


@dataclass(frozen=True)
class ImageHas:
    """The referenced image (the parent IMAGE item) carries one of these attributes.

    Evaluable only when the checker is given the image headers (``images=``)."""

    tags: tuple[int, ...]


@dataclass(frozen=True)
class DocumentHas:
    """Some Content Item of the document has one of these concept names."""

    codes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AtLeast:
    """At least ``n`` items of these rows (one level, one template) are present."""

    rows: tuple[str, ...]
    n: int = 1
    text: str = ""


@dataclass(frozen=True)
class Xor:
    """At most one of these rows is present; exactly one when ``mandatory`` (and ``when``)."""

    rows: tuple[str, ...]
    mandatory: bool = True
    when: object | None = None
    text: str = ""


# -- rows and templates ---------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    tid: int
    row: str
    nl: int
    rel: str | None
    by_ref: bool
    vt: str
    concept: Spec | None
    vm: tuple[int, int | None]
    req: str
    condition: str = ""
    value_set_text: str = ""
    value: Spec | None = None
    units: tuple[Spec, ...] = ()
    graphic: tuple[bool, frozenset[str]] | None = None  # (negate, types)
    value_range: tuple[float, float] | None = None
    include: int | None = None
    params: tuple[tuple[str, Spec], ...] = ()
    ref_under: Code | None = None
    when: object | None = None  # required when true (MC)
    only_if: object | None = None  # must be absent when false (IFF / "only if" / UC)
    allow_by_ref: bool = False
    in_root: tuple[tuple[int, str, str], ...] = ()  # (root TID, severity, message)
    note: str = ""

    @property
    def key(self) -> tuple[int, str]:
        return (self.tid, self.row)

    @property
    def vm_text(self) -> str:
        lo, hi = self.vm
        return f"{lo}" if hi == lo else f"{lo}-n" if hi is None else f"{lo}-{hi}"

    @property
    def rel_text(self) -> str:
        return ("R-" if self.by_ref else "") + (self.rel or "")


@dataclass(frozen=True)
class Template:
    tid: int
    name: str
    extensible: bool
    order_significant: bool
    root: bool
    rows: tuple[Row, ...]
    source_url: str
    edition: str
    params: tuple[str, ...] = ()
    groups: tuple[object, ...] = ()
    partial: bool = False
    notes: str = ""
    cross_checked: tuple[str, ...] = field(default_factory=tuple)

    def row(self, number: str) -> Row:
        for r in self.rows:
            if r.row == number:
                return r
        raise KeyError(f"TID {self.tid} has no row {number}")


# -- the notation ---------------------------------------------------------------------

# (value, scheme, "meaning"); a quoted meaning may itself hold parentheses
_CODE = r'\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*,\s*(?:"([^"]*)"|([^()"]*?))\s*\)'


def _code_of(m: re.Match, first: int) -> Code:
    meaning = m.group(first + 2) if m.group(first + 2) is not None else m.group(first + 3)
    return Code(m.group(first), m.group(first + 1), meaning or "")


def parse_code(text: str) -> Code:
    m = re.fullmatch(_CODE, text.strip())
    if not m:
        raise ValueError(f"not a code: {text!r}")
    return _code_of(m, 1)


def parse_spec(text: str) -> Spec:
    """One constraint in the tables' notation: EV/DT (code), DCID/BCID n "name", $Param."""
    text = text.strip()
    if not text:
        return ANY
    m = re.match(r"(EV|DT)\s*" + _CODE + r"(.*)$", text)
    if m:
        return Spec(m.group(1), (_code_of(m, 2),), text=m.group(6).strip(" ,"))
    m = re.match(r'([DB])CID\s*(\d+)\s*"?([^"]*)"?(.*)$', text)
    if m:
        return Spec(f"{m.group(1)}CID", cid=int(m.group(2)), text=m.group(3).strip())
    m = re.fullmatch(r"\$(\w+)", text)
    if m:
        return Spec("PARAM", param=m.group(1))
    return Spec("ANY", text=text)


def _nl_rel(text: str) -> tuple[int, str | None, bool]:
    text = text.strip()
    nl = len(text) - len(text.lstrip(">"))
    rel = text[nl:].strip()
    by_ref = rel.startswith("R-")
    rel = rel[2:] if by_ref else rel
    if rel and rel not in RELATIONSHIPS:
        raise ValueError(f"unknown relationship {rel!r}")
    return nl, rel or None, by_ref


def _vm(text: str) -> tuple[int, int | None]:
    m = re.fullmatch(r"(\d+)(?:-(\d+|n))?", text.strip())
    if not m:
        raise ValueError(f"bad VM {text!r}")
    lo = int(m.group(1))
    hi = m.group(2)
    return lo, (lo if hi is None else None if hi == "n" else int(hi))


def row(number: str, nl_rel: str, vt: str, concept: str, vm: str, req: str,
        cond: str = "", vsc: str = "", **extra: object) -> Row:
    """A table row in PS3.16 notation; ``tid`` is filled in by ``template()``."""
    nl, rel, by_ref = _nl_rel(nl_rel)
    if vt not in VALUE_TYPES:
        raise ValueError(f"row {number}: unknown value type {vt!r}")
    if req not in REQUIREMENTS:
        raise ValueError(f"row {number}: unknown requirement {req!r}")
    include = None
    concept_spec: Spec | None = None
    if vt == "INCLUDE":
        m = re.match(r"[DB]TID\s*(\d+)", concept.strip())
        if not m:
            raise ValueError(f"row {number}: INCLUDE without TID: {concept!r}")
        include = int(m.group(1))
    elif concept.strip():
        concept_spec = parse_spec(concept)
    value: Spec | None = None
    values: list[Spec] = []
    units: list[Spec] = []
    params: list[tuple[str, Spec]] = []
    graphic = None
    value_range = None
    ref_under = None
    for line in (x.strip() for x in vsc.split("\n")):
        if not line:
            continue
        m = re.match(r"UNITS\s*=\s*(.+)$", line)
        if m:
            units.append(parse_spec(m.group(1)))
            continue
        m = re.match(r"\$(\w+)\s*=\s*(.+)$", line)
        if m:
            params.append((m.group(1), parse_spec(m.group(2))))
            continue
        m = re.match(r"GRAPHIC TYPE\s*=\s*(not\s*)?\{(.+)\}", line)
        if m:
            types = frozenset(t.strip() for t in re.split(r",|\bor\b", m.group(2)) if t.strip())
            graphic = (bool(m.group(1)), types)
            continue
        m = re.fullmatch(r"Values?\s*=\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", line)
        if m:
            value_range = (float(m.group(1)), float(m.group(2)))
            continue
        if re.search(r'IMAGE Content Item.*in the \(111028, DCM, "Image Library"\)', line):
            ref_under = Code("111028", "DCM", "Image Library")
            continue
        spec = parse_spec(line)
        if spec.kind != "ANY":
            values.append(spec)
    if len(values) == 1:
        value = values[0]
    elif values:
        if all(v.kind == "EV" for v in values):
            value = Spec("CODES", tuple(v.codes[0] for v in values))
        else:
            value = values[0]
    return Row(tid=0, row=number, nl=nl, rel=rel, by_ref=by_ref, vt=vt, concept=concept_spec,
               vm=_vm(vm), req=req, condition=cond, value_set_text=vsc, value=value,
               units=tuple(units), graphic=graphic, value_range=value_range, include=include,
               params=tuple(params), ref_under=ref_under, **extra)  # type: ignore[arg-type]


def template(tid: int, name: str, *, extensible: bool, significant: bool, rows: list[Row],
             source_url: str, edition: str, root: bool = False, params: tuple[str, ...] = (),
             groups: tuple[object, ...] = (), partial: bool = False, notes: str = "",
             cross_checked: tuple[str, ...] = ()) -> Template:
    fixed = tuple(Row(**{**r.__dict__, "tid": tid}) for r in rows)
    numbers = [r.row for r in fixed]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"TID {tid}: duplicate row numbers")
    previous = -1
    for r in fixed:
        if r.nl > previous + 1:
            raise ValueError(f"TID {tid} row {r.row}: nesting level jumps")
        previous = r.nl
    for g in groups:
        for number in g.rows:  # type: ignore[attr-defined]
            if number not in numbers:
                raise ValueError(f"TID {tid}: group names unknown row {number}")
    return Template(tid=tid, name=name, extensible=extensible, order_significant=significant,
                    root=root, rows=fixed, source_url=source_url, edition=edition,
                    params=params, groups=groups, partial=partial, notes=notes,
                    cross_checked=cross_checked)
