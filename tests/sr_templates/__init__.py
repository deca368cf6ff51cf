"""PS3.16 SR template checkers whose template tables are written as data.

    from tests.sr_templates import check, assert_conforms
    findings = check(ds, 4000, images={uid: header, ...})   # list[Finding]
    assert_conforms(ds, 1500)                                # raises on any error

The tables (one ``Row`` per PS3.16 row, with source URL and edition per template) are in
``cad`` (TID 4000-4023), ``measurement`` (TID 1400-1607) and ``common`` (TID 300-321,
1000-1015, 1204, 4019, 4108); ``describe(tid)`` prints one as a table.
"""

from __future__ import annotations

from .checker import (
    SEVERITIES,
    TEMPLATES,
    Finding,
    TemplateConformanceError,
    assert_conforms,
    check,
    errors,
)
from .model import Code, Row, Spec, Template
from .valuesets import members as cid_members


def describe(tid: int) -> str:
    """TID ``tid`` as a compact table: row, nesting, relationship, VT, concept, VM, req,
    value set / units, condition."""
    tpl = TEMPLATES[tid]
    kind = "Extensible" if tpl.extensible else "Non-Extensible"
    order = "Significant" if tpl.order_significant else "Non-Significant"
    lines = [f"TID {tpl.tid} {tpl.name} ({kind}, Order {order}; PS3.16 {tpl.edition}"
             + ("; PARTIAL" if tpl.partial else "") + f") {tpl.source_url}"]
    for r in tpl.rows:
        concept = (f"DTID {r.include}" if r.vt == "INCLUDE"
                   else str(r.concept) if r.concept is not None else "")
        constraint = []
        if r.value is not None:
            constraint.append(str(r.value))
        constraint += [f"UNITS = {u}" for u in r.units]
        constraint += [f"${name} = {spec}" for name, spec in r.params]
        if r.graphic is not None:
            negate, types = r.graphic
            constraint.append("GRAPHIC TYPE = " + ("not " if negate else "")
                              + "{" + ", ".join(sorted(types)) + "}")
        if r.value_range is not None:
            constraint.append(f"range {r.value_range[0]:g}-{r.value_range[1]:g}")
        if r.ref_under is not None:
            constraint.append(f"target in {r.ref_under}")
        text = " | ".join(constraint)
        cond = f" [{r.condition}]" if r.condition else ""
        lines.append(f"  {r.row:>3} {'>' * r.nl:<3} {r.rel_text:<18} {r.vt:<9} {concept} "
                     f"VM {r.vm_text} {r.req}" + (f"  {text}" if text else "") + cond)
    return "\n".join(lines)


__all__ = ["SEVERITIES", "TEMPLATES", "Code", "Finding", "Row", "Spec", "Template",
           "TemplateConformanceError", "assert_conforms", "check", "cid_members", "describe",
           "errors"]
