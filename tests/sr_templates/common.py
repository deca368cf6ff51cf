"""General templates both reports use: language, observation context, algorithm
identification, tracking identifier, measurement (TID 300/301) and its parts.

Edition: PS3.16 2026a, transcribed from the DocBook tables (as machine-extracted into
raster-labs/DICOMKit, Sources/DICOMCore/StructuredReporting/SRCoreTemplates.swift). In
2026a TID 300 "Measurement" is split: its NUM row and an INCLUDE of the new TID 301
"Measurement Content" that holds the former rows 2-19.
"""

from __future__ import annotations

from .model import (
    AtLeast,
    RowValueIn,
    SiblingConcept,
    Xor,
    dcm,
    row,
    template,
)

EDITION = "2026a"
NEMA = "https://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_TID_{}.html"
CHAPTER_A = "https://dicom.nema.org/medical/dicom/current/output/chtml/part16/chapter_A.html"
RWVM = ('SOP Class UID shall be Real World Value Mapping Storage '
        '("1.2.840.10008.5.1.4.1.1.67")')

TID_1204 = template(
    1204, "Language of Content Item and Descendants", extensible=False, significant=True,
    source_url=NEMA.format(1204), edition=EDITION,
    notes=("CID 5000 and CID 5001 are not in pydicom's CID dictionaries: the language and "
           "country values are checked as open value sets (any code accepted, reported "
           "'unchecked')."),
    rows=[
        row("1", "HAS CONCEPT MOD", "CODE",
            'EV (121049, DCM, "Language of Content Item and Descendants")', "1", "M",
            vsc='DCID 5000 "Language"'),
        row("2", "> HAS CONCEPT MOD", "CODE", 'EV (121046, DCM, "Country of Language")', "1",
            "U", vsc='DCID 5001 "Country"'),
    ])

TID_1001 = template(
    1001, "Observation Context", extensible=False, significant=True,
    source_url=NEMA.format(1001), edition=EDITION,
    rows=[
        row("1", "HAS OBS CONTEXT", "INCLUDE", 'DTID 1002 "Observer Context"', "1-n", "MC",
            cond="Required if all aspects of observer context are not inherited.",
            vsc="Defaults to the Attributes of the Author Observer Sequence (0040,A078), or "
                "the Verifying Observer Sequence (0040,A073) if the Author Observer Sequence "
                "is not present"),
        row("2", "HAS OBS CONTEXT", "INCLUDE", 'DTID 1005 "Procedure Study Context"', "1",
            "MC", cond="Required if all aspects of procedure context are not inherited."),
        row("3", "HAS OBS CONTEXT", "INCLUDE", 'DTID 1006 "Subject Context"', "1", "MC",
            cond="Required if all aspects of observation subject context are not inherited."),
    ])

TID_1002 = template(
    1002, "Observer Context", extensible=False, significant=True,
    source_url=NEMA.format(1002), edition=EDITION,
    rows=[
        row("1", "HAS OBS CONTEXT", "CODE", 'EV (121005, DCM, "Observer Type")', "1", "MC",
            cond="IF Observer type is device",
            vsc='DCID 270 "Observer Type"\nDefaults to (121006, DCM, "Person")',
            when=SiblingConcept(dcm("121012")),
            note='"Observer is a device" is evaluated as: a (121012, DCM, "Device Observer '
                 'UID") sibling is present'),
        row("2", "HAS OBS CONTEXT", "INCLUDE",
            'DTID 1003 "Person Observer Identifying Attributes"', "1", "MC",
            cond='IFF Row 1 value = (121006, DCM, "Person") or Row 1 is absent',
            when=RowValueIn("1", dcm("121006"), absent=True),
            only_if=RowValueIn("1", dcm("121006"), absent=True)),
        row("3", "HAS OBS CONTEXT", "INCLUDE",
            'DTID 1004 "Device Observer Identifying Attributes"', "1", "MC",
            cond='IFF Row 1 value = (121007, DCM, "Device")',
            when=RowValueIn("1", dcm("121007")), only_if=RowValueIn("1", dcm("121007"))),
        row("4", "HAS OBS CONTEXT", "INCLUDE", 'DTID 1015 "Person Observer Description"', "1",
            "U"),
    ])

