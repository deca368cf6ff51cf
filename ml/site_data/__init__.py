"""A site's own mammograms into the training format: ``mmbcd-train import``."""
