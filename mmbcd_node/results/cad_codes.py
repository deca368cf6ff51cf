"""The coded concepts of the Mammography CAD SR (PS3.16 TID 4000 and its sub-templates).

Every concept comes from pydicom's copy of the PS3.16 code tables, by keyword, so a
wrong code or a value from outside its context group fails at import, not at a
workstation. PS3.16 puts zero-width spaces in some meanings ("Impression/Recommendation");
they are dropped, as a Code Meaning (LO) carries plain text.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import Code, codes


def _plain(code: Code) -> CodedConcept:
    return CodedConcept(code.value, code.scheme_designator, code.meaning.replace("\u200b", ""))


# Structure (TID 4000, 4001, 4003, 4004, 4005, 4006, 4015-4020).
MAMMOGRAPHY_CAD_REPORT = _plain(codes.DCM.MammographyCADReport)
LANGUAGE = _plain(codes.DCM.LanguageOfContentItemAndDescendants)
ENGLISH = CodedConcept("en-US", "RFC5646", "English (United States)")
IMAGE_LIBRARY = _plain(codes.DCM.ImageLibrary)
FINDINGS_SUMMARY = _plain(codes.DCM.CADProcessingAndFindingsSummary)
INDIVIDUAL_IMPRESSION = _plain(codes.DCM.IndividualImpressionRecommendation)
COMPOSITE_FEATURE = _plain(codes.DCM.CompositeFeature)
COMPOSITE_TYPE = _plain(codes.DCM.CompositeType)
SCOPE_OF_FEATURE = _plain(codes.DCM.ScopeOfFeature)
SINGLE_IMAGE_FINDING = _plain(codes.DCM.SingleImageFinding)
RENDERING_INTENT = _plain(codes.DCM.RenderingIntent)
CERTAINTY_OF_FINDING = _plain(codes.DCM.CertaintyOfFinding)
PROBABILITY_OF_CANCER = _plain(codes.DCM.ProbabilityOfCancer)
CENTER = _plain(codes.DCM.Center)
OUTLINE = _plain(codes.DCM.Outline)
SUMMARY_OF_DETECTIONS = _plain(codes.DCM.SummaryOfDetections)
SUMMARY_OF_ANALYSES = _plain(codes.DCM.SummaryOfAnalyses)
SUCCESSFUL_DETECTIONS = _plain(codes.DCM.SuccessfulDetections)
FAILED_DETECTIONS = _plain(codes.DCM.FailedDetections)
SUCCESSFUL_ANALYSES = _plain(codes.DCM.SuccessfulAnalyses)
FAILED_ANALYSES = _plain(codes.DCM.FailedAnalyses)
DETECTION_PERFORMED = _plain(codes.DCM.DetectionPerformed)
ANALYSIS_PERFORMED = _plain(codes.DCM.AnalysisPerformed)
ALGORITHM_NAME = _plain(codes.DCM.AlgorithmName)
ALGORITHM_VERSION = _plain(codes.DCM.AlgorithmVersion)
ALGORITHM_PARAMETERS = _plain(codes.DCM.AlgorithmParameters)
PERCENT = CodedConcept("%", "UCUM", "Percent")

# Image library entry descriptors (TID 4020).
IMAGE_LATERALITY = _plain(codes.DCM.ImageLaterality)
IMAGE_VIEW = _plain(codes.DCM.ImageView)
IMAGE_VIEW_MODIFIER = _plain(codes.DCM.ImageViewModifier)
ORIENTATION_ROW = _plain(codes.DCM.PatientOrientationRow)
ORIENTATION_COLUMN = _plain(codes.DCM.PatientOrientationColumn)
STUDY_DATE = _plain(codes.DCM.StudyDate)
STUDY_TIME = _plain(codes.DCM.StudyTime)
CONTENT_DATE = _plain(codes.DCM.ContentDate)
CONTENT_TIME = _plain(codes.DCM.ContentTime)
HORIZONTAL_SPACING = _plain(codes.DCM.HorizontalPixelSpacing)
VERTICAL_SPACING = _plain(codes.DCM.VerticalPixelSpacing)
MILLIMETRE = CodedConcept("mm", "UCUM", "millimeter")
# CID 6022 Side: the breast, not the generic left/right of CID 244.
BREAST_SIDE = {"L": _plain(codes.cid6022.LeftBreast), "R": _plain(codes.cid6022.RightBreast)}

# Values.
# CID 6014: a region found on one image is a density (BI-RADS: a mass is seen in two
# projections); CID 6016: the breast-level feature those regions make up.
DENSITY = _plain(codes.cid6014.MammographyBreastDensity)
BREAST_REGION = _plain(codes.cid6016.SelectedRegion)
RELATED_SPATIALLY = _plain(codes.cid6035.TargetContentItemsAreRelatedSpatially)
ON_THE_ONLY_IMAGE = _plain(codes.cid6036.FeatureDetectedOnTheOnlyImage)
ON_ONE_OF_THE_IMAGES = _plain(codes.cid6036.FeatureDetectedOnOnlyOneOfTheImages)
ON_MULTIPLE_IMAGES = _plain(codes.cid6036.FeatureDetectedOnMultipleImages)
# CID 6043: the model's malignancy probability is an individual impression analysis.
IMPRESSION_ANALYSIS = _plain(codes.cid6043.IndividualImpressionRecommendationAnalysis)

# CID 6034 Intended Use of CAD Output.
PRESENTATION_REQUIRED = _plain(
    codes.cid6034.PresentationRequiredRenderingDeviceIsExpectedToPresent)
PRESENTATION_OPTIONAL = _plain(codes.cid6034.PresentationOptionalRenderingDeviceMayPresent)

# CID 6042 Status of Results.
SUCCEEDED = _plain(codes.cid6042.Succeeded)
PARTIALLY_SUCCEEDED = _plain(codes.cid6042.PartiallySucceeded)
FAILED = _plain(codes.cid6042.Failed)
NOT_ATTEMPTED = _plain(codes.cid6042.NotAttempted)

# CID 6047 CAD Processing and Findings Summary.
ALL_SUCCEEDED_WITHOUT_FINDINGS = _plain(codes.cid6047.AllAlgorithmsSucceededWithoutFindings)
ALL_SUCCEEDED_WITH_FINDINGS = _plain(codes.cid6047.AllAlgorithmsSucceededWithFindings)
NOT_ALL_SUCCEEDED_WITHOUT_FINDINGS = _plain(
    codes.cid6047.NotAllAlgorithmsSucceededWithoutFindings)
NOT_ALL_SUCCEEDED_WITH_FINDINGS = _plain(codes.cid6047.NotAllAlgorithmsSucceededWithFindings)
NONE_SUCCEEDED = _plain(codes.cid6047.NoAlgorithmsSucceededWithoutFindings)
