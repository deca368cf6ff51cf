"""Synthetic mammography studies: DICOM views, clinical histories, HL7 orders and a
manifest with labels and lesion boxes, for training and demonstrating MMBCD without
patient data. ``mmbcd-train synth`` writes a data set; ``load_manifest`` reads it."""
