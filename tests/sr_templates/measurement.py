"""Comprehensive (3D) SR "Imaging Measurement Report": TID 1500 and what it includes.

Edition: PS3.16 2026a, transcribed from the DocBook tables (as machine-extracted into
raster-labs/DICOMKit, Sources/DICOMCore/StructuredReporting/SRMeasurementTemplates.swift).
The 2023+ rows matter here: "Finding category"/"Finding" (rows 3a/3b of TID 1410/1411/
1501), "Geometric purpose of region" (3c), Finding Site in TID 1419 (rows 2 and 9), the
"Qualitative Evaluations" container (TID 1500 row 12) and Algorithm Identification at
several levels (TID 1500 rows 6b/10b/12b, TID 1419 rows 4b/20, TID 1501 row 9b).
"""

from __future__ import annotations

from .model import (
    RowPresent,
    RowsAbsent,
    RowValueIn,
    Xor,
    dcm,
    row,
    template,
)

EDITION = "2026a"
NEMA = "https://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_TID_{}.html"
RRR3 = "https://dicom.nema.org/medical/dicom/current/output/chtml/part17/sect_RRR.3.html"
RWVM = ('SOP Class UID shall be Real World Value Mapping Storage '
        '("1.2.840.10008.5.1.4.1.1.67")')

_ROI_PARAMS = ("Measurement", "Units", "ModType", "ModValue", "Method", "Derivation",
               "TargetSite", "TargetSiteMod", "Equation", "RefAuthority", "RangeAuthority",
               "DerivationParameter", "DerivationParameterUnits")
_GROUP_PARAMS = (*_ROI_PARAMS, "QualType", "QualValue", "QualModType", "QualModValue",
                 "FindingCategory", "FindingType", "TrackingID", "TrackingUID")


def _pass(*names: str) -> str:
    return "\n".join(f"${n} = ${n}" for n in names)


def _path_rows(first_concept: str, first_vsc: str, *, second: tuple, third: tuple,
               method_cid: str, area: bool) -> list:
    """TID 1400/1401/1402 share a shape: NUM, its path or region, method, tracking."""
    rows = [row("1", "", "NUM", first_concept, "1", "M", vsc=first_vsc)]
    rows += [
        row("2", "> INFERRED FROM", "SCOORD", second[0], second[1], second[2], cond=second[3],
            vsc=second[4]),
        row("3", ">> R-SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 4"),
        row("4", ">> SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 3"),
        row("5", "> INFERRED FROM", third[0], third[1], third[2], third[3], cond=third[4],
            vsc=third[5]),
    ]
    if area:
        rows.append(row("6", "> R-INFERRED FROM", "IMAGE", "", "1", third[3],
                        cond=third[6], vsc=third[5]))
        rows.append(row("7", "> HAS PROPERTIES", "CODE",
                        'EV (370129005, SCT, "Measurement Method")', "1", "U", vsc=method_cid))
    else:
        rows.append(row("6", ">> R-SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 7"))
        rows.append(row("7", ">> SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 6"))
    rows.append(row("8", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 4108 "Tracking Identifier"',
                    "1", "U"))
    return rows


TID_1400 = template(
    1400, "Linear Measurement", extensible=True, significant=True,
    source_url=NEMA.format(1400), edition=EDITION,
    groups=(Xor(("2", "5"), mandatory=False, text="Row 2 XOR Row 5"),
            Xor(("3", "4"), text="Row 3 XOR Row 4"), Xor(("6", "7"), text="Row 6 XOR Row 7")),
    rows=_path_rows('DCID 7470 "Linear Measurement"',
                    'UNITS = DCID 7460 "Linear Measurement Unit"',
                    second=('EV (121055, DCM, "Path")', "1", "UC", "XOR Row 5",
                            "GRAPHIC TYPE = {POLYLINE, CIRCLE, ELLIPSE}"),
                    third=("SCOORD", 'EV (121230, DCM, "Path Vertex")', "2-n", "UC",
                           "XOR Row 2", "GRAPHIC TYPE = {POINT}"),
                    method_cid="", area=False))

_SEG_FRAME = ("Reference shall be to a Segmentation Image, with a single value specified in "
              "Referenced Frame Number")
