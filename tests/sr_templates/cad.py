"""Mammography CAD SR templates: TID 4000 and what it includes (TID 4001-4023).

Edition: PS3.16 2026a. Rows were transcribed from the 2026a DocBook TID tables (as
machine-extracted into raster-labs/DICOMKit, Sources/DICOMCore/StructuredReporting/
SRCADTemplates.swift, by its Scripts/generate_sr_templates.py) and compared with the
dicom.nema.org chtml pages listed in each template's ``cross_checked`` (2024c-2025a
editions, which agree on every row compared) and, for the older wording, dabsoft.ch.
"""

from __future__ import annotations

from .model import (
    AtLeast,
    DocumentHas,
    ImageHas,
    ParentValueIn,
    RowPresent,
    RowValueIn,
    SiblingConcept,
    Xor,
    dcm,
    row,
    sct,
    template,
)

EDITION = "2026a"
NEMA = "https://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_TID_{}.html"
DABSOFT = "https://www.dabsoft.ch/dicom/16/TID_{}/"
NEMA_2024C_4017 = "https://dicom.nema.org/medical/dicom/2024c/output/chtml/part16/sect_TID_4017.html"
NEMA_4015 = "https://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_tid_4015.html"
NEMA_MAMMO = ("https://dicom.nema.org/medical/dicom/current/output/chtml/part16/"
              "sect_mammographycadsriodtemplates.html")

NOT_ATTEMPTED = dcm("111225")
PERCENT = 'UNITS = EV (%, UCUM, "Percent")\nValue = 0 - 100'
MEASURE_PATH = ("If the measured path is encoded, the SCOORD and its by-reference relationship "
                "to the IMAGE in TID {} shall be used.")

_BREAST_COMPOSITION = sct("129715009")
_BREAST_GEOMETRY = dcm("111100")
_NIPPLE = sct("24142002")
_SELECTED_REGION = dcm("111099")
_IMAGE_QUALITY = dcm("111101")
_NON_LESION = dcm("111102")
_MASS_OR_DENSITY = sct("129788004", "129793001")
_CLUSTER = sct("129769006")
_INDIVIDUAL_CALC = sct("129770007")
_TEMPORAL = dcm("111153")


def _image_attr(*tags: int) -> ImageHas:
    return ImageHas(tags)


TID_4000 = template(
    4000, "Mammography CAD Document Root", extensible=False, significant=True, root=True,
    source_url=NEMA.format(4000), edition=EDITION,
    cross_checked=(NEMA_MAMMO, DABSOFT.format(4000)),
    rows=[
        row("1", "", "CONTAINER", 'EV (111036, DCM, "Mammography CAD Report")', "1", "M"),
        row("2", "> HAS CONCEPT MOD", "INCLUDE",
            'DTID 1204 "Language of Content Item and Descendants"', "1", "M"),
        row("3", "> CONTAINS", "CONTAINER", 'EV (111028, DCM, "Image Library")', "1", "M"),
        row("4", ">> CONTAINS", "INCLUDE", 'DTID 4020 "CAD Image Library Entry"', "1-n", "M",
            vsc='$ImageLaterality = DCID 6022 "Side"\n'
                '$ImageView = DCID 4014 "View for Mammography"\n'
                '$ImageViewMod = DCID 4015 "View Modifier for Mammography"'),
        row("5", "> CONTAINS", "INCLUDE",
            'DTID 4001 "Mammography CAD Overall Impression/Recommendation"', "1", "M"),
        row("6", "> CONTAINS", "CODE", 'EV (111064, DCM, "Summary of Detections")', "1", "M",
            vsc='DCID 6042 "Result Status"'),
        row("7", ">> INFERRED FROM", "INCLUDE", 'DTID 4015 "CAD Detections Performed"', "1",
            "MC", cond='Shall be present unless the value of (111064, DCM, "Summary of '
                       'Detections") is (111225, DCM, "Not Attempted")',
            vsc='$DetectionCode = DCID 6014 "Mammography Single Image Finding"',
            when=ParentValueIn(NOT_ATTEMPTED, negate=True)),
        row("8", "> CONTAINS", "CODE", 'EV (111065, DCM, "Summary of Analyses")', "1", "M",
            vsc='DCID 6042 "Result Status"'),
        row("9", ">> INFERRED FROM", "INCLUDE", 'DTID 4016 "CAD Analyses Performed"', "1",
            "MC", cond='Shall be present unless the value of (111065, DCM, "Summary of '
                       'Analyses") is (111225, DCM, "Not Attempted")',
            vsc='$AnalysisCode = DCID 6043 "Mammography CAD Analysis Type"',
            when=ParentValueIn(NOT_ATTEMPTED, negate=True)),
    ])

TID_4001 = template(
    4001, "Mammography CAD Overall Impression/Recommendation", extensible=False,
    significant=True, source_url=NEMA.format(4001), edition=EDITION,
    cross_checked=(DABSOFT.format(4001),),
    rows=[
        row("1", "", "CODE", 'EV (111017, DCM, "CAD Processing and Findings Summary")', "1",
            "M", vsc='DCID 6047 "CAD Processing and Finding Summary"'),
        row("2", "> HAS PROPERTIES", "INCLUDE",
            'DTID 4002 "Mammography CAD Impression/Recommendation Body"', "1", "U"),
        row("3", "> INFERRED FROM", "INCLUDE",
            'DTID 4003 "Mammography CAD Individual Impression/Recommendation"', "1-n", "MC",
            cond='Shall be present if 1 or more (111059, DCM, "Single Image Finding") or '
                 '(111015, DCM, "Composite Feature") Content Items are reported.',
            when=DocumentHas(dcm("111059", "111015"))),
    ])

_BODY_GROUP = "At least one of Rows 1, 3, 5, 6, 8, 9 shall be present."