TID_1003 = template(
    1003, "Person Observer Identifying Attributes", extensible=True, significant=True,
    source_url=NEMA.format(1003), edition=EDITION,
    rows=[
        row("1", "", "PNAME", 'EV (121008, DCM, "Person Observer Name")', "1", "M"),
        row("1a", "", "TEXT", 'EV (128774, DCM, "Person Observer\'s Login Name")', "1", "U"),
        row("2", "", "TEXT", 'EV (121009, DCM, "Person Observer\'s Organization Name")', "1",
            "U", vsc="Defaults to Value of Institution Name (0008,0080) of the General "
                     "Equipment Module"),
        row("3", "", "CODE", 'EV (121010, DCM, "Person Observer\'s Role in the Organization")',
            "1", "U", vsc='BCID 7452 "Organizational Role"'),
        row("4", "", "CODE", 'EV (121011, DCM, "Person Observer\'s Role in this Procedure")',
            "1", "U", vsc='BCID 7453 "Performing Role"'),
        row("5", "> HAS CONCEPT MOD", "TEXT",
            'EV (128775, DCM, "Identifier within Person Observer\'s Role")', "1", "U"),
    ])

_GE = "of the General Equipment Module (PS3.3 C.7.5.1)"
TID_1004 = template(
    1004, "Device Observer Identifying Attributes", extensible=True, significant=True,
    source_url=NEMA.format(1004), edition=EDITION,
    rows=[
        row("1", "", "UIDREF", 'EV (121012, DCM, "Device Observer UID")', "1", "M",
            vsc=f"Defaults to Value of Device UID (0018,1002) {_GE}"),
        row("2", "", "TEXT", 'EV (121013, DCM, "Device Observer Name")', "1", "U",
            vsc=f"Defaults to Value of Station Name (0008,1010) {_GE}"),
        row("3", "", "TEXT", 'EV (121014, DCM, "Device Observer Manufacturer")', "1", "U",
            vsc=f"Defaults to Value of Manufacturer (0008,0070) {_GE}"),
        row("4", "", "TEXT", 'EV (121015, DCM, "Device Observer Model Name")', "1", "U",
            vsc=f"Defaults to Value of Manufacturer's Model Name (0008,1090) {_GE}"),
        row("5", "", "TEXT", 'EV (121016, DCM, "Device Observer Serial Number")', "1", "U",
            vsc=f"Defaults to Value of Device Serial Number (0018,1000) {_GE}"),
        row("6", "", "TEXT",
            'EV (121017, DCM, "Device Observer Physical Location During Observation")', "1",
            "U"),
        row("7", "", "CODE", 'EV (113876, DCM, "Device Role in Procedure")', "1-n", "U",
            vsc='BCID 7445 "Device Participating Role"'),
        row("8", "", "TEXT", 'EV (110119, DCM, "Station AE Title")', "1", "U"),
        row("9", "", "UIDREF", 'EV (121061, DCM, "Device Observer Manufacturer Class UID")',
            "1-n", "U", vsc=f"Defaults to Value of Manufacturer's Device Class UID (0018,100B) "
                            f"{_GE}"),
        row("10", "", "CONTAINER", 'EV (121000, DCM, "Unique Device Identifiers")', "1-n", "U",
            vsc=f"Defaults to Value of UDI Sequence (0018,100A) {_GE}"),
        row("11", "> CONTAINS", "TEXT", 'EV (74711-3, LN, "Unique Device Identifier")', "1",
            "M"),
        row("12", "> CONTAINS", "TEXT", 'EV (120999, DCM, "Device Description")', "1", "U"),
    ])

_GS = "of the General Study Module (PS3.3 C.7.2.1)"
TID_1005 = template(
    1005, "Procedure Study Context", extensible=False, significant=True,
    source_url=NEMA.format(1005), edition=EDITION,
    rows=[
        row("1", "", "UIDREF", 'EV (121018, DCM, "Procedure Study Instance UID")', "1", "U",
            vsc=f"Defaults to Value of Study Instance UID (0020,000D) {_GS}"),
        row("2", "", "UIDREF", 'EV (121019, DCM, "Procedure Study Component UID")', "1-n",
            "U"),
        row("3", "", "TEXT", 'EV (121020, DCM, "Placer Number")', "1", "U"),
        row("4", "> HAS CONCEPT MOD", "TEXT", 'EV (110190, DCM, "Issuer of Identifier")', "1",
            "U"),
        row("5", "", "TEXT", 'EV (121021, DCM, "Filler Number")', "1", "U"),
        row("6", "> HAS CONCEPT MOD", "TEXT", 'EV (110190, DCM, "Issuer of Identifier")', "1",
            "U"),
        row("7", "", "TEXT", 'EV (121022, DCM, "Accession Number")', "1", "U",
            vsc=f"Defaults to Value of Accession Number (0008,0050) {_GS}"),
        row("8", "> HAS CONCEPT MOD", "TEXT", 'EV (110190, DCM, "Issuer of Identifier")', "1",
            "U"),
        row("9", "", "CODE", 'EV (121023, DCM, "Procedure Code")', "1-n", "U",
            vsc=f"Defaults to Value of Procedure Code Sequence (0008,1032) {_GS}"),
    ])