TID_1401 = template(
    1401, "Area Measurement", extensible=True, significant=True,
    source_url=NEMA.format(1401), edition=EDITION,
    groups=(Xor(("3", "4"), text="Row 3 XOR Row 4"),),
    notes=('Rows 2, 5, 6: "IF concept name of Row 1 = (131184002, SCT, "Area of defined '
           'region"), and IFF the other two are not present" - not evaluated (reported '
           "'unchecked' when absent)."),
    rows=_path_rows('DCID 7471 "Area Measurement"',
                    'Value shall be > 0\nUNITS = DCID 7461 "Area Measurement Unit"',
                    second=('EV (121056, DCM, "Area Outline")', "1", "MC",
                            'IF concept name of Row 1 = (131184002, SCT, "Area of defined '
                            'region"), and IFF Row 5 or 6 not present.',
                            "GRAPHIC TYPE = not {MULTIPOINT}"),
                    third=("IMAGE", 'EV (121214, DCM, "Referenced Segmentation Frame")', "1",
                           "MC", 'IF concept name of Row 1 = (131184002, SCT, "Area of defined '
                                 'region"), and IFF Row 2 or 6 not present.', _SEG_FRAME,
                           'IF concept name of Row 1 = (131184002, SCT, "Area of defined '
                           'region"), and IFF Row 2 or 5 not present.'),
                    method_cid='DCID 7473 "General Area Calculation Method"', area=True))

_SEGMENT = ("Reference shall be to a Segmentation Image, with a value specified in Referenced "
            "Segment Number")
TID_1402 = template(
    1402, "Volume Measurement", extensible=True, significant=True,
    source_url=NEMA.format(1402), edition=EDITION,
    groups=(Xor(("2", "5", "6"), mandatory=False, text="XOR Rows 2, 5, 6"),
            Xor(("3", "4"), text="Row 3 XOR Row 4")),
    rows=_path_rows('DCID 7472 "Volume Measurement"',
                    'Value shall be > 0\nUNITS = DCID 7462 "Volume Measurement Unit"',
                    second=('EV (121057, DCM, "Perimeter Outline")', "1-n", "UC",
                            "XOR Rows 5, 6", "GRAPHIC TYPE = not {MULTIPOINT}"),
                    third=("IMAGE", 'EV (121191, DCM, "Referenced Segment")', "1", "UC",
                           "XOR Rows 2, 6", _SEGMENT, "XOR Rows 2, 5"),
                    method_cid='DCID 7474 "General Volume Calculation Method"', area=True))


def _roi_header() -> list:
    """Rows 1-4 of TID 1410/1411/1501: the group, its session, tracking and finding."""
    return [
        row("1", "", "CONTAINER", 'EV (125007, DCM, "Measurement Group")', "1", "M"),
        row("1b", "> HAS OBS CONTEXT", "TEXT", 'EV (C67447, NCIt, "Activity Session")', "1",
            "U"),
        row("2", "> HAS OBS CONTEXT", "TEXT", 'DT (112039, DCM, "Tracking Identifier")', "1",
            "U", vsc="$TrackingID"),
        row("3", "> HAS OBS CONTEXT", "UIDREF", 'EV (112040, DCM, "Tracking Unique Identifier")',
            "1", "U", vsc="$TrackingUID"),
        row("3a", "> CONTAINS", "CODE", 'EV (276214006, SCT, "Finding category")', "1", "U",
            vsc="$FindingCategory"),
        row("3b", "> CONTAINS", "CODE", 'EV (121071, DCM, "Finding")', "1", "U",
            vsc="$FindingType"),
    ]


def _roi_tail(n: dict[str, str], illustration_vm: str) -> list:
    """The RWVM, the TID 1419 INCLUDE and the qualitative evaluation rows."""
    return [
        row(n["illustration"], "> CONTAINS", "IMAGE", 'EV (121200, DCM, "Illustration of ROI")',
            illustration_vm, "U"),
        row(n["visual"], "> CONTAINS", "IMAGE", 'EV (130401, DCM, "Visual explanation")',
            "1-n", "U"),
        row(n["rwvm"], "> CONTAINS", "COMPOSITE",
            'EV (126100, DCM, "Real World Value Map used for measurement")', "1", "U",
            vsc=RWVM),
        row(n["roi"], "> CONTAINS", "INCLUDE", 'DTID 1419 "ROI Measurements"', "1", "U",
            vsc=_pass(*_ROI_PARAMS)),
        row(n["qual"], "> CONTAINS", "CODE", "$QualType", "1-n", "U", vsc="$QualValue"),
        row(n["qual"] + "b", ">> HAS CONCEPT MOD", "CODE", "$QualModType", "1-n", "U",
            vsc="$QualModValue"),
        row(n["text"], "> CONTAINS", "TEXT", "$QualType", "1-n", "U"),
    ]