TID_4002 = template(
    4002, "Mammography CAD Impression/Recommendation Body", extensible=False,
    significant=True, source_url=NEMA.format(4002), edition=EDITION,
    cross_checked=("https://dicom.avkrok.net/medical/dicom/2015a/output/chtml/part16/"
                   "sect_TID_4002.html",),
    groups=(AtLeast(("1", "3", "5", "6", "8", "9"), text=_BODY_GROUP),),
    rows=[
        row("1", "", "CODE", 'EV (111005, DCM, "Assessment Category")', "1-n", "MC",
            cond=_BODY_GROUP, vsc='DCID 6026 "Mammography Assessment"'),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 6022 "Side"'),
        row("3", "", "CODE", 'EV (111023, DCM, "Differential Diagnosis/Impression")', "1-n",
            "MC", cond=_BODY_GROUP,
            vsc='DCID 6002 "Change Since Last Mammogram or Prior Surgery"'),
        row("4", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 6022 "Side"'),
        row("5", "", "TEXT", 'EV (111033, DCM, "Impression Description")', "1", "MC",
            cond=_BODY_GROUP),
        row("6", "", "CODE", 'EV (111053, DCM, "Recommended Follow-up")', "1-n", "MC",
            cond=_BODY_GROUP, vsc='DCID 6028 "Mammography Recommended Follow-up"'),
        row("7", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 6022 "Side"'),
        row("8", "", "NUM", 'EV (111055, DCM, "Recommended Follow-up Interval")', "1", "MC",
            cond=_BODY_GROUP + ' May be present only if (111054, DCM, "Recommended Follow-up '
                               'Date") is not present.',
            vsc='UNITS = DCID 6046 "Follow-up Interval Unit"\n'
                'Values = Integer >= 0, where 0 = immediate follow-up',
            only_if=SiblingConcept(dcm("111054"), negate=True)),
        row("9", "", "DATE", 'EV (111054, DCM, "Recommended Follow-up Date")', "1", "MC",
            cond=_BODY_GROUP + ' May be present only if (111055, DCM, "Recommended Follow-up '
                               'Interval") is not present.',
            vsc="Shall be later than date of study",
            only_if=SiblingConcept(dcm("111055"), negate=True)),
        row("10", "", "NUM", 'EV (111013, DCM, "Certainty of impression")', "1", "UC",
            cond='May be present only if (111005, DCM, "Assessment Category"), (111023, DCM, '
                 '"Differential Diagnosis/Impression") or (111033, DCM, "Impression '
                 'Description") is present.',
            vsc='UNITS = EV (%, UCUM, "Percent")\nValues = 0 - 100',
            only_if=SiblingConcept(dcm("111005", "111023", "111033"))),
        row("11", "", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1-n", "M"),
        row("12", "", "NUM", 'DCID 6142 "Calculated Value"', "1-n", "U"),
        row("13", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='DCID 6022 "Side"'),
        row("14", "> HAS CONCEPT MOD", "CODE", 'EV (121401, DCM, "Derivation")', "1", "M",
            vsc='DCID 6140 "Calculation Method"'),
        row("15", "> INFERRED FROM", "TEXT", 'EV (112034, DCM, "Calculation Description")',
            "1", "U"),
    ])

TID_4003 = template(
    4003, "Mammography CAD Individual Impression/Recommendation", extensible=False,
    significant=True, source_url=NEMA.format(4003), edition=EDITION,
    cross_checked=(DABSOFT.format(4003),),
    groups=(AtLeast(("4", "5"), text="At least one of Rows 4, 5 shall be present."),),
    rows=[
        row("1", "", "CONTAINER", 'EV (111034, DCM, "Individual Impression/Recommendation")',
            "1", "M"),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (111056, DCM, "Rendering Intent")', "1",
            "M", vsc='DCID 6034 "CAD Output Intended Use"'),
        row("3", "> CONTAINS", "INCLUDE",
            'DTID 4002 "Mammography CAD Impression/Recommendation Body"', "1", "U"),
        row("4", "> CONTAINS", "INCLUDE", 'DTID 4004 "Mammography CAD Composite Feature"',
            "1-n", "MC", cond="At least one of Rows 4, 5 shall be present."),
        row("5", "> CONTAINS", "INCLUDE", 'DTID 4006 "Mammography CAD Single Image Finding"',
            "1-n", "MC", cond="At least one of Rows 4, 5 shall be present."),
    ])

_TWO = "At least two items shall be present: two of Row 5, two of Row 6, or one of each."
_REUSE = ("PS3.17 E.1: once instantiated, a Single Image Finding or Composite Feature may be "
          "referenced by any number of Composite Features higher in the tree, so a "
          "by-reference INFERRED FROM to one is accepted here.")

TID_4004 = template(
    4004, "Mammography CAD Composite Feature", extensible=False, significant=True,
    source_url=NEMA.format(4004), edition=EDITION,
    groups=(AtLeast(("5", "6"), n=2, text=_TWO),),
    rows=[
        row("1", "", "CODE", 'EV (111015, DCM, "Composite Feature")', "1", "M",
            vsc='DCID 6016 "Mammography Composite Feature"'),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (111056, DCM, "Rendering Intent")', "1",
            "M", vsc='DCID 6034 "CAD Output Intended Use"'),
        row("3", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 4108 "Tracking Identifier"', "1", "U"),
        row("4", "> HAS PROPERTIES", "INCLUDE",
            'DTID 4005 "Mammography CAD Composite Feature Body"', "1", "M"),
        row("5", "> INFERRED FROM", "INCLUDE", 'DTID 4004 "Mammography CAD Composite Feature"',
            "1-n", "MC", cond=_TWO, allow_by_ref=True, note=_REUSE),
        row("6", "> INFERRED FROM", "INCLUDE",
            'DTID 4006 "Mammography CAD Single Image Finding"', "1-n", "MC", cond=_TWO,
            allow_by_ref=True, note=_REUSE),
        row("7", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 4022 "CAD Observation Context"', "1",
            "MC", cond="Shall be present only if this feature is incorporated from a "
                       "different report than its parent."),
    ])

_IF_MASS = ('May be present only if value of parent is (129788004, SCT, "Mammographic breast '
            'mass") or (129793001, SCT, "Mammography breast density")')
_IF_TEMPORAL = ('May be present only if the value of (111016, DCM, "Composite type") is '
                '(111153, DCM, "Target Content Items are related temporally")')

TID_4005 = template(
    4005, "Mammography CAD Composite Feature Body", extensible=False, significant=True,
    source_url=NEMA.format(4005), edition=EDITION, cross_checked=(NEMA.format(4005),),
    rows=[
        row("1", "", "CODE", 'EV (111016, DCM, "Composite type")', "1", "M",
            vsc='DCID 6035 "Composite Feature Relation"\n'
                'The value shall be (111155, DCM, "Target Content Items are related '
                'contra-laterally") if the parent Content Item has Code Value (129789007, SCT, '
                '"Focal asymmetric breast tissue") or (129790003, SCT, "Asymmetric breast '
                'tissue").'),
        row("2", "", "CODE", 'EV (111057, DCM, "Scope of Feature")', "1", "M",
            vsc='DCID 6036 "Feature Scope"'),
        row("3", "", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1", "M"),
        row("4", "", "NUM", 'EV (111011, DCM, "Certainty of Feature")', "1", "U", vsc=PERCENT),
        row("5", "", "NUM", 'EV (111047, DCM, "Probability of cancer")', "1", "UC",
            cond='May be present only if value of parent is not (111102, DCM, "Non-lesion")',
            vsc=PERCENT, only_if=ParentValueIn(_NON_LESION, negate=True)),
        row("6", "", "CODE", 'EV (111042, DCM, "Pathology")', "1-n", "U",
            vsc='BCID 6030 "Mammography Pathology Code"'),
        row("7", "", "INCLUDE", 'DTID 1400 "Linear Measurement"', "1-n", "U",
            vsc=MEASURE_PATH.format(1400)),
        row("8", "", "INCLUDE", 'DTID 1401 "Area Measurement"', "1-n", "U",
            vsc=MEASURE_PATH.format(1401)),
        row("9", "", "INCLUDE", 'DTID 1402 "Volume Measurement"', "1-n", "U",
            vsc=MEASURE_PATH.format(1402)),
        row("10", "", "INCLUDE", 'DTID 4021 "Mammography CAD Geometry"', "1-n", "U"),
        row("11", "", "NUM", 'DCID 6037 "Mammography Quantitative Temporal Difference Type"',
            "1-n", "UC", cond=_IF_TEMPORAL,
            vsc='UNITS = DCID 7460 "Linear Measurement Unit"\n'
                'UNITS = DCID 7461 "Area Measurement Unit"\n'
                'UNITS = DCID 7462 "Volume Measurement Unit"\n'
                'UNITS = DT (1, UCUM, "no units")',
            only_if=RowValueIn("1", _TEMPORAL)),
        row("12", "> R-INFERRED FROM", "NUM", "", "2", "U",
            vsc="The referenced numeric values shall have the same Concept Name. Their UNITS "
                "shall be the same as Row 11"),
        row("13", "", "CODE", 'EV (111049, DCM, "Qualitative Difference")', "1-n", "UC",
            cond=_IF_TEMPORAL,
            vsc='DCID 6038 "Mammography Qualitative Temporal Difference Type"',
            only_if=RowValueIn("1", _TEMPORAL)),
        row("14", "> HAS PROPERTIES", "TEXT", 'EV (111021, DCM, "Description of Change")', "1",
            "U"),
        row("15", "> R-INFERRED FROM", "CODE", "", "2", "M",
            vsc="The referenced Code Values shall have the same Concept Name and be from the "
                "same Context Group."),
        row("16", "", "CODE", 'EV (111048, DCM, "Quadrant location")', "1", "U",
            vsc='DCID 6020 "Quadrant Location"'),
        row("17", "", "CODE", 'EV (111014, DCM, "Clockface or region")', "1", "U",
            vsc='DCID 6018 "Clockface Location or Region"'),
        row("18", "", "CODE", 'EV (111020, DCM, "Depth")', "1", "U", vsc='DCID 6024 "Depth"'),
        row("19", "", "CODE", 'EV (111035, DCM, "Lesion Density")', "1", "UC", cond=_IF_MASS,
            vsc='DCID 6008 "Density Modifier"', only_if=ParentValueIn(_MASS_OR_DENSITY)),
        row("20", "", "CODE", 'EV (107644003, SCT, "Shape")', "1", "UC", cond=_IF_MASS,
            vsc='DCID 6004 "Mammography Shape Characteristic"',
            only_if=ParentValueIn(_MASS_OR_DENSITY)),
        row("21", "", "CODE", 'EV (112233002, SCT, "Margin")', "1-n", "UC", cond=_IF_MASS,
            vsc='DCID 6006 "Mammography Margin Characteristic"',
            only_if=ParentValueIn(_MASS_OR_DENSITY)),
        row("22", "", "CODE", 'EV (111009, DCM, "Calcification Type")', "1-n", "UC",
            cond='May be present only if value of parent is (129769006, SCT, "Calcification '
                 'Cluster") or (129770007, SCT, "Individual Calcification")',
            vsc='DCID 6010 "Mammography Calcification Type"',
            only_if=ParentValueIn(_CLUSTER + _INDIVIDUAL_CALC)),
        row("23", "", "CODE", 'EV (111008, DCM, "Calcification Distribution")', "1", "UC",
            cond='May be present only if value of parent is (129769006, SCT, "Calcification '
                 'Cluster")',
            vsc='DCID 6012 "Calcification Distribution Modifier"',
            only_if=ParentValueIn(_CLUSTER)),
        row("24", "", "NUM", 'EV (111038, DCM, "Number of calcifications")', "1", "UC",
            cond='May be present only if value of parent is (129769006, SCT, "Calcification '
                 'Cluster")',
            vsc='UNITS = EV (1, UCUM, "no units")\nValue = Integer 1 - n',
            only_if=ParentValueIn(_CLUSTER)),
        row("25", "", "NUM", 'DCID 6142 "Calculated Value"', "1-n", "U"),
        row("26", "> HAS CONCEPT MOD", "CODE", 'EV (121401, DCM, "Derivation")', "1", "M",
            vsc='DCID 6140 "Calculation Method"'),
        row("27", "> INFERRED FROM", "TEXT", 'EV (112034, DCM, "Calculation Description")',
            "1", "U"),
    ])

_NO_GEOMETRY = _BREAST_COMPOSITION + _BREAST_GEOMETRY + _IMAGE_QUALITY
_NO_PROBABILITY = (_BREAST_COMPOSITION + _BREAST_GEOMETRY + _NIPPLE + _SELECTED_REGION
                   + _IMAGE_QUALITY + _NON_LESION)
_IQ_XOR = ('IF value of parent is (111101, DCM, "Image quality") and IFF Row {} is not '
           'present')

TID_4006 = template(
    4006, "Mammography CAD Single Image Finding", extensible=False, significant=True,
    source_url=NEMA.format(4006), edition=EDITION,
    groups=(Xor(("18", "19"), when=ParentValueIn(_IMAGE_QUALITY),
                text='Rows 18 and 19: exactly one when the value of the parent is '
                     '(111101, DCM, "Image quality"), never both'),),
    rows=[
        row("1", "", "CODE", 'EV (111059, DCM, "Single Image Finding")', "1", "M",
            vsc='DCID 6014 "Mammography Single Image Finding"'),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (111056, DCM, "Rendering Intent")', "1",
            "M", vsc='DCID 6034 "CAD Output Intended Use"'),
        row("3", ">> HAS PROPERTIES", "NUM", 'EV (111071, DCM, "CAD Operating Point")', "1",
            "UC", cond='IFF value of Row 2 = (111151, DCM, "Presentation Optional") and Row 9 '
                       'of TID 4017 "CAD Detection Performed" is present',
            vsc='UNITS = DT ({1:n}, UCUM, "range: 1:n"), where n is the maximum specified in '
                'Row 9 of TID 4017 "CAD Detection Performed". Value is restricted to being an '
                'integer',
            only_if=ParentValueIn(dcm("111151"))),
        row("4", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 4108 "Tracking Identifier"', "1", "U"),
        row("5", "> HAS PROPERTIES", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "M"),
        row("6", "> HAS PROPERTIES", "NUM", 'EV (111012, DCM, "Certainty of Finding")', "1",
            "U", vsc=PERCENT),
        row("7", "> HAS PROPERTIES", "NUM", 'EV (111047, DCM, "Probability of cancer")', "1",
            "UC", cond='May be present unless value of parent is (129715009, SCT, "Breast '
                       'composition"), (111100, DCM, "Breast geometry"), (24142002, SCT, '
                       '"Nipple"), (111099, DCM, "Selected region"), (111101, DCM, "Image '
                       'quality") or (111102, DCM, "Non-lesion")',
            vsc=PERCENT, only_if=ParentValueIn(_NO_PROBABILITY, negate=True)),
        row("8", "> HAS PROPERTIES", "INCLUDE", 'DTID 4021 "Mammography CAD Geometry"', "1",
            "MC", cond='Shall be present unless value of parent is (129715009, SCT, "Breast '
                       'composition"), (111100, DCM, "Breast geometry") or (111101, DCM, '
                       '"Image quality")',
            when=ParentValueIn(_NO_GEOMETRY, negate=True)),
        row("9", "> HAS PROPERTIES", "INCLUDE", 'DTID 4007 "Mammography CAD Breast Composition"',
            "1", "MC", cond='Shall be present only if value of parent is (129715009, SCT, '
                            '"Breast composition")',
            when=ParentValueIn(_BREAST_COMPOSITION),
            only_if=ParentValueIn(_BREAST_COMPOSITION)),
        row("10", "> R-INFERRED FROM", "CODE", "", "1-n", "UC",
            cond='May be present only if value of parent is (129715009, SCT, "Breast '
                 'composition")',
            vsc='Shall reference a (111059, DCM, "Single Image Finding") of value: EV (111100, '
                'DCM, "Breast geometry")',
            only_if=ParentValueIn(_BREAST_COMPOSITION)),
        row("11", "> HAS PROPERTIES", "INCLUDE", 'DTID 4008 "Mammography CAD Breast Geometry"',
            "1", "MC", cond='Shall be present only if value of parent is (111100, DCM, '
                            '"Breast geometry")',
            when=ParentValueIn(_BREAST_GEOMETRY), only_if=ParentValueIn(_BREAST_GEOMETRY)),
        row("12", "> HAS PROPERTIES", "INCLUDE",
            'DTID 4009 "Mammography CAD Individual Calcification"', "1", "UC",
            cond='May be present only if value of parent is (129770007, SCT, "Individual '
                 'Calcification")',
            only_if=ParentValueIn(_INDIVIDUAL_CALC)),
        row("13", "> HAS PROPERTIES", "INCLUDE",
            'DTID 4010 "Mammography CAD Calcification Cluster"', "1", "UC",
            cond='May be present only if value of parent is (129769006, SCT, "Calcification '
                 'Cluster")',
            only_if=ParentValueIn(_CLUSTER)),
        row("14", "> HAS PROPERTIES", "INCLUDE", 'DTID 4011 "Mammography CAD Density"', "1",
            "UC", cond='May be present only if value of parent is (129793001, SCT, '
                       '"Mammography breast density")',
            only_if=ParentValueIn(sct("129793001"))),
        row("15", "> HAS PROPERTIES", "CODE", 'EV (111297, DCM, "Nipple Characteristic")', "1",
            "UC", cond='May be present only if value of parent is (24142002, SCT, "Nipple")',
            vsc='DCID 6039 "Nipple Characteristic"', only_if=ParentValueIn(_NIPPLE)),
        row("16", "> HAS PROPERTIES", "INCLUDE", 'DTID 4012 "Mammography CAD Non-lesion"', "1",
            "MC", cond='Shall be present only if value of parent is (111102, DCM, '
                       '"Non-lesion")',
            when=ParentValueIn(_NON_LESION), only_if=ParentValueIn(_NON_LESION)),
        row("17", "> HAS PROPERTIES", "INCLUDE", 'DTID 4013 "Mammography CAD Selected Region"',
            "1", "MC", cond='Shall be present only if value of parent is (111099, DCM, '
                            '"Selected Region")',
            when=ParentValueIn(_SELECTED_REGION), only_if=ParentValueIn(_SELECTED_REGION)),
        row("18", "> R-INFERRED FROM", "IMAGE", "", "1", "MC", cond=_IQ_XOR.format(19),
            vsc='Shall reference an IMAGE Content Item in the (111028, DCM, "Image Library")'),
        row("19", "> HAS PROPERTIES", "SCOORD", 'EV (111030, DCM, "Image Region")', "1-n",
            "MC", cond=_IQ_XOR.format(18)),
        row("20", ">> R-SELECTED FROM", "IMAGE", "", "1", "M",
            vsc='All the (111030, DCM, "Image Region") Content Items in a single invocation '
                'of this Template shall reference the same IMAGE Content Item in the '
                '(111028, DCM, "Image Library")'),
        row("21", "> HAS PROPERTIES", "INCLUDE", 'DTID 4014 "CAD Image Quality"', "1-n", "MC",
            cond='Shall be present only if value of parent is (111101, DCM, "Image quality")',
            vsc='$QualityFinding = DCID 6041 "Mammography Image Quality Finding"\n'
                '$QualityStandard = DCID 6045 "Mammography Quality Control Standard Type"',
            when=ParentValueIn(_IMAGE_QUALITY), only_if=ParentValueIn(_IMAGE_QUALITY)),
        row("22", "> HAS PROPERTIES", "NUM", 'DCID 6142 "Calculated Value"', "1-n", "U"),
        row("23", ">> HAS CONCEPT MOD", "CODE", 'EV (121401, DCM, "Derivation")', "1", "M",
            vsc='DCID 6140 "Calculation Method"'),
        row("24", ">> INFERRED FROM", "TEXT", 'EV (112034, DCM, "Calculation Description")',
            "1", "U"),
        row("25", "> INFERRED FROM", "INCLUDE",
            'DTID 4006 "Mammography CAD Single Image Finding"', "1-n", "UC",
            cond='May be present only if value of parent is (129769006, SCT, "Calcification '
                 'Cluster")',
            vsc='Value of the included Single Image Finding: EV (129770007, SCT, "Individual '
                'Calcification")',
            only_if=ParentValueIn(_CLUSTER), allow_by_ref=True),
        row("26", "> HAS OBS CONTEXT", "INCLUDE", 'DTID 4022 "CAD Observation Context"', "1",
            "MC", cond="Shall be present only if this finding is incorporated from a different "
                       "report than its parent."),
    ])

TID_4007 = template(
    4007, "Mammography CAD Breast Composition", extensible=False, significant=True,
    source_url=NEMA.format(4007), edition=EDITION,
    groups=(AtLeast(("1", "2"), text="At least one of Row 1 or 2 shall be present"),),
    rows=[
        row("1", "", "CODE", 'EV (129715009, SCT, "Breast composition")', "1", "MC",
            cond="At least one of Row 1 or 2 shall be present",
            vsc='DCID 6000 "Overall Breast Composition"'),
        row("2", "", "NUM", 'EV (111046, DCM, "Percent Fibroglandular Tissue")', "1", "MC",
            cond="At least one of Row 1 or 2 shall be present", vsc=PERCENT),
    ])

TID_4008 = template(
    4008, "Mammography CAD Breast Geometry", extensible=False, significant=True,
    source_url=NEMA.format(4008), edition=EDITION,
    rows=[
        row("1", "", "SCOORD", 'EV (111007, DCM, "Breast Outline Including Pectoral Muscle '
                               'Tissue")', "1", "M", vsc="GRAPHIC TYPE = {POLYLINE}"),
        row("2", "> R-SELECTED FROM", "IMAGE", "", "1", "M",
            vsc='Shall reference an IMAGE Content Item in the (111028, DCM, "Image Library")'),
        row("3", "", "SCOORD", 'EV (111045, DCM, "Pectoral Muscle Outline")', "1", "U",
            vsc="GRAPHIC TYPE = {POLYLINE}"),
        row("4", "> R-SELECTED FROM", "IMAGE", "", "1", "M",
            vsc="Shall reference the same node as Row 2"),
    ])


def _measurement_body(tid: int, name: str, first: list, mandatory_rows: tuple[str, ...],
                      text: str):
    """TID 4009-4011: a few coded rows, then Linear/Area (MC) and Volume (U) Measurement."""
    n = len(first)
    rows = [*first,
            row(str(n + 1), "", "INCLUDE", 'DTID 1400 "Linear Measurement"', "1-n", "MC",
                cond=text, vsc=MEASURE_PATH.format(1400)),
            row(str(n + 2), "", "INCLUDE", 'DTID 1401 "Area Measurement"', "1-n", "MC",
                cond=text, vsc=MEASURE_PATH.format(1401)),
            row(str(n + 3), "", "INCLUDE", 'DTID 1402 "Volume Measurement"', "1-n", "U",
                vsc=MEASURE_PATH.format(1402))]
    return template(tid, name, extensible=False, significant=True,
                    source_url=NEMA.format(tid), edition=EDITION,
                    groups=(AtLeast(mandatory_rows, text=text),), rows=rows)


_CALC_TYPE = ('EV (111009, DCM, "Calcification Type")', 'DCID 6010 "Mammography Calcification '
                                                        'Type"')
TID_4009 = _measurement_body(
    4009, "Mammography CAD Individual Calcification",
    [row("1", "", "CODE", _CALC_TYPE[0], "1-n", "MC",
         cond="At least one of Rows 1, 2, 3 shall be present", vsc=_CALC_TYPE[1])],
    ("1", "2", "3"), "At least one of Rows 1, 2, 3 shall be present")
_FIVE = "At least one of Rows 1, 2, 3, 4, 5 shall be present"
TID_4010 = _measurement_body(
    4010, "Mammography CAD Calcification Cluster",
    [row("1", "", "CODE", _CALC_TYPE[0], "1-n", "MC", cond=_FIVE, vsc=_CALC_TYPE[1]),
     row("2", "", "CODE", 'EV (111008, DCM, "Calcification Distribution")', "1", "MC",
         cond=_FIVE, vsc='DCID 6012 "Calcification Distribution Modifier"'),
     row("3", "", "NUM", 'EV (111038, DCM, "Number of calcifications")', "1", "MC", cond=_FIVE,
         vsc='UNITS = EV (1, UCUM, "no units")\nValue = Integer >= 1')],
    ("1", "2", "3", "4", "5"), _FIVE)
TID_4011 = _measurement_body(
    4011, "Mammography CAD Density",
    [row("1", "", "CODE", 'EV (111035, DCM, "Lesion Density")', "1", "MC", cond=_FIVE,
         vsc='DCID 6008 "Density Modifier"'),
     row("2", "", "CODE", 'EV (107644003, SCT, "Shape")', "1", "MC", cond=_FIVE,
         vsc='DCID 6004 "Mammography Shape Characteristic"'),
     row("3", "", "CODE", 'EV (112233002, SCT, "Margin")', "1-n", "MC", cond=_FIVE,
         vsc='DCID 6006 "Mammography Margin Characteristic"')],
    ("1", "2", "3", "4", "5"), _FIVE)


def _with_measurements(tid: int, name: str, first) -> object:
    return template(
        tid, name, extensible=False, significant=True, source_url=NEMA.format(tid),
        edition=EDITION,
        rows=[first,
              row("2", "", "INCLUDE", 'DTID 1400 "Linear Measurement"', "1-n", "U",
                  vsc=MEASURE_PATH.format(1400)),
              row("3", "", "INCLUDE", 'DTID 1401 "Area Measurement"', "1-n", "U",
                  vsc=MEASURE_PATH.format(1401)),
              row("4", "", "INCLUDE", 'DTID 1402 "Volume Measurement"', "1-n", "U",
                  vsc=MEASURE_PATH.format(1402))])


TID_4012 = _with_measurements(
    4012, "Mammography CAD Non-lesion",
    row("1", "", "CODE", 'EV (111039, DCM, "Object type")', "1", "M",
        vsc='DCID 6040 "Non-lesion Object Type"'))
TID_4013 = _with_measurements(
    4013, "Mammography CAD Selected Region",
    row("1", "", "TEXT", 'EV (111058, DCM, "Selected Region Description")', "1", "M"))

TID_4014 = template(
    4014, "CAD Image Quality", extensible=False, significant=True,
    source_url=NEMA.format(4014), edition=EDITION, params=("QualityFinding", "QualityStandard"),
    rows=[
        row("1", "", "CODE", 'EV (111052, DCM, "Quality Finding")', "1", "M",
            vsc="$QualityFinding"),
        row("2", "> HAS PROPERTIES", "CODE", 'EV (111050, DCM, "Quality Assessment")', "1",
            "U", vsc='DCID 6044 "Image Quality Assessment Type"'),
        row("3", "> HAS PROPERTIES", "CODE", 'EV (111051, DCM, "Quality Control Standard")',
            "1", "UC", cond="Shall be present if Row 2 is present.", vsc="$QualityStandard",
            when=RowPresent(("2",))),
        row("4", "> HAS PROPERTIES", "NUM", 'EV (111029, DCM, "Image Quality Rating")', "1",
            "U", vsc=PERCENT),
    ])


def _performed_list(tid: int, name: str, param: str, included: int, included_name: str,
                    success: str, failure: str) -> object:
    return template(
        tid, name, extensible=False, significant=True, source_url=NEMA.format(tid),
        edition=EDITION, params=(param,),
        cross_checked=(NEMA_4015,) if tid == 4015 else (),
        rows=[
            row("1", "", "CONTAINER", success, "1", "MC",
                cond='Shall be present only if value of parent is (111222, DCM, "Succeeded") '
                     'or (111223, DCM, "Partially Succeeded")',
                when=ParentValueIn(dcm("111222", "111223")),
                only_if=ParentValueIn(dcm("111222", "111223"))),
            row("2", "> CONTAINS", "INCLUDE", f'DTID {included} "{included_name}"', "1-n", "M",
                vsc=f"${param} = ${param}"),
            row("3", "", "CONTAINER", failure, "1", "MC",
                cond='Shall be present only if value of parent is (111224, DCM, "Failed") or '
                     '(111223, DCM, "Partially Succeeded")',
                when=ParentValueIn(dcm("111224", "111223")),
                only_if=ParentValueIn(dcm("111224", "111223"))),
            row("4", "> CONTAINS", "INCLUDE", f'DTID {included} "{included_name}"', "1-n", "M",
                vsc=f"${param} = ${param}"),
        ])


TID_4015 = _performed_list(4015, "CAD Detections Performed", "DetectionCode", 4017,
                           "CAD Detection Performed",
                           'EV (111063, DCM, "Successful Detections")',
                           'EV (111025, DCM, "Failed Detections")')
TID_4016 = _performed_list(4016, "CAD Analyses Performed", "AnalysisCode", 4018,
                           "CAD Analysis Performed",
                           'EV (111062, DCM, "Successful Analyses")',
                           'EV (111024, DCM, "Failed Analyses")')

_MAMMO_ROW_8 = ("Mammography CAD SR: the Image Library is mandatory, thus only Row 8 (the "
                "by-reference image) shall be present")
_MAMMO_ROW_4 = ("Mammography CAD SR: the images an algorithm ran on are in the mandatory Image "
                "Library; reference them by-reference (Row 4), as Rows 7/8 require for "
                "regions (not stated for Rows 3/4 in the table, hence a warning)")
_AT_LEAST_ONE_IMAGE = "At least one of Rows 3, 4, 5 or 6 shall be present"
_LIBRARY = 'Shall reference IMAGE Content Item(s) in the (111028, DCM, "Image Library")'
_LIBRARY_ONE = 'Shall reference an IMAGE Content Item in the (111028, DCM, "Image Library")'


def _performed_one(tid: int, name: str, param: str, concept: str, operating_points: bool):
    rows = [
        row("1", "", "CODE", concept, "1", "M", vsc=f"${param}"),
        row("2", "> HAS PROPERTIES", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "M"),
        row("3", "> HAS PROPERTIES", "IMAGE", "", "1-n", "MC", cond=_AT_LEAST_ONE_IMAGE,
            in_root=((4000, "warning", _MAMMO_ROW_4),)),
        row("4", "> R-HAS PROPERTIES", "IMAGE", "", "1-n", "MC", cond=_AT_LEAST_ONE_IMAGE,
            vsc=_LIBRARY),
        row("5", "> HAS PROPERTIES", "UIDREF", 'EV (112002, DCM, "Series Instance UID")', "1-n",
            "MC", cond=_AT_LEAST_ONE_IMAGE),
        row("6", "> HAS PROPERTIES", "SCOORD", 'EV (111030, DCM, "Image Region")', "1-n", "MC",
            cond=_AT_LEAST_ONE_IMAGE),
        row("7", ">> SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 8",
            in_root=((4000, "error", _MAMMO_ROW_8),)),
        row("8", ">> R-SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 7",
            vsc=_LIBRARY_ONE),
    ]
    if operating_points:
        rows.append(row("9", ">", "INCLUDE", 'DTID 4023 "CAD Operating Points"', "1", "U"))
    return template(
        tid, name, extensible=False, significant=True, source_url=NEMA.format(tid),
        edition=EDITION, params=(param,),
        cross_checked=(NEMA_2024C_4017,) if tid == 4017 else (),
        groups=(AtLeast(("3", "4", "5", "6"), text=_AT_LEAST_ONE_IMAGE),
                Xor(("7", "8"), text="Row 7 XOR Row 8")),
        notes=("Content Item Description (2024c): " + _MAMMO_ROW_8 + "; Chest CAD SR: Row 7 or "
               "8; Colon CAD SR: only Row 7."),
        rows=rows)


TID_4017 = _performed_one(4017, "CAD Detection Performed", "DetectionCode",
                          'EV (111022, DCM, "Detection Performed")', True)
TID_4018 = _performed_one(4018, "CAD Analysis Performed", "AnalysisCode",
                          'EV (111004, DCM, "Analysis Performed")', False)

_TAGS = {
    "ImageLaterality": 0x00200062, "ViewCodeSequence": 0x00540220,
    "ViewModifierCodeSequence": 0x00540222, "PatientOrientation": 0x00200020,
    "StudyDate": 0x00080020, "StudyTime": 0x00080030, "ContentDate": 0x00080023,
    "ContentTime": 0x00080033, "ImagerPixelSpacing": 0x00181164, "PixelSpacing": 0x00280030,
}


def _acq(number: str, nl_rel: str, vt: str, concept: str, vm: str, req: str, cond: str = "",
         vsc: str = "", **extra: object):
    return row(number, nl_rel, vt, concept, vm, req, cond=cond, vsc=vsc, **extra)


def _if_image(text: str, *names: str) -> dict:
    return {"cond": text, "when": _image_attr(*(_TAGS[n] for n in names))}


_SPACING = 'UNITS = EV (um, UCUM, "micrometer")\nUNITS = EV (mm, UCUM, "millimeter")'
_MM = 'UNITS = EV (mm, UCUM, "millimeter")'
_COS = 'UNITS = EV ({-1:1}, UCUM, "{-1:1}")'
_PIXELS = 'UNITS = EV ({pixels}, UCUM, "pixels")'
_POSITION = ("Shall be present if Row 18 is present, and is the {} value of Image Position "
             "(Patient) (0020,0032) in the Image Instance for the referenced image or frame.")
_ORIENTATION = ("Shall be present if Row 21 is present, and is the {} value of Image "
                "Orientation (Patient) (0020,0037) in the Image Instance for the referenced "
                "image or frame.")

TID_4020 = template(
    4020, "CAD Image Library Entry", extensible=True, significant=True,
    source_url=NEMA.format(4020), edition=EDITION,
    params=("ImageLaterality", "ImageView", "ImageViewMod"),
    notes=("Rows 2-12 are conditional on attributes of the referenced image; the checker "
           "evaluates them when given the image headers (images=), else reports them "
           "'unchecked'."),
    rows=[
        _acq("1", "", "IMAGE", "", "1", "M"),
        _acq("2", "> HAS ACQ CONTEXT", "CODE", 'EV (111027, DCM, "Image Laterality")', "1",
             "MC", vsc="$ImageLaterality",
             **_if_image("Shall be present if (0020,0062) is in the Image Instance",
                         "ImageLaterality")),
        _acq("3", "> HAS ACQ CONTEXT", "CODE", 'EV (111031, DCM, "Image View")', "1", "MC",
             vsc="$ImageView",
             **_if_image("Shall be present if (0054,0220) is in the Image Instance",
                         "ViewCodeSequence")),
        _acq("4", ">> HAS CONCEPT MOD", "CODE", 'EV (111032, DCM, "Image View Modifier")',
             "1-n", "MC", vsc="$ImageViewMod",
             **_if_image("Shall be present if (0054,0222) is in the Image Instance",
                         "ViewModifierCodeSequence")),
        _acq("5", "> HAS ACQ CONTEXT", "TEXT", 'EV (111044, DCM, "Patient Orientation Row")',
             "1", "MC", **_if_image("Shall be present if (0020,0020) is in the Image Instance",
                                    "PatientOrientation")),
        _acq("6", "> HAS ACQ CONTEXT", "TEXT", 'EV (111043, DCM, "Patient Orientation Column")',
             "1", "MC", **_if_image("Shall be present if (0020,0020) is in the Image Instance",
                                    "PatientOrientation")),
        _acq("7", "> HAS ACQ CONTEXT", "DATE", 'EV (111060, DCM, "Study Date")', "1", "MC",
             **_if_image("Shall be present if (0008,0020) is in the Image Instance",
                         "StudyDate")),
        _acq("8", "> HAS ACQ CONTEXT", "TIME", 'EV (111061, DCM, "Study Time")', "1", "MC",
             **_if_image("Shall be present if (0008,0030) is in the Image Instance",
                         "StudyTime")),
        _acq("9", "> HAS ACQ CONTEXT", "DATE", 'EV (111018, DCM, "Content Date")', "1", "MC",
             **_if_image("Shall be present if (0008,0023) is in the Image Instance",
                         "ContentDate")),
        _acq("10", "> HAS ACQ CONTEXT", "TIME", 'EV (111019, DCM, "Content Time")', "1", "MC",
             **_if_image("Shall be present if (0008,0033) is in the Image Instance",
                         "ContentTime")),
        _acq("11", "> HAS ACQ CONTEXT", "NUM", 'EV (111026, DCM, "Horizontal Pixel Spacing")',
             "1", "MC", vsc=_SPACING,
             **_if_image("Shall be present if (0018,1164) or (0028,0030) is in the Image "
                         "Instance", "ImagerPixelSpacing", "PixelSpacing")),
        _acq("12", "> HAS ACQ CONTEXT", "NUM", 'EV (111066, DCM, "Vertical Pixel Spacing")',
             "1", "MC", vsc=_SPACING,
             **_if_image("Shall be present if (0018,1164) or (0028,0030) is in the Image "
                         "Instance", "ImagerPixelSpacing", "PixelSpacing")),
        _acq("13", "> HAS ACQ CONTEXT", "NUM", 'EV (112011, DCM, "Positioner Primary Angle")',
             "1", "UC", cond="May be present if (0018,1510) is in the Image Instance",
             vsc='UNITS = EV (deg, UCUM, "deg")'),
        _acq("14", "> HAS ACQ CONTEXT", "NUM", 'EV (112012, DCM, "Positioner Secondary Angle")',
             "1", "UC", cond="May be present if (0018,1511) is in the Image Instance",
             vsc='UNITS = EV (deg, UCUM, "deg")'),
        _acq("15", "> HAS ACQ CONTEXT", "NUM", 'EV (112226, DCM, "Spacing between slices")',
             "1", "UC", cond="May be computed from the Image Position (Patient) (0020,0032) "
                             "projected onto the normal to the Image Orientation (Patient) "
                             "(0020,0037) if present; may or may not be the same as the "
                             "Spacing Between Slices (0018,0088) if present.", vsc=_MM),
        _acq("16", "> HAS ACQ CONTEXT", "NUM", 'EV (112225, DCM, "Slice Thickness")', "1", "UC",
             cond="May be present if Slice Thickness (0018,0050) is in the Image Instance.",
             vsc=_MM),
        _acq("17", "> HAS ACQ CONTEXT", "UIDREF", 'EV (112227, DCM, "Frame of Reference UID")',
             "1", "UC", cond="May be present if Frame of Reference UID (0020,0052) is in the "
                             "Image Instance."),
        _acq("18", "> HAS ACQ CONTEXT", "NUM", 'EV (110901, DCM, "Image Position (Patient) X")',
             "1", "UC", cond="May be present if Image Position (Patient) (0020,0032) is in the "
                             "Image Instance, and is the first value of Image Position "
                             "(Patient) (0020,0032) for the referenced image or frame.",
             vsc=_MM),
        _acq("19", "> HAS ACQ CONTEXT", "NUM", 'EV (110902, DCM, "Image Position (Patient) Y")',
             "1", "MC", cond=_POSITION.format("second"), vsc=_MM, when=RowPresent(("18",))),
        _acq("20", "> HAS ACQ CONTEXT", "NUM", 'EV (110903, DCM, "Image Position (Patient) Z")',
             "1", "MC", cond=_POSITION.format("second"), vsc=_MM, when=RowPresent(("18",)),
             note='the 2026a text says "second value" for Z as well (sic)'),
        _acq("21", "> HAS ACQ CONTEXT", "NUM",
             'EV (110904, DCM, "Image Orientation (Patient) Row X")', "1", "UC",
             cond="May be present if Image Position (Patient) (0020,0037) is in the Image "
                  "Instance, and is the first value of Image Orientation (Patient) "
                  "(0020,0037) for the referenced image or frame.", vsc=_COS),
        _acq("22", "> HAS ACQ CONTEXT", "NUM",
             'EV (110905, DCM, "Image Orientation (Patient) Row Y")', "1", "MC",
             cond=_ORIENTATION.format("second"), vsc=_COS, when=RowPresent(("21",))),
        _acq("23", "> HAS ACQ CONTEXT", "NUM",
             'EV (110906, DCM, "Image Orientation (Patient) Row Z")', "1", "MC",
             cond=_ORIENTATION.format("third"), vsc=_COS, when=RowPresent(("21",))),
        _acq("24", "> HAS ACQ CONTEXT", "NUM",
             'EV (110907, DCM, "Image Orientation (Patient) Column X")', "1", "MC",
             cond=_ORIENTATION.format("fourth"), vsc=_COS, when=RowPresent(("21",))),
        _acq("25", "> HAS ACQ CONTEXT", "NUM",
             'EV (110908, DCM, "Image Orientation (Patient) Column Y")', "1", "MC",
             cond=_ORIENTATION.format("fifth"), vsc=_COS, when=RowPresent(("21",))),
        _acq("26", "> HAS ACQ CONTEXT", "NUM",
             'EV (110909, DCM, "Image Orientation (Patient) Column Z")', "1", "MC",
             cond=_ORIENTATION.format("sixth"), vsc=_COS, when=RowPresent(("21",))),
        _acq("27", "> HAS ACQ CONTEXT", "NUM", 'EV (110910, DCM, "Pixel Data Rows")', "1", "UC",
             cond="May be present if Rows (0028,0010) is in the Image Instance.", vsc=_PIXELS),
        _acq("28", "> HAS ACQ CONTEXT", "NUM", 'EV (110911, DCM, "Pixel Data Columns")', "1",
             "MC", cond="Shall be present if Row 27 is present, and is the value of Columns "
                        "(0028,0011) in the Image Instance.", vsc=_PIXELS,
             when=RowPresent(("27",))),
    ])

_SAME_AS_2 = "Shall reference the same Content Item as Row 2"

TID_4021 = template(
    4021, "Mammography CAD Geometry", extensible=False, significant=True,
    source_url=NEMA.format(4021), edition=EDITION,
    rows=[
        row("1", "", "SCOORD", 'EV (111010, DCM, "Center")', "1", "M",
            vsc="GRAPHIC TYPE = {POINT}"),
        row("2", "> R-SELECTED FROM", "IMAGE", "", "1", "M", vsc=_LIBRARY_ONE),
        row("3", "", "SCOORD", 'EV (111041, DCM, "Outline")', "1", "U"),
        row("4", "> R-SELECTED FROM", "IMAGE", "", "1", "M", vsc=_SAME_AS_2),
        row("5", "", "SCOORD", 'DCID 6166 "CAD Geometry Secondary Graphical Representation"',
            "1-n", "U"),
        row("6", "> R-SELECTED FROM", "IMAGE", "", "1", "M", vsc=_SAME_AS_2),
    ])

TID_4022 = template(
    4022, "CAD Observation Context", extensible=False, significant=True,
    source_url=NEMA.format(4022), edition=EDITION,
    rows=[
        row("1", "", "COMPOSITE", 'EV (111040, DCM, "Original Source")', "1", "MC",
            cond="Shall be present if the original source is a DICOM object."),
        row("2", "> HAS CONCEPT MOD", "INCLUDE",
            'DTID 1204 "Language of Content Item and Descendants"', "1", "M"),
        row("3", "", "INCLUDE", 'DTID 1001 "Observation Context"', "1", "M"),
    ])

_OPERATING_POINT = ('UNITS = DT ({0:n}, UCUM, "range: 0:n"), where n is the value of Row 1. '
                    "Value is restricted to being an integer that is unique within the "
                    "invocation of this Template.")

TID_4023 = template(
    4023, "CAD Operating Points", extensible=False, significant=True,
    source_url=NEMA.format(4023), edition=EDITION,
    rows=[
        row("1", "HAS PROPERTIES", "NUM", 'EV (111072, DCM, "Maximum CAD Operating Point")',
            "1", "M", vsc="UNITS = DT ([arb'U], UCUM, \"arbitrary unit\")\n"
                          "Value is restricted to being an integer"),
        row("2", "HAS PROPERTIES", "NUM", 'EV (111092, DCM, "Recommended CAD Operating Point")',
            "1", "U", vsc='UNITS = DT ({0:n}, UCUM, "range: 0:n"), where n is the value '
                          "specified in Row 1\nValue is restricted to being an integer"),
        row("3", "HAS PROPERTIES", "CONTAINER", 'EV (111093, DCM, "CAD Operating Point Table")',
            "1", "U"),
        row("4", "> CONTAINS", "CODE", 'EV (122698, DCM, "X-Concept")', "1", "M",
            vsc='DCID 6048 "CAD Operating Point Axis Label"'),
        row("5", "> CONTAINS", "CODE", 'EV (122699, DCM, "Y-Concept")', "1", "M",
            vsc='DCID 6048 "CAD Operating Point Axis Label"'),
        row("6", "> CONTAINS", "NUM", 'EV (111071, DCM, "CAD Operating Point")', "1-n", "M",
            cond="Number of instances of this row shall equal value of Row 1, plus 1.",
            vsc=_OPERATING_POINT),
        row("7", ">> HAS PROPERTIES", "TEXT",
            'EV (111081, DCM, "CAD Operating Point Description")', "1", "U"),
        row("8", ">> HAS PROPERTIES", "NUM", "The value of Row 4", "1", "U"),
        row("9", ">> HAS PROPERTIES", "NUM", "The value of Row 5", "1", "U"),
    ])

CAD_TEMPLATES = (TID_4000, TID_4001, TID_4002, TID_4003, TID_4004, TID_4005, TID_4006,
                 TID_4007, TID_4008, TID_4009, TID_4010, TID_4011, TID_4012, TID_4013,
                 TID_4014, TID_4015, TID_4016, TID_4017, TID_4018, TID_4020, TID_4021,
                 TID_4022, TID_4023)