TID_1006 = template(
    1006, "Subject Context", extensible=False, significant=True,
    source_url=NEMA.format(1006), edition=EDITION,
    notes=("Row 5's condition was not fully legible in the source; it is taken to be "
           '"IFF Row 1 value = (121192, DCM, "Device Subject")" by analogy with rows 2-4.'),
    rows=[
        row("1", "", "CODE", 'EV (121024, DCM, "Subject Class")', "1", "MC",
            cond="IF subject is not the Patient",
            vsc='DCID 271 "Observation Subject Class"\nDefaults to (121025, DCM, "Patient")'),
        row("2", "", "INCLUDE", 'DTID 1007 "Subject Context, Patient"', "1", "UC",
            cond='IFF Row 1 value = (121025, DCM, "Patient") or Row 1 is absent',
            only_if=RowValueIn("1", dcm("121025"), absent=True)),
        row("3", "", "INCLUDE", 'DTID 1008 "Subject Context, Fetus"', "1", "UC",
            cond='IFF Row 1 value = (121026, DCM, "Fetus")',
            only_if=RowValueIn("1", dcm("121026"))),
        row("4", "", "INCLUDE", 'DTID 1009 "Subject Context, Specimen"', "1", "UC",
            cond='IFF Row 1 value = (121027, DCM, "Specimen")',
            only_if=RowValueIn("1", dcm("121027"))),
        row("5", "", "INCLUDE", 'DTID 1010 "Subject Context, Device"', "1", "UC",
            cond='IFF Row 1 value = (121192, DCM, "Device Subject")',
            only_if=RowValueIn("1", dcm("121192"))),
    ])


def _stub(tid: int, name: str, first: list, note: str) -> object:
    return template(tid, name, extensible=True, significant=True, source_url=NEMA.format(tid),
                    edition=EDITION, partial=True, rows=first,
                    notes="Encoded partially (only the rows below); content it does not list "
                          "is reported 'unchecked', not as an error. " + note)


TID_1007 = _stub(1007, "Subject Context, Patient", [
    row("1", "", "PNAME", 'EV (121029, DCM, "Subject Name")', "1", "U"),
    row("2", "", "TEXT", 'EV (121030, DCM, "Subject ID")', "1", "U"),
], "Not used by these reports; rows taken from older editions.")
TID_1008 = _stub(1008, "Subject Context, Fetus", [], "Not used by these reports.")
TID_1009 = _stub(1009, "Subject Context, Specimen", [], "Not used by these reports.")
TID_1010 = _stub(1010, "Subject Context, Device", [
    row("1", "", "TEXT", 'EV (121193, DCM, "Device Subject Name")', "1", "M"),
    row("2", "", "UIDREF", 'EV (121198, DCM, "Device Subject UID")', "1", "U"),
    row("3", "", "TEXT", 'EV (121194, DCM, "Device Subject Manufacturer")', "1", "U"),
    row("4", "", "TEXT", 'EV (121195, DCM, "Device Subject Model Name")', "1", "U"),
    row("5", "", "TEXT", 'EV (121196, DCM, "Device Subject Serial Number")', "1", "U"),
    row("6", "", "TEXT",
        'EV (121197, DCM, "Device Subject Physical Location during observation")', "1", "U"),
], "The value type of row 1 was not legible in the source (TEXT assumed).")

TID_1015 = template(
    1015, "Person Observer Description", extensible=True, significant=False,
    source_url=NEMA.format(1015), edition=EDITION,
    rows=[
        row("1", "", "CODE", 'EV (128003, DCM, "Reader Specialty")', "1", "M",
            vsc='DCID 7449 "Reader Specialty"'),
        row("2", "> HAS PROPERTIES", "NUM", 'EV (C54627, NCIt, "Experience")', "1", "M",
            vsc='UNITS = EV (a, UCUM, "Year")'),
    ])