_GEOMETRIC_PURPOSE = row("3c", "> CONTAINS", "CODE",
                         'EV (130400, DCM, "Geometric purpose of region")', "1", "U",
                         vsc='BCID 219 "Geometry Graphical Representation"')
_TIME_POINT = row("4", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 1502 "Time Point Context"', "1",
                  "U")
_STRUCTURE_SET = "Reference shall be to an Instance of the RT Structure Set Storage SOP Class."
_ROI_NUMBER = ("Shall be the value of ROI Number (3006,0022) within the single referenced Item "
               "of Structure Set ROI Sequence (3006,0020) of the referenced Instance of the RT "
               "Structure Set Storage SOP Class.")

TID_1410 = template(
    1410, "Planar ROI Measurements and Qualitative Evaluations", extensible=True,
    significant=False, source_url=NEMA.format(1410), edition=EDITION, params=_GROUP_PARAMS,
    groups=(Xor(("5", "7", "7b", "8b"), text="Exactly one of Rows 5, 7, 7b, 8b"),),
    rows=[
        *_roi_header(), _GEOMETRIC_PURPOSE, _TIME_POINT,
        row("5", "> CONTAINS", "SCOORD", 'EV (111030, DCM, "Image Region")', "1", "MC",
            cond="XOR Rows 7, 7b, 8b", vsc="GRAPHIC TYPE = not {MULTIPOINT}"),
        row("6", ">> SELECTED FROM", "IMAGE", "", "1", "M"),
        row("7", "> CONTAINS", "IMAGE", 'EV (121214, DCM, "Referenced Segmentation Frame")',
            "1", "MC", cond="XOR Rows 5, 7b, 8b",
            vsc="Reference shall be to a Segmentation Image, with a single value specified in "
                "Referenced Segment Number (0062,000B) (and Referenced Frame Number rules for "
                "tiled and non-tiled Segmentation Images)."),
        row("7b", "> CONTAINS", "SCOORD3D", 'EV (111030, DCM, "Image Region")', "1", "MC",
            cond="XOR Rows 5, 7, 8b",
            vsc="GRAPHIC TYPE = not {MULTIPOINT, POLYLINE or ELLIPSOID}"),
        row("8", "> CONTAINS", "IMAGE", 'EV (121233, DCM, "Source image for segmentation")',
            "1", "MC", cond="IFF Row 7", when=RowPresent(("7",)),
            only_if=RowPresent(("7",))),
        row("8b", "> CONTAINS", "COMPOSITE", 'EV (130488, DCM, "Region in Space")', "1", "MC",
            cond="XOR Rows 5, 7, 7b", vsc=_STRUCTURE_SET),
        row("8c", ">> HAS PROPERTIES", "TEXT",
            'EV (130489, DCM, "Referenced Region of Interest Identifier")', "1", "M",
            vsc=_ROI_NUMBER),
        *_roi_tail({"illustration": "9", "visual": "9b", "rwvm": "10", "roi": "11",
                    "qual": "12", "text": "13"}, "1"),
    ])

