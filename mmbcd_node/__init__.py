"""mmbcd-node: a DICOM/HL7 node that runs the MMBCD model and returns DICOM results."""

__version__ = "0.1.0"
MANUFACTURER = "mmbcd-node project"
MODEL_NAME = "mmbcd-node"