TID_4019 = template(
    4019, "Algorithm Identification", extensible=False, significant=True,
    source_url=NEMA.format(4019), edition=EDITION,
    rows=[
        row("1", "", "TEXT", 'EV (111001, DCM, "Algorithm Name")', "1", "M"),
        row("1b", "", "CODE", 'EV (111001, DCM, "Algorithm Name")', "1", "U"),
        row("2", "", "TEXT", 'EV (111003, DCM, "Algorithm Version")', "1", "M"),
        row("2b", "", "TEXT", 'EV (122405, DCM, "Algorithm Manufacturer")', "1", "U"),
        row("3", "", "TEXT", 'EV (111002, DCM, "Algorithm Parameters")', "1-n", "U"),
        row("4", "", "CODE", 'EV (111000, DCM, "Algorithm Family")', "1", "U"),
    ])

TID_4108 = template(
    4108, "Tracking Identifier", extensible=False, significant=True,
    source_url=NEMA.format(4108), edition=EDITION,
    groups=(AtLeast(("1", "2"), text="At least one of Row 1 or 2 shall be present."),),
    rows=[
        row("1", "", "TEXT", 'EV (112039, DCM, "Tracking Identifier")', "1", "MC",
            cond="At least one of Row 1 or 2 shall be present.",
            vsc="A string of characters with case being non-significant. Leading and trailing "
                "spaces and control characters are forbidden."),
        row("2", "", "UIDREF", 'EV (112040, DCM, "Tracking Unique Identifier")', "1", "MC",
            cond="At least one of Row 1 or 2 shall be present."),
    ])

_MEASUREMENT_PARAMS = ("Measurement", "Units", "ModType", "ModValue", "Method", "Derivation",
                       "TargetSite", "TargetSiteLaterality", "TargetSiteMod", "Equation",
                       "ImagePurpose", "WavePurpose", "RefAuthority", "RangeAuthority",
                       "DerivationParameter", "DerivationParameterUnits",
                       "PrecoordinatedMeasurementMeaning")


def _pass(*names: str) -> str:
    return "\n".join(f"${n} = ${n}" for n in names)


TID_300 = template(
    300, "Measurement", extensible=True, significant=True, source_url=NEMA.format(300),
    edition=EDITION, params=_MEASUREMENT_PARAMS, cross_checked=(CHAPTER_A,),
    rows=[
        row("1", "", "NUM", "$Measurement", "1", "M", vsc="UNITS = $Units"),
        row("1b", ">", "INCLUDE", 'DTID 301 "Measurement Content"', "1", "M",
            vsc=_pass(*_MEASUREMENT_PARAMS[2:])),
    ])