TID_1411 = template(
    1411, "Volumetric ROI Measurements and Qualitative Evaluations", extensible=True,
    significant=False, source_url=NEMA.format(1411), edition=EDITION, params=_GROUP_PARAMS,
    groups=(Xor(("5", "7", "10", "12b"), text="Exactly one of Rows 5, 7, 10, 12b"),
            Xor(("11", "12"), mandatory=False, text="Row 11 XOR Row 12")),
    notes=("Encoded for completeness (the brief does not need volumetric groups); rows 11/12 "
           '"XOR ... and IFF (Row 7 or Row 10)" are checked only for the XOR part.'),
    rows=[
        *_roi_header(), _GEOMETRIC_PURPOSE, _TIME_POINT,
        row("5", "> CONTAINS", "SCOORD", 'EV (111030, DCM, "Image Region")', "1-n", "MC",
            cond="XOR Rows 7, 10, 12b", vsc="GRAPHIC TYPE = not {MULTIPOINT}"),
        row("6", ">> SELECTED FROM", "IMAGE", "", "1", "M"),
        row("7", "> CONTAINS", "IMAGE", 'EV (121191, DCM, "Referenced Segment")', "1", "MC",
            cond="XOR Rows 5, 10, 12b",
            vsc="Reference shall be to a Segmentation Image or Surface Segmentation object, "
                "with a single value specified in Referenced Segment Number"),
        row("10", "> CONTAINS", "SCOORD3D", 'EV (121231, DCM, "Volume Surface")', "1-n", "MC",
            cond="XOR Rows 5, 7, 12b",
            vsc="If one item, GRAPHIC TYPE = {ELLIPSOID or POINT}\n"
                "If more than one item, GRAPHIC TYPE = {POLYGON or ELLIPSE}"),
        row("11", "> CONTAINS", "IMAGE", 'EV (121233, DCM, "Source image for segmentation")',
            "1-n", "MC", cond="XOR Row 12 and IFF (Row 7 or Row 10)"),
        row("12", "> CONTAINS", "UIDREF", 'EV (121232, DCM, "Source series for segmentation")',
            "1", "MC", cond="XOR Row 11 and IFF (Row 7 or Row 10)"),
        row("12b", "> CONTAINS", "COMPOSITE", 'EV (130488, DCM, "Region in Space")', "1", "MC",
            cond="XOR Rows 5, 7, 10", vsc=_STRUCTURE_SET),
        row("12c", ">> HAS PROPERTIES", "TEXT",
            'EV (130489, DCM, "Referenced Region of Interest Identifier")', "1", "M",
            vsc=_ROI_NUMBER),
        *_roi_tail({"illustration": "13", "visual": "13b", "rwvm": "14", "roi": "15",
                    "qual": "16", "text": "17"}, "1-n"),
    ])

