"""Walk an SR content tree against the template tables and report every deviation.

Matching: the children of a Content Item are matched to the rows one nesting level below
the row the item matched, with INCLUDE rows expanded in place (an included template's
first-level rows take the including row's relationship when they state none, and its
parameter bindings). A child matches a row by relationship type (and by-value/by-reference),
value type (of the referenced item, for by-reference) and concept name; when several rows
fit, the one whose subtree yields the fewest findings wins.

Findings carry a severity:

- ``error``: a deviation from the tables (missing M row, MC row whose condition holds,
  item a non-extensible template does not allow, VM exceeded, value not in an EV or DCID
  value set, wrong units, wrong relationship or value type, by-reference target missing or
  of the wrong value type, item present whose "only if" condition is false);
- ``warning``: value or units outside a baseline (BCID) or defined-term (DT) constraint,
  items out of order in an order-significant template;
- ``unchecked``: a condition the checker cannot evaluate from the tree (reported when the
  row is absent), a CID pydicom does not have (open value set), a partially encoded
  template's content;
- ``info``: an item an extensible template does not list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydicom import Dataset

from .cad import CAD_TEMPLATES
from .common import COMMON_TEMPLATES
from .measurement import MEASUREMENT_TEMPLATES
from .model import (
    AtLeast,
    DocumentHas,
    ImageHas,
    ParentValueIn,
    Row,
    RowPresent,
    RowsAbsent,
    RowValueIn,
    SiblingConcept,
    Spec,
    Template,
    Xor,
)
from .valuesets import members

TEMPLATES: dict[int, Template] = {
    t.tid: t for t in (*CAD_TEMPLATES, *COMMON_TEMPLATES, *MEASUREMENT_TEMPLATES)}

SEVERITIES = ("error", "warning", "unchecked", "info")

Path = tuple[int, ...]


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str  # "1.3.2": the item (or, for a missing row, its parent) in the content tree
    tid: int | None
    row: str | None
    message: str

    @property
    def location(self) -> str:
        if self.tid is None:
            return self.path
        return f"{self.path} TID {self.tid}" + (f" row {self.row}" if self.row else "")

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"


class TemplateConformanceError(AssertionError):
    """Raised by ``assert_conforms``; ``findings`` holds every finding, errors first."""

    def __init__(self, root_tid: int, findings: list[Finding]) -> None:
        self.findings = findings
        errors = [f for f in findings if f.severity == "error"]
        lines = "\n".join(f"  {f}" for f in errors)
        super().__init__(f"{len(errors)} deviation(s) from TID {root_tid}:\n{lines}")


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def check(ds: Dataset, root_tid: int, *, images: Mapping[str, Dataset] | None = None,
          templates: Mapping[int, Template] | None = None) -> list[Finding]:
    """Every deviation of the content tree of ``ds`` from TID ``root_tid``.

    ``images`` (SOP Instance UID -> image header) lets the checker evaluate conditions on
    the referenced images (TID 4020 rows 2-12); without it they are reported 'unchecked'.
    """
    return _Checker(ds, root_tid, images, dict(templates or TEMPLATES)).run()


def assert_conforms(ds: Dataset, root_tid: int, *,
                    images: Mapping[str, Dataset] | None = None) -> list[Finding]:
    """Raise ``TemplateConformanceError`` listing all errors; return the other findings."""
    findings = check(ds, root_tid, images=images)
    if errors(findings):
        ordered = sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
        raise TemplateConformanceError(root_tid, ordered)
    return findings


# -- content item access --------------------------------------------------------------


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []) or [])


def _code(seq_item: Dataset | None) -> tuple[str, str] | None:
    if seq_item is None:
        return None
    return (str(seq_item.get("CodingSchemeDesignator", "")), str(seq_item.get("CodeValue", "")
                                                                 or seq_item.get(
                                                                     "LongCodeValue", "")
                                                                 or seq_item.get(
                                                                     "URNCodeValue", "")))


def _first(item: Dataset, keyword: str) -> Dataset | None:
    seq = item.get(keyword)
    return seq[0] if seq else None


def _concept(item: Dataset) -> tuple[str, str] | None:
    return _code(_first(item, "ConceptNameCodeSequence"))


def _code_text(code: Dataset | None, missing: str) -> str:
    """A Code Sequence item as ``(value, scheme, "meaning")``, or ``missing``."""
    if code is None:
        return missing
    return f'({code.get("CodeValue", "")}, {code.get("CodingSchemeDesignator", "")}, ' \
           f'"{code.get("CodeMeaning", "")}")'


def _concept_text(item: Dataset) -> str:
    return _code_text(_first(item, "ConceptNameCodeSequence"), "(no concept name)")


def _value_code(item: Dataset) -> tuple[str, str] | None:
    return _code(_first(item, "ConceptCodeSequence"))


def _value_text(item: Dataset) -> str:
    return _code_text(_first(item, "ConceptCodeSequence"), "(none)")


def _reference(item: Dataset) -> Path | None:
    if "ReferencedContentItemIdentifier" not in item:
        return None
    value = item.ReferencedContentItemIdentifier
    if isinstance(value, int):
        return (int(value),)
    return tuple(int(v) for v in value)


def _declared_template(item: Dataset) -> int | None:
    """The TID an item names in its Content Template Sequence (DCMR), if any."""
    declared = _first(item, "ContentTemplateSequence")
    if declared is None or declared.get("MappingResource", "DCMR") != "DCMR":
        return None
    try:
        return int(declared.get("TemplateIdentifier", ""))
    except ValueError:
        return None


def _text(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _spec_text(spec: Spec | None) -> str:
    return "any" if spec is None else str(spec)


# -- matching structures --------------------------------------------------------------


@dataclass
class _Slot:
    row: Row
    rel: str | None
    bindings: dict[str, Spec | None]
    chain: tuple[Row, ...]  # INCLUDE rows that brought this row to the level, outermost first
    order: int
    ref_ok: str  # "ref", "value" or "either"


@dataclass
class _Include:
    row: Row
    chain: tuple[Row, ...]  # INCLUDE rows before this one
    bindings: dict[str, Spec | None]


@dataclass
class _Level:
    owner: Template
    slots: list[_Slot] = field(default_factory=list)
    includes: list[_Include] = field(default_factory=list)


def _effective_max(slot: _Slot) -> int | None:
    if any(inc.vm[1] is None or inc.vm[1] > 1 for inc in slot.chain):
        return None
    return slot.row.vm[1]


class _Checker:
    def __init__(self, ds: Dataset, root_tid: int, images: Mapping[str, Dataset] | None,
                 templates: dict[int, Template]) -> None:
        self.ds = ds
        self.root_tid = root_tid
        self.images = images
        self.templates = templates
        self.index: dict[Path, Dataset] = {}
        self.parent_of: dict[int, Dataset] = {}
        self.concepts: set[tuple[str, str]] = set()
        # rows whose condition is a group (at least one of / XOR) checked per level
        self.grouped = {(tid, number) for tid, tpl in templates.items()
                        for g in tpl.groups for number in g.rows}  # type: ignore[attr-defined]
        self._index(ds, (1,))

    def _index(self, item: Dataset, path: Path) -> None:
        self.index[path] = item
        concept = _concept(item)
        if concept:
            self.concepts.add(concept)
        for i, child in enumerate(_children(item), start=1):
            self.parent_of[id(child)] = item
            self._index(child, (*path, i))

    # -- entry ------------------------------------------------------------------------

    def run(self) -> list[Finding]:
        tpl = self.templates[self.root_tid]
        root = tpl.rows[0]
        findings: list[Finding] = []
        vt = self.ds.get("ValueType")
        if vt != root.vt:
            findings.append(Finding("error", "1", tpl.tid, root.row,
                                    f"root value type is {vt}, TID {tpl.tid} requires "
                                    f"{root.vt}"))
        level = self._concept_level(root.concept, _concept(self.ds), {})
        if level == 0:
            findings.append(Finding("error", "1", tpl.tid, root.row,
                                    f"root concept name {_concept_text(self.ds)} is not "
                                    f"{_spec_text(root.concept)}"))
        for template_item in self.ds.get("ContentTemplateSequence", []) or []:
            identifier = str(template_item.get("TemplateIdentifier", ""))
            if identifier and identifier != str(tpl.tid):
                findings.append(Finding("warning", "1", tpl.tid, root.row,
                                        f"Content Template Sequence names TID {identifier}"))
        slot = _Slot(root, None, {}, (), 0, "value")
        findings += self._check_item(self.ds, (1,), slot)
        findings += self._references()
        return findings

    def _references(self) -> list[Finding]:
        findings = []
        for path, item in self.index.items():
            ref = _reference(item)
            if ref is not None and ref not in self.index:
                findings.append(Finding("error", _text(path), None, None,
                                        f"by-reference target {_text(ref)} does not exist"))
        return findings

    # -- expansion --------------------------------------------------------------------

    def _child_rows(self, tpl: Template, parent: Row | None) -> list[Row]:
        if parent is None:
            return [r for r in tpl.rows if r.nl == 0]
        rows = list(tpl.rows)
        start = rows.index(parent) + 1
        found = []
        for r in rows[start:]:
            if r.nl <= parent.nl:
                break
            if r.nl == parent.nl + 1:
                found.append(r)
        return found

    def _expand(self, tid: int, parent: Row | None, rel: str | None,
                bindings: dict[str, Spec | None], chain: tuple[Row, ...], level: _Level,
                root_mode: str = "value") -> None:
        """Add to ``level`` the rows one level below ``parent`` (the first-level rows of
        ``tid`` when None), INCLUDE rows replaced by the included template's first-level
        rows. ``root_mode`` says how the included template's root row may be encoded:
        by-value, by-reference (an R- INCLUDE row) or either (``allow_by_ref``)."""
        tpl = self.templates.get(tid)
        if tpl is None or len(chain) > 12:
            return
        for r in self._child_rows(tpl, parent):
            if r.vt == "INCLUDE":
                sub = {name: self._resolve(spec, bindings) for name, spec in r.params}
                level.includes.append(_Include(r, chain, bindings))
                if r.include is not None:
                    mode = "ref" if r.by_ref else "either" if r.allow_by_ref else "value"
                    self._expand(r.include, None, r.rel or rel, sub, (*chain, r), level,
                                 root_mode=mode)
                continue
            if r.by_ref:
                mode = "ref"
            elif parent is None and r is tpl.rows[0]:
                mode = root_mode
            else:
                mode = "value"
            level.slots.append(_Slot(r, r.rel or rel, bindings, chain, len(level.slots), mode))

    @staticmethod
    def _resolve(spec: Spec | None, bindings: Mapping[str, Spec | None]) -> Spec | None:
        if spec is not None and spec.kind == "PARAM":
            return bindings.get(spec.param or "")
        return spec

    # -- concept and value sets -------------------------------------------------------

    def _concept_level(self, spec: Spec | None, key: tuple[str, str] | None,
                       bindings: Mapping[str, Spec | None]) -> int:
        """3 exact code, 2 context group member, 1 acceptable loosely, 0 no match."""
        spec = self._resolve(spec, bindings)
        if spec is None or spec.kind == "ANY":
            return 1
        if key is None:
            return 0
        if spec.kind in ("EV", "CODES"):
            return 3 if key in {c.key for c in spec.codes} else 0
        if spec.kind == "DT":
            return 3 if key == spec.codes[0].key else 1
        group = members(spec.cid or 0)
        if group is None:
            return 1
        if key in group:
            return 2
        return 1 if spec.kind == "BCID" else 0

    def _in_value_set(self, spec: Spec | None, key: tuple[str, str] | None,
                      bindings: Mapping[str, Spec | None]) -> tuple[bool | None, str]:
        """(True/False, severity if False); None when the value set is open/unknown."""
        spec = self._resolve(spec, bindings)
        if spec is None or spec.kind == "ANY":
            return True, ""
        if spec.kind in ("EV", "CODES"):
            return key in {c.key for c in spec.codes}, "error"
        if spec.kind == "DT":
            wanted = spec.codes[0]
            if key == wanted.key:
                return True, ""
            if key and "n}" in wanted.value and key[0] == wanted.scheme:
                prefix = wanted.value.split(":")[0]
                return key[1].startswith(prefix + ":") and key[1].endswith("}"), "warning"
            return False, "warning"
        group = members(spec.cid or 0)
        if group is None:
            return None, ""
        return key in group, "error" if spec.kind == "DCID" else "warning"

    # -- one item ---------------------------------------------------------------------

    def _check_item(self, item: Dataset, path: Path, slot: _Slot) -> list[Finding]:
        row = slot.row
        where = _text(path)
        findings: list[Finding] = []

        def add(severity: str, message: str) -> None:
            findings.append(Finding(severity, where, row.tid, row.row, message))

        for root_tid, severity, message in row.in_root:
            if root_tid == self.root_tid:
                add(severity, message)
        ref = _reference(item)
        concept = _concept(item)
        target = self.index.get(ref) if ref else item
        if ref is None and row.concept is not None:
            spec = self._resolve(row.concept, slot.bindings)
            if spec is not None and spec.kind in ("BCID", "DT"):
                ok, severity = self._in_value_set(spec, concept, slot.bindings)
                if ok is False:
                    add(severity, f"concept name {_concept_text(item)} is not in {spec}")
        if target is None:
            return findings
        vt = target.get("ValueType")
        if ref is not None:
            if row.ref_under is not None and not self._under(ref, row.ref_under.key):
                add("error", f"by-reference target {_text(ref)} is not inside the "
                             f"{row.ref_under} container")
            return findings
        if vt == "CODE" and row.value is not None:
            key = _value_code(item)
            ok, severity = self._in_value_set(row.value, key, slot.bindings)
            spec = self._resolve(row.value, slot.bindings)
            if ok is False:
                add(severity, f"value {_value_text(item)} of {_concept_text(item)} is not in "
                              f"{spec}")
            elif ok is None:
                add("unchecked", f"value {_value_text(item)} accepted: {spec} is not in "
                                 "pydicom's CID dictionaries (open value set)")
        if vt == "NUM":
            findings += self._check_num(item, where, slot)
        if vt in ("SCOORD", "SCOORD3D") and row.graphic is not None:
            negate, types = row.graphic
            graphic = str(item.get("GraphicType", ""))
            if (graphic in types) == negate:
                allowed = ("not " if negate else "") + "{" + ", ".join(sorted(types)) + "}"
                add("error", f"graphic type {graphic} where GRAPHIC TYPE = {allowed}")
        tpl = self.templates.get(row.tid)
        if tpl is not None:
            level = _Level(owner=tpl)
            self._expand(row.tid, row, None, slot.bindings, (), level)
            findings += self._check_level(item, path, level)
        return findings

    def _under(self, ref: Path, container: tuple[str, str]) -> bool:
        return any(_concept(self.index[ref[:k]]) == container
                   for k in range(1, len(ref)) if ref[:k] in self.index)

    def _check_num(self, item: Dataset, where: str, slot: _Slot) -> list[Finding]:
        row = slot.row
        findings: list[Finding] = []
        measured = _first(item, "MeasuredValueSequence")
        if measured is None:
            return findings
        unit_item = _first(measured, "MeasurementUnitsCodeSequence")
        unit = _code(unit_item)
        if row.units:
            verdicts = [self._in_value_set(spec, unit, slot.bindings) for spec in row.units]
            if not any(ok is not False for ok, _ in verdicts):
                severity = "error" if any(s == "error" for _, s in verdicts) else "warning"
                wanted = " or ".join(_spec_text(self._resolve(s, slot.bindings))
                                     for s in row.units)
                shown = f"({unit[1]}, {unit[0]})" if unit else "(none)"
                findings.append(Finding(severity, where, row.tid, row.row,
                                        f"units {shown} of {_concept_text(item)} where UNITS "
                                        f"= {wanted}"))
        if row.value_range is not None:
            try:
                number = float(measured.NumericValue)
            except (AttributeError, TypeError, ValueError):
                number = None
            lo, hi = row.value_range
            if number is not None and not lo <= number <= hi:
                findings.append(Finding("error", where, row.tid, row.row,
                                        f"value {number:g} of {_concept_text(item)} outside "
                                        f"{lo:g} - {hi:g}"))
        return findings

    # -- one level --------------------------------------------------------------------

    def _match(self, item: Dataset, level: _Level,
               counts: dict[int, list[Dataset]]) -> tuple[int | None, list[str]]:
        ref = _reference(item)
        target = self.index.get(ref) if ref else item
        vt = target.get("ValueType") if target is not None else None
        concept = _concept(target) if target is not None else None
        rel = item.get("RelationshipType")

        def fits_rel(s: _Slot) -> bool:
            return s.rel is None or s.rel == rel

        def fits_ref(s: _Slot) -> bool:
            return s.ref_ok == "either" or (s.ref_ok == "ref") == (ref is not None)

        def fits_vt(s: _Slot) -> bool:
            return vt is None or s.row.vt == vt

        scored = [(s, self._concept_level(s.row.concept, concept, s.bindings))
                  for s in level.slots]
        fitting = [(s, lv) for s, lv in scored if lv and fits_rel(s) and fits_ref(s)
                   and fits_vt(s)]
        best = max((lv for _, lv in fitting), default=0)
        if best >= 2:
            return self._choose(item, [s for s, lv in fitting if lv == best], counts), []
        near = [s for s, lv in scored if lv >= 2]
        if near:
            s = near[0]
            notes = []
            if not fits_rel(s):
                notes.append(f"relationship {rel} where TID {s.row.tid} row {s.row.row} "
                             f"requires {s.rel}")
            if not fits_ref(s):
                notes.append("by-reference item where the row is by-value" if ref else
                             "by-value item where the row is by-reference")
            if not fits_vt(s):
                notes.append(f"value type {vt} where TID {s.row.tid} row {s.row.row} "
                             f"requires {s.row.vt}")
            return s.order, notes
        if fitting:
            return self._choose(item, [s for s, _ in fitting], counts), []
        for s, lv in scored:
            if lv and fits_rel(s) and fits_vt(s) and not fits_ref(s):
                return s.order, ["by-reference item where the row is by-value" if ref else
                                 f"by-value {vt} where TID {s.row.tid} row {s.row.row} is "
                                 f"R-{s.rel} (by-reference)"]
        if ref is not None and vt is not None:
            for s, lv in scored:
                if lv and fits_rel(s) and fits_ref(s):
                    return s.order, [f"by-reference target {_text(ref)} is {vt}; TID "
                                     f"{s.row.tid} row {s.row.row} requires {s.row.vt}"]
        return None, []

    def _choose(self, item: Dataset, candidates: list[_Slot],
                counts: dict[int, list[Dataset]]) -> int:
        if len(candidates) == 1:
            return candidates[0].order
        declared = _declared_template(item)
        named = [s for s in candidates if s.row.tid == declared and s.row.nl == 0]
        candidates = named or candidates
        if len(candidates) == 1:
            return candidates[0].order
        room = [s for s in candidates
                if (m := _effective_max(s)) is None or len(counts.get(s.order, [])) < m]
        candidates = room or candidates
        if len({s.row.key for s in candidates}) == 1:
            return candidates[0].order

        def score(s: _Slot) -> tuple[int, int, int, int]:
            found = self._check_item(item, (0,), s)
            return (sum(f.severity == "error" for f in found),
                    sum(f.severity == "warning" for f in found),
                    sum(f.severity in ("unchecked", "info") for f in found), s.order)

        return min(candidates, key=score).order

    def _check_level(self, parent: Dataset, parent_path: Path,
                     level: _Level) -> list[Finding]:
        findings: list[Finding] = []
        counts: dict[int, list[Dataset]] = {}
        last_order = -1
        owner = level.owner
        for i, child in enumerate(_children(parent), start=1):
            path = (*parent_path, i)
            order, notes = self._match(child, level, counts)
            if order is None:
                findings.append(self._unmatched(child, path, owner))
                continue
            slot = level.slots[order]
            for note in notes:
                findings.append(Finding("error", _text(path), slot.row.tid, slot.row.row, note))
            counts.setdefault(order, []).append(child)
            if owner.order_significant and not owner.extensible and order < last_order:
                findings.append(Finding("warning", _text(path), slot.row.tid, slot.row.row,
                                        f"{_concept_text(child)} is out of order (TID "
                                        f"{owner.tid} is order-significant)"))
            last_order = max(last_order, order)
            findings += self._check_item(child, path, slot)
        findings += self._requirements(parent, parent_path, level, counts)
        return findings

    def _unmatched(self, child: Dataset, path: Path, owner: Template) -> Finding:
        what = (f"{child.get('RelationshipType')} {child.get('ValueType')} "
                f"{_concept_text(child)}")
        if _reference(child) is not None:
            what = f"R-{child.get('RelationshipType')} to {_text(_reference(child) or ())}"
        if owner.partial:
            return Finding("unchecked", _text(path), owner.tid, None,
                           f"{what}: TID {owner.tid} is encoded partially")
        if owner.extensible:
            return Finding("info", _text(path), owner.tid, None,
                           f"{what} is not a row of TID {owner.tid} (extensible)")
        return Finding("error", _text(path), owner.tid, None,
                       f"{what} is not allowed here: no row of TID {owner.tid} "
                       f"(non-extensible) matches it")

    # -- requirements, conditions, groups ---------------------------------------------

    def _requirements(self, parent: Dataset, parent_path: Path, level: _Level,
                      counts: dict[int, list[Dataset]]) -> list[Finding]:
        findings: list[Finding] = []
        where = _text(parent_path)

        def matched(tid: int, number: str, chain: tuple[Row, ...]) -> list[Dataset]:
            found = [c for s in level.slots if s.row.key == (tid, number) and s.chain == chain
                     for c in counts.get(s.order, [])]
            for inc in level.includes:
                if inc.row.key == (tid, number) and inc.chain == chain:
                    found += [c for s in level.slots
                              if s.chain == (*chain, inc.row) and s.row.nl == 0
                              for c in counts.get(s.order, [])]
            return found

        def items(tid: int, number: str, chain: tuple[Row, ...]) -> int:
            return len(matched(tid, number, chain))

        def started(inc: Row, chain: tuple[Row, ...]) -> bool:
            prefix = (*chain, inc)
            return any(counts.get(s.order) for s in level.slots
                       if s.chain[:len(prefix)] == prefix)

        def evaluate(cond: object, tid: int, chain: tuple[Row, ...]) -> bool | None:
            return self._evaluate(cond, parent, lambda n: matched(tid, n, chain))

        def active(chain: tuple[Row, ...]) -> bool:
            for k, inc in enumerate(chain):
                before = chain[:k]
                if started(inc, before) or inc.req == "M":
                    continue
                if inc.req == "MC" and inc.when is not None and \
                        evaluate(inc.when, inc.tid, before) is True:
                    continue
                return False
            return True

        grouped = self.grouped
        reported: set[tuple[Row, ...]] = set()
        seen: set[tuple[tuple[int, str], tuple[Row, ...]]] = set()
        for slot in level.slots:
            r = slot.row
            if (r.key, slot.chain) in seen:
                continue
            seen.add((r.key, slot.chain))
            n = items(r.tid, r.row, slot.chain)
            lo, hi = r.vm
            top = _effective_max(slot)
            if top is not None and n > top:
                findings.append(Finding("error", where, r.tid, r.row,
                                        f"{n} items of {self._name(r)}; VM is {r.vm_text}"))
            if 0 < n < lo:
                findings.append(Finding("error", where, r.tid, r.row,
                                        f"{n} item(s) of {self._name(r)}; VM is {r.vm_text}"))
            if n and r.only_if is not None:
                verdict = evaluate(r.only_if, r.tid, slot.chain)
                if verdict is False:
                    findings.append(Finding("error", where, r.tid, r.row,
                                            f"{self._name(r)} is present but may only be: "
                                            f"{r.condition}"))
            if n or not active(slot.chain):
                continue
            if r.req == "M":
                findings.append(Finding("error", where, r.tid, r.row,
                                        f"missing mandatory {self._name(r)}"))
                reported.update(slot.chain[:k] for k in range(len(slot.chain) + 1))
            elif r.req == "MC":
                verdict = evaluate(r.when, r.tid, slot.chain) if r.when is not None else None
                if verdict is True:
                    findings.append(Finding("error", where, r.tid, r.row,
                                            f"missing {self._name(r)}, required: "
                                            f"{r.condition}"))
                    reported.update(slot.chain[:k] for k in range(len(slot.chain) + 1))
                elif verdict is None and r.key not in grouped:
                    findings.append(Finding("unchecked", where, r.tid, r.row,
                                            f"{self._name(r)} absent; condition not "
                                            f"evaluated: {r.condition}"))
            elif r.req == "UC" and r.when is not None and \
                    evaluate(r.when, r.tid, slot.chain) is True:
                findings.append(Finding("error", where, r.tid, r.row,
                                        f"missing {self._name(r)}, required: {r.condition}"))
        findings += self._include_rows(level, where, started, evaluate, active, reported,
                                       grouped)
        findings += self._groups(level, where, items, evaluate, active)
        return findings

    def _include_rows(self, level: _Level, where: str, started, evaluate, active, reported,
                      grouped) -> list[Finding]:
        findings: list[Finding] = []
        for inc in level.includes:
            r = inc.row
            name = f"INCLUDE TID {r.include}"
            if started(r, inc.chain):
                if r.only_if is not None and evaluate(r.only_if, r.tid, inc.chain) is False:
                    findings.append(Finding("error", where, r.tid, r.row,
                                            f"{name} is present but may only be: "
                                            f"{r.condition}"))
                continue
            if not active(inc.chain) or (*inc.chain, r) in reported:
                continue
            required = r.req == "M" or (r.req == "MC" and r.when is not None
                                        and evaluate(r.when, r.tid, inc.chain) is True)
            prefix = (*inc.chain, r)
            conditional = any(s.row.req == "MC" for s in level.slots
                              if s.chain[:len(prefix)] == prefix)
            if required and conditional:
                findings.append(Finding("unchecked", where, r.tid, r.row,
                                        f"{name} required but none of its content is present "
                                        "(its rows are all conditional)"))
            elif r.req == "MC" and r.when is None and r.key not in grouped:
                findings.append(Finding("unchecked", where, r.tid, r.row,
                                        f"{name} absent; condition not evaluated: "
                                        f"{r.condition}"))
        return findings

    def _groups(self, level: _Level, where: str, items, evaluate, active) -> list[Finding]:
        findings: list[Finding] = []
        instances: dict[tuple[int, tuple[Row, ...]], set[str]] = {}
        for slot in level.slots:
            instances.setdefault((slot.row.tid, slot.chain), set()).add(slot.row.row)
        for inc in level.includes:
            instances.setdefault((inc.row.tid, inc.chain), set()).add(inc.row.row)
        for (tid, chain), rows in instances.items():
            tpl = self.templates.get(tid)
            if tpl is None or not active(chain):
                continue
            for group in tpl.groups:
                if not set(group.rows) <= rows:  # type: ignore[attr-defined]
                    continue
                counts = {n: items(tid, n, chain) for n in group.rows}  # type: ignore
                first = group.rows[0]  # type: ignore[attr-defined]
                if isinstance(group, AtLeast):
                    if sum(counts.values()) < group.n:
                        findings.append(Finding("error", where, tid, first,
                                                f"{group.text or 'group'} (rows "
                                                f"{', '.join(group.rows)})"))
                elif isinstance(group, Xor):
                    present = [n for n, c in counts.items() if c]
                    if len(present) > 1:
                        findings.append(Finding("error", where, tid, present[1],
                                                f"rows {', '.join(present)} are exclusive: "
                                                f"{group.text}"))
                    elif not present and group.mandatory:
                        verdict = True if group.when is None else evaluate(group.when, tid,
                                                                           chain)
                        if verdict is True:
                            findings.append(Finding("error", where, tid, first,
                                                    f"none of rows {', '.join(group.rows)}: "
                                                    f"{group.text}"))
                        elif verdict is None:
                            findings.append(Finding("unchecked", where, tid, first,
                                                    f"condition not evaluated: {group.text}"))
        return findings

    def _evaluate(self, cond: object, parent: Dataset, matched) -> bool | None:
        """True/False, or None when the condition cannot be decided from the tree.

        ``matched(row)`` gives the sibling items matched to a row of the same template
        instance at this level."""
        if isinstance(cond, ParentValueIn):
            if parent.get("ValueType") != "CODE":
                return None
            inside = _value_code(parent) in cond.codes
            return not inside if cond.negate else inside
        if isinstance(cond, RowPresent):
            return any(matched(n) for n in cond.rows)
        if isinstance(cond, RowsAbsent):
            return not any(matched(n) for n in cond.rows)
        if isinstance(cond, RowValueIn):
            present = matched(cond.row)
            if not present:
                return cond.absent
            return any(_value_code(c) in cond.codes for c in present)
        if isinstance(cond, SiblingConcept):
            present = any(_concept(c) in cond.codes for c in _children(parent))
            return not present if cond.negate else present
        if isinstance(cond, ImageHas):
            while parent is not None and parent.get("ValueType") != "IMAGE":
                parent = self.parent_of.get(id(parent))  # e.g. TID 4020 row 4: under row 3
            if self.images is None or parent is None:
                return None
            sop = _first(parent, "ReferencedSOPSequence")
            image = self.images.get(str(sop.ReferencedSOPInstanceUID)) if sop else None
            if image is None:
                return None
            return any(tag in image for tag in cond.tags)
        if isinstance(cond, DocumentHas):
            return bool(self.concepts & set(cond.codes))
        return None

    def _name(self, r: Row) -> str:
        concept = _spec_text(r.concept) if r.concept is not None else "(any concept)"
        return f"{r.rel_text} {r.vt} {concept}".strip()