TID_301 = template(
    301, "Measurement Content", extensible=True, significant=True,
    source_url=NEMA.format(301), edition=EDITION, params=_MEASUREMENT_PARAMS[2:],
    groups=(Xor(("9", "10"), mandatory=False, text="Row 9 XOR Row 10"),
            Xor(("11", "12"), mandatory=False, text="Row 11 XOR Row 12")),
    rows=[
        row("2", "HAS CONCEPT MOD", "CODE", "$ModType", "1-n", "U", vsc="$ModValue"),
        row("3", "HAS CONCEPT MOD", "CODE", 'EV (370129005, SCT, "Measurement Method")', "1",
            "U", vsc="$Method"),
        row("4", "HAS CONCEPT MOD", "CODE", 'EV (121401, DCM, "Derivation")', "1", "U",
            vsc="$Derivation"),
        row("5", "HAS CONCEPT MOD", "CODE", 'EV (363698007, SCT, "Finding Site")', "1-n", "U",
            vsc="$TargetSite"),
        row("6", "> HAS CONCEPT MOD", "CODE", 'EV (272741003, SCT, "Laterality")', "1", "U",
            vsc='$TargetSiteLaterality\nDefaults to DCID 244 "Laterality"'),
        row("7", "> HAS CONCEPT MOD", "CODE", 'DT (106233006, SCT, "Topographical modifier")',
            "1", "U", vsc="$TargetSiteMod"),
        row("8", "HAS PROPERTIES", "INCLUDE", 'DTID 310 "Measurement Properties"', "1", "U",
            vsc=_pass("RefAuthority", "RangeAuthority")),
        row("9", "INFERRED FROM", "NUM", "$DerivationParameter", "1-n", "UC",
            cond="XOR Row 10", vsc="UNITS = $DerivationParameterUnits"),
        row("10", "R-INFERRED FROM", "NUM", "$DerivationParameter", "1-n", "UC",
            cond="XOR Row 9", vsc="UNITS = $DerivationParameterUnits"),
        row("11", "INFERRED FROM", "INCLUDE", 'DTID 315 "Equation or Table"', "1", "UC",
            cond="XOR Row 12", vsc=_pass("Equation")),
        row("12", "INFERRED FROM", "TEXT", 'DCID 228 "Equation or Table"', "1", "UC",
            cond="XOR Row 11"),
        row("13", "", "INCLUDE", 'DTID 320 "Image or Spatial Coordinates"', "1-n", "U",
            vsc="$Purpose = $ImagePurpose"),
        row("14", "", "INCLUDE", 'DTID 321 "Waveform or Temporal Coordinates"', "1-n", "U",
            vsc="$Purpose = $WavePurpose"),
        row("15", "", "INCLUDE", 'DTID 1000 "Quotation"', "1", "U"),
        row("16", "HAS CONCEPT MOD", "TEXT",
            'EV (121050, DCM, "Equivalent Meaning of Concept Name")', "1", "U"),
        row("16b", "HAS CONCEPT MOD", "CODE",
            'EV (121050, DCM, "Equivalent Meaning of Concept Name")', "1", "U",
            vsc="$PrecoordinatedMeasurementMeaning"),
        row("17", "HAS OBS CONTEXT", "INCLUDE", 'DTID 4108 "Tracking Identifier"', "1", "U"),
        row("18", "INFERRED FROM", "COMPOSITE",
            'EV (126100, DCM, "Real World Value Map used for measurement")', "1", "U",
            vsc=RWVM),
        row("19", "HAS CONCEPT MOD", "INCLUDE", 'DTID 4019 "Algorithm Identification"', "1",
            "U"),
    ])

TID_310 = template(
    310, "Measurement Properties", extensible=True, significant=True,
    source_url=NEMA.format(310), edition=EDITION, params=("RefAuthority", "RangeAuthority"),
    rows=[
        row("1", "", "CODE", 'EV (121402, DCM, "Normality")', "1", "U",
            vsc='DCID 222 "Normality"'),
        row("2", "", "INCLUDE", 'DTID 311 "Measurement Statistical Properties"', "1", "U",
            vsc=_pass("RefAuthority")),
        row("3", "", "INCLUDE", 'DTID 312 "Normal Range Properties"', "1", "U",
            vsc=_pass("RangeAuthority")),
        row("4", "", "CODE", 'EV (121403, DCM, "Level of Significance")', "1", "U",
            vsc='DCID 220 "Significance Level"'),
        row("5", "", "NUM", 'DCID 225 "Measurement Uncertainty Concept"', "1-n", "U"),
        row("6", "", "CODE", 'EV (121404, DCM, "Selection Status")', "1", "U",
            vsc='DCID 224 "Selection Method"'),
    ])

TID_311 = template(
    311, "Measurement Statistical Properties", extensible=True, significant=True,
    source_url=NEMA.format(311), edition=EDITION, params=("RefAuthority",),
    groups=(Xor(("3", "4"), mandatory=False, text="Row 3 XOR Row 4"),),
    rows=[
        row("1", "", "NUM", 'DCID 221 "Measurement Range Concept"', "1-n", "M"),
        row("2", "", "TEXT", 'EV (121405, DCM, "Population description")', "1", "U"),
        row("3", "", "TEXT", 'EV (121406, DCM, "Reference Authority")', "1", "UC",
            cond="XOR Row 4"),
        row("4", "", "CODE", 'EV (121406, DCM, "Reference Authority")', "1", "UC",
            cond="XOR Row 3", vsc="$RefAuthority"),
    ])