TID_1419 = template(
    1419, "ROI Measurements", extensible=True, significant=False,
    source_url=NEMA.format(1419), edition=EDITION, params=_ROI_PARAMS,
    cross_checked=(RRR3,),
    groups=(Xor(("13", "14"), mandatory=False, text="Row 13 XOR Row 14"),
            Xor(("15", "16"), mandatory=False, text="Row 15 XOR Row 16")),
    notes=("Rows 1, 2 and 4b carry their own HAS CONCEPT MOD; row 5 (the NUM) takes the "
           "relationship of the including row (CONTAINS in TID 1410/1411)."),
    rows=[
        row("1", "HAS CONCEPT MOD", "CODE", 'EV (370129005, SCT, "Measurement Method")', "1",
            "U", vsc="$Method"),
        row("2", "HAS CONCEPT MOD", "CODE", 'EV (363698007, SCT, "Finding Site")', "1-n", "U",
            vsc="$TargetSite"),
        row("3", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 244 "Laterality"'),
        row("4", "> HAS CONCEPT MOD", "CODE", 'DT (106233006, SCT, "Topographical modifier")',
            "1", "U", vsc="$TargetSiteMod"),
        row("4b", "HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
        row("5", "", "NUM", "$Measurement", "1-n", "M", vsc="UNITS = $Units"),
        row("6", "> HAS CONCEPT MOD", "CODE", "$ModType", "1-n", "U", vsc="$ModValue"),
        row("7", "> HAS CONCEPT MOD", "CODE", 'EV (370129005, SCT, "Measurement Method")', "1",
            "U", vsc="$Method"),
        row("8", "> HAS CONCEPT MOD", "CODE", 'EV (121401, DCM, "Derivation")', "1", "U",
            vsc="$Derivation"),
        row("9", "> HAS CONCEPT MOD", "CODE", 'EV (363698007, SCT, "Finding Site")', "1-n", "U",
            vsc="$TargetSite"),
        row("10", ">> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 244 "Laterality"'),
        row("11", ">> HAS CONCEPT MOD", "CODE", 'DT (106233006, SCT, "Topographical modifier")',
            "1", "U", vsc="$TargetSiteMod"),
        row("12", "> HAS PROPERTIES", "INCLUDE", 'DTID 310 "Measurement Properties"', "1", "U",
            vsc=_pass("RefAuthority", "RangeAuthority")),
        row("13", "> INFERRED FROM", "NUM", "$DerivationParameter", "1-n", "UC",
            cond="XOR Row 14", vsc="$DerivationParameterUnits"),
        row("14", "> R-INFERRED FROM", "NUM", "$DerivationParameter", "1-n", "UC",
            cond="XOR Row 13", vsc="$DerivationParameterUnits"),
        row("14b", "> INFERRED FROM", "CODE", "$DerivationParameter", "1-n", "U"),
        row("14c", "> INFERRED FROM", "TEXT", "$DerivationParameter", "1-n", "U"),
        row("15", "> INFERRED FROM", "INCLUDE", 'DTID 315 "Equation or Table"', "1", "UC",
            cond="XOR Row 16", vsc=_pass("Equation")),
        row("16", "> INFERRED FROM", "TEXT", 'DCID 228 "Equation or Table"', "1", "UC",
            cond="XOR Row 15"),
        row("17", ">", "INCLUDE", 'DTID 1000 "Quotation"', "1", "U"),
        row("18", "> HAS CONCEPT MOD", "TEXT",
            'EV (121050, DCM, "Equivalent Meaning of Concept Name")', "1", "U"),
        row("19", "> CONTAINS", "COMPOSITE",
            'EV (126100, DCM, "Real World Value Map used for measurement")', "1", "U",
            vsc=RWVM),
        row("20", "> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
    ])

_MULTI = _pass("Measurement") + "\n$Units = $MeasurementUnits\n" + _pass(*_ROI_PARAMS[2:])
TID_1420 = template(
    1420, "Measurements Derived From Multiple ROI Measurements", extensible=True,
    significant=False, source_url=NEMA.format(1420), edition=EDITION,
    groups=(Xor(("2", "3"), text="Row 2 XOR Row 3"),),
    rows=[
        row("1", "", "NUM", 'DCID 7465 "Measurement Derived From Multiple ROI Measurements"',
            "1-n", "M"),
        row("1b", "> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
        row("2", "> R-INFERRED FROM", "INCLUDE",
            'DTID 1410 "Planar ROI Measurements and Qualitative Evaluations"', "1-n", "MC",
            cond="XOR Row 3", vsc=_MULTI, allow_by_ref=True),
        row("3", "> R-INFERRED FROM", "INCLUDE",
            'DTID 1411 "Volumetric ROI Measurements and Qualitative Evaluations"', "1-n", "MC",
            cond="XOR Row 2", vsc=_MULTI, allow_by_ref=True),
        row("4", "> HAS PROPERTIES", "INCLUDE", 'DTID 310 "Measurement Properties"', "1", "U",
            vsc=_pass("RefAuthority", "RangeAuthority")),
    ])

_QUALITATIVE_PARAMS = ('$Measurement = BCID 218 "Quantitative Image Feature"\n'
                       '$Units = BCID 7181 "Abstract Multi-dimensional Image Model Component '
                       'Unit"\n'
                       '$Derivation = BCID 7464 "General Region of Interest Measurement '
                       'Modifier"\n'
                       '$Method = BCID 6147 "Response Criteria"\n'
                       '$QualModType = BCID 210 "Qualitative Evaluation Modifier Type"\n'
                       '$QualModValue = BCID 211 "Qualitative Evaluation Modifier Value"')

TID_1500 = template(
    1500, "Measurement Report", extensible=True, significant=False, root=True,
    source_url=NEMA.format(1500), edition=EDITION,
    notes="Rows 6, 10 and 12 are each required when the other two are absent.",
    rows=[
        row("1", "", "CONTAINER", 'DCID 7021 "Measurement Report Document Title"', "1", "M",
            vsc="Root node"),
        row("2", "> HAS CONCEPT MOD", "INCLUDE",
            'DTID 1204 "Language of Content Item and Descendants"', "1", "U"),
        row("3", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 1001 "Observation Context"', "1", "M"),
        row("4", "> HAS CONCEPT MOD", "CODE", 'EV (121058, DCM, "Procedure reported")', "1-n",
            "U", vsc='BCID 100 "Quantitative Diagnostic Imaging Procedure"'),
        row("5", "> CONTAINS", "INCLUDE", 'DTID 1600 "Image Library"', "1", "U"),
        row("6", "> CONTAINS", "CONTAINER", 'EV (126010, DCM, "Imaging Measurements")', "1",
            "MC", cond="IF Row 10 and Row 12 are absent", when=RowsAbsent(("10", "12"))),
        row("6b", ">> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
        row("7", ">> CONTAINS", "INCLUDE",
            'DTID 1410 "Planar ROI Measurements and Qualitative Evaluations"', "1-n", "U",
            vsc=_QUALITATIVE_PARAMS),
        row("8", ">> CONTAINS", "INCLUDE",
            'DTID 1411 "Volumetric ROI Measurements and Qualitative Evaluations"', "1-n", "U",
            vsc=_QUALITATIVE_PARAMS),
        row("9", ">> CONTAINS", "INCLUDE",
            'DTID 1501 "Measurement and Qualitative Evaluation Group"', "1-n", "U",
            vsc=_QUALITATIVE_PARAMS.replace(
                "\n$Units", '\n$ImagePurpose = BCID 7551 "Generic Purpose of Reference to '
                            'Images and Coordinates in Measurement"\n$Units')),
        row("10", "> CONTAINS", "CONTAINER", 'EV (126011, DCM, "Derived Imaging Measurements")',
            "1", "MC", cond="IF Row 6 and Row 12 are absent", when=RowsAbsent(("6", "12"))),
        row("10b", ">> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"',
            "1", "U"),
        row("11", ">> CONTAINS", "INCLUDE",
            'DTID 1420 "Measurements Derived From Multiple ROI Measurements"', "1-n", "U"),
        row("12", "> CONTAINS", "CONTAINER", 'EV (C0034375, UMLS, "Qualitative Evaluations")',
            "1", "MC", cond="IF Row 6 and Row 10 are absent", when=RowsAbsent(("6", "10"))),
        row("12b", ">> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"',
            "1", "U"),
        row("13", ">> CONTAINS", "CODE", "", "1-n", "U"),
        row("13b", ">>> HAS CONCEPT MOD", "CODE",
            'BCID 210 "Qualitative Evaluation Modifier Type"', "1-n", "U",
            vsc='BCID 211 "Qualitative Evaluation Modifier Value"'),
        row("14", ">> CONTAINS", "TEXT", "", "1-n", "U"),
    ])

TID_1501 = template(
    1501, "Measurement and Qualitative Evaluation Group", extensible=True, significant=False,
    source_url=NEMA.format(1501), edition=EDITION,
    params=(*_GROUP_PARAMS, "ImagePurpose", "WavePurpose"),
    rows=[
        *_roi_header(), _TIME_POINT,
        row("5", "> HAS CONCEPT MOD", "CODE", 'EV (370129005, SCT, "Measurement Method")', "1",
            "U", vsc="$Method"),
        row("6", "> HAS CONCEPT MOD", "CODE", 'EV (363698007, SCT, "Finding Site")', "1-n", "U",
            vsc="$TargetSite"),
        row("7", ">> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 244 "Laterality"'),
        row("8", ">> HAS CONCEPT MOD", "CODE", 'DT (106233006, SCT, "Topographical modifier")',
            "1", "U", vsc="$TargetSiteMod"),
        row("9", "> CONTAINS", "COMPOSITE",
            'EV (126100, DCM, "Real World Value Map used for measurement")', "1", "U",
            vsc=RWVM),
        row("9b", "> HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
        row("9c", "> CONTAINS", "IMAGE", 'EV (121200, DCM, "Illustration of ROI")', "1", "U"),
        row("9d", "> CONTAINS", "IMAGE", 'EV (130401, DCM, "Visual explanation")', "1-n", "U"),
        row("10", "> CONTAINS", "INCLUDE", 'DTID 300 "Measurement"', "1-n", "U",
            vsc=_pass("Measurement", "Units", "ModType", "ModValue", "Method", "Derivation",
                      "TargetSite", "TargetSiteMod", "Equation", "ImagePurpose",
                      "WavePurpose", "RefAuthority", "RangeAuthority", "DerivationParameter",
                      "DerivationParameterUnits")),
        row("10b", "> CONTAINS", "IMAGE", "$ImagePurpose", "1-n", "U"),
        row("10c", "> CONTAINS", "SCOORD", "$ImagePurpose", "1-n", "U"),
        row("10d", ">> SELECTED FROM", "IMAGE", "", "1", "M"),
        row("10e", "> CONTAINS", "SCOORD3D", "$ImagePurpose", "1-n", "U"),
        row("10f", "> CONTAINS", "WAVEFORM", "$WavePurpose", "1-n", "U"),
        row("10g", "> CONTAINS", "TCOORD", "$WavePurpose", "1-n", "U"),
        row("10h", ">> SELECTED FROM", "WAVEFORM", "", "1", "M"),
        row("11", "> CONTAINS", "CODE", "$QualType", "1-n", "U", vsc="$QualValue"),
        row("11b", ">> HAS CONCEPT MOD", "CODE", "$QualModType", "1-n", "U",
            vsc="$QualModValue"),
        row("12", "> CONTAINS", "TEXT", "$QualType", "1-n", "U"),
    ])

TID_1502 = template(
    1502, "Time Point Context", extensible=True, significant=False,
    source_url=NEMA.format(1502), edition=EDITION,
    rows=[
        row("1", "HAS OBS CONTEXT", "TEXT", 'EV (126070, DCM, "Subject Time Point Identifier")',
            "1", "U"),
        row("2", "HAS OBS CONTEXT", "TEXT",
            'EV (126071, DCM, "Protocol Time Point Identifier")', "1", "U"),
        row("3", "HAS OBS CONTEXT", "TEXT", 'EV (C2348792, UMLS, "Time Point")', "1", "M"),
        row("4", "HAS OBS CONTEXT", "CODE", 'EV (126072, DCM, "Time Point Type")', "1-n", "U",
            vsc='BCID 6146 "Time Point Type"'),
        row("5", "HAS OBS CONTEXT", "NUM", 'EV (126073, DCM, "Time Point Order")', "1", "U",
            vsc='UNITS = EV (1, UCUM, "no units")'),
        row("6", "HAS OBS CONTEXT", "NUM",
            'EV (128740, DCM, "Longitudinal Temporal Offset from Event")', "1", "U",
            vsc='UNITS = DT (d, UCUM, "days")'),
        row("7", "> HAS CONCEPT MOD", "CODE",
            'EV (128741, DCM, "Longitudinal Temporal Event Type")', "1", "M",
            vsc='DCID 280 "Longitudinal Temporal Event Type"'),
    ])

TID_1600 = template(
    1600, "Image Library", extensible=True, significant=False,
    source_url=NEMA.format(1600), edition=EDITION,
    rows=[
        row("1", "", "CONTAINER", 'EV (111028, DCM, "Image Library")', "1", "M"),
        row("2", "> CONTAINS", "CONTAINER", 'EV (126200, DCM, "Image Library Group")', "1-n",
            "U"),
        row("3", ">> HAS ACQ CONTEXT", "INCLUDE", 'DTID 1602 "Image Library Entry Descriptors"',
            "1", "U"),
        row("4", ">> CONTAINS", "INCLUDE", 'DTID 1601 "Image Library Entry"', "1-n", "U"),
    ])

TID_1601 = template(
    1601, "Image Library Entry", extensible=True, significant=False,
    source_url=NEMA.format(1601), edition=EDITION,
    rows=[
        row("1", "", "IMAGE", "", "1", "M"),
        row("2", "> HAS ACQ CONTEXT", "INCLUDE", 'DTID 1602 "Image Library Entry Descriptors"',
            "1", "U"),
    ])


def _modality(*values: str) -> RowValueIn:
    return RowValueIn("1", dcm(*values))


_PROJECTION = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")
TID_1602 = template(
    1602, "Image Library Entry Descriptors", extensible=True, significant=False,
    source_url=NEMA.format(1602), edition=EDITION,
    rows=[
        row("1", "HAS ACQ CONTEXT", "CODE", 'EV (121139, DCM, "Modality")', "1", "U",
            vsc='DCID 29 "Acquisition Modality"'),
        row("2", "HAS ACQ CONTEXT", "CODE", 'EV (123014, DCM, "Target Region")', "1", "U",
            vsc='DCID 4031 "Common Anatomic Region"'),
        row("3", "HAS ACQ CONTEXT", "CODE", 'EV (111027, DCM, "Image Laterality")', "1", "U",
            vsc='DCID 244 "Laterality"'),
        row("4", "HAS ACQ CONTEXT", "DATE", 'EV (111060, DCM, "Study Date")', "1", "U"),
        row("5", "HAS ACQ CONTEXT", "TIME", 'EV (111061, DCM, "Study Time")', "1", "U"),
        row("6", "HAS ACQ CONTEXT", "DATE", 'EV (111018, DCM, "Content Date")', "1", "U"),
        row("7", "HAS ACQ CONTEXT", "TIME", 'EV (111019, DCM, "Content Time")', "1", "U"),
        row("8", "HAS ACQ CONTEXT", "DATE", 'EV (126201, DCM, "Acquisition Date")', "1", "U"),
        row("9", "HAS ACQ CONTEXT", "TIME", 'EV (126202, DCM, "Acquisition Time")', "1", "U"),
        row("10", "HAS ACQ CONTEXT", "UIDREF", 'EV (112227, DCM, "Frame of Reference UID")',
            "1", "U"),
        row("11", "HAS ACQ CONTEXT", "NUM", 'EV (110910, DCM, "Pixel Data Rows")', "1", "U",
            vsc='UNITS = EV ({pixels}, UCUM, "pixels")'),
        row("12", "HAS ACQ CONTEXT", "NUM", 'EV (110911, DCM, "Pixel Data Columns")', "1", "U",
            vsc='UNITS = EV ({pixels}, UCUM, "pixels")'),
        row("13", "HAS ACQ CONTEXT", "INCLUDE",
            'DTID 1603 "Image Library Entry Descriptors for Projection Radiography"', "1", "MC",
            cond='IFF Row 1 is present with a value of "CR", "DX", "IO", "MG", "PX", "RF", '
                 '"RG" or "XA"',
            when=_modality(*_PROJECTION), only_if=_modality(*_PROJECTION)),
        row("14", "HAS ACQ CONTEXT", "INCLUDE",
            'DTID 1604 "Image Library Entry Descriptors for Cross-Sectional Modalities"', "1",
            "MC", cond='IFF Row 1 is present with a value of "CT", "MR" or "PT"',
            when=_modality("CT", "MR", "PT"), only_if=_modality("CT", "MR", "PT")),
        row("15", "HAS ACQ CONTEXT", "INCLUDE",
            'DTID 1605 "Image Library Entry Descriptors for CT"', "1", "MC",
            cond='IFF Row 1 is present with a value of "CT"', when=_modality("CT"),
            only_if=_modality("CT")),
        row("16", "HAS ACQ CONTEXT", "INCLUDE",
            'DTID 1606 "Image Library Entry Descriptors for MR"', "1", "MC",
            cond='IFF Row 1 is present with a value of "MR"', when=_modality("MR"),
            only_if=_modality("MR")),
        row("17", "HAS ACQ CONTEXT", "INCLUDE",
            'DTID 1607 "Image Library Entry Descriptors for PET"', "1", "MC",
            cond='IFF Row 1 is present with a value of "PT"', when=_modality("PT"),
            only_if=_modality("PT")),
    ])

TID_1603 = template(
    1603, "Image Library Entry Descriptors for Projection Radiography", extensible=True,
    significant=False, source_url=NEMA.format(1603), edition=EDITION,
    rows=[
        row("1", "HAS ACQ CONTEXT", "CODE", 'EV (111031, DCM, "Image View")', "1", "U"),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (111032, DCM, "Image View Modifier")', "1-n",
            "U"),
        row("3", "HAS ACQ CONTEXT", "TEXT", 'EV (111044, DCM, "Patient Orientation Row")', "1",
            "U"),
        row("4", "HAS ACQ CONTEXT", "TEXT", 'EV (111043, DCM, "Patient Orientation Column")',
            "1", "U"),
        row("5", "HAS ACQ CONTEXT", "NUM", 'EV (111026, DCM, "Horizontal Pixel Spacing")', "1",
            "U", vsc='UNITS = EV (mm, UCUM, "millimeter")'),
        row("6", "HAS ACQ CONTEXT", "NUM", 'EV (111066, DCM, "Vertical Pixel Spacing")', "1",
            "U", vsc='UNITS = EV (mm, UCUM, "millimeter")'),
        row("7", "HAS ACQ CONTEXT", "NUM", 'EV (112011, DCM, "Positioner Primary Angle")', "1",
            "U", vsc='UNITS = EV (deg, UCUM, "deg")'),
        row("8", "HAS ACQ CONTEXT", "NUM", 'EV (112012, DCM, "Positioner Secondary Angle")',
            "1", "U", vsc='UNITS = EV (deg, UCUM, "deg")'),
    ])


def _descriptor_stub(tid: int, name: str) -> object:
    return template(tid, name, extensible=True, significant=False, partial=True,
                    source_url=NEMA.format(tid), edition=EDITION, rows=[],
                    notes="Not transcribed (cross-sectional modalities are not used by these "
                          "reports); its content is reported 'unchecked'.")


TID_1604 = _descriptor_stub(1604, "Image Library Entry Descriptors for Cross-Sectional "
                                  "Modalities")
TID_1605 = _descriptor_stub(1605, "Image Library Entry Descriptors for CT")
TID_1606 = _descriptor_stub(1606, "Image Library Entry Descriptors for MR")
TID_1607 = _descriptor_stub(1607, "Image Library Entry Descriptors for PET")

MEASUREMENT_TEMPLATES = (TID_1400, TID_1401, TID_1402, TID_1410, TID_1411, TID_1419, TID_1420,
                         TID_1500, TID_1501, TID_1502, TID_1600, TID_1601, TID_1602, TID_1603,
                         TID_1604, TID_1605, TID_1606, TID_1607)

