"""Training MMBCD: the ROI detector (Ultralytics YOLO) and the multi-instance fusion model,
in run folders that ``mmbcd-train export`` turns into a bundle."""