TID_312 = template(
    312, "Normal Range Properties", extensible=True, significant=True,
    source_url=NEMA.format(312), edition=EDITION, params=("RangeAuthority",),
    groups=(Xor(("3", "4"), mandatory=False, text="Row 3 XOR Row 4"),),
    rows=[
        row("1", "", "NUM", 'DCID 223 "Normal Range Value"', "1-n", "M"),
        row("2", "", "TEXT", 'EV (121407, DCM, "Normal Range description")', "1", "U"),
        row("3", "", "TEXT", 'EV (121408, DCM, "Normal Range Authority")', "1", "UC",
            cond="XOR Row 4"),
        row("4", "", "CODE", 'EV (121408, DCM, "Normal Range Authority")', "1", "UC",
            cond="XOR Row 3", vsc="$RangeAuthority"),
    ])

TID_315 = template(
    315, "Equation or Table", extensible=True, significant=True,
    source_url=NEMA.format(315), edition=EDITION, params=("Equation",),
    rows=[
        row("1", "", "CODE", 'DCID 228 "Equation or Table"', "1", "M", vsc="$Equation"),
        row("2", "> HAS PROPERTIES", "NUM", "", "1-n", "U"),
        row("3", "> R-HAS PROPERTIES", "NUM", "", "1-n", "U"),
    ])

TID_320 = template(
    320, "Image or Spatial Coordinates", extensible=True, significant=True,
    source_url=NEMA.format(320), edition=EDITION, params=("Purpose",),
    groups=(Xor(("1", "2", "3", "6"), text="Exactly one of Rows 1, 2, 3, 6"),
            Xor(("4", "5"), text="Row 4 XOR Row 5")),
    rows=[
        row("1", "INFERRED FROM", "IMAGE", "$Purpose", "1", "MC", cond="XOR Rows 2, 3, 6"),
        row("2", "R-INFERRED FROM", "IMAGE", "", "1", "MC", cond="XOR Rows 1, 3, 6"),
        row("3", "INFERRED FROM", "SCOORD", "$Purpose", "1", "MC", cond="XOR Rows 1, 2, 6"),
        row("4", "> SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 5"),
        row("5", "> R-SELECTED FROM", "IMAGE", "", "1", "MC", cond="XOR Row 4"),
        row("6", "INFERRED FROM", "SCOORD3D", "$Purpose", "1", "MC", cond="XOR Rows 1, 2, 3"),
    ])

TID_321 = template(
    321, "Waveform or Temporal Coordinates", extensible=True, significant=True,
    source_url=NEMA.format(321), edition=EDITION, params=("Purpose",),
    groups=(Xor(("1", "2", "3"), text="Exactly one of Rows 1, 2, 3"),
            Xor(("4", "5"), text="Row 4 XOR Row 5")),
    rows=[
        row("1", "INFERRED FROM", "WAVEFORM", "$Purpose", "1", "MC", cond="XOR Rows 2, 3"),
        row("2", "R-INFERRED FROM", "WAVEFORM", "", "1", "MC", cond="XOR Rows 1, 3"),
        row("3", "INFERRED FROM", "TCOORD", "$Purpose", "1", "MC", cond="XOR Rows 1, 2"),
        row("4", "> SELECTED FROM", "WAVEFORM", "", "1", "MC", cond="XOR Row 5"),
        row("5", "> R-SELECTED FROM", "WAVEFORM", "", "1", "MC", cond="XOR Row 4"),
    ])

TID_1000 = template(
    1000, "Quotation", extensible=True, significant=True, source_url=NEMA.format(1000),
    edition=EDITION, partial=True,
    notes="Rows 1-3 encoded; later rows of the 2026a table were not transcribed.",
    rows=[
        row("1", "HAS OBS CONTEXT", "CODE", 'EV (121001, DCM, "Quotation Mode")', "1", "M",
            vsc='EV (121003, DCM, "Document")\nEV (121004, DCM, "Verbal")'),
        row("2", "HAS OBS CONTEXT", "COMPOSITE", 'EV (121002, DCM, "Quoted Source")', "1",
            "MC", cond="Required if quoted material source is a DICOM composite object"),
        row("3", "HAS OBS CONTEXT", "INCLUDE", 'DTID 1001 "Observation Context"', "1", "M"),
    ])

COMMON_TEMPLATES = (TID_1204, TID_1001, TID_1002, TID_1003, TID_1004, TID_1005, TID_1006,
                    TID_1007, TID_1008, TID_1009, TID_1010, TID_1015, TID_4019, TID_4108,
                    TID_300, TID_301, TID_310, TID_311, TID_312, TID_315, TID_320, TID_321,
                    TID_1000)
