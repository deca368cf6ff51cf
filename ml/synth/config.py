"""What a synthetic data set looks like: the settings of ``mmbcd-train synth``.

Kept free of numerical imports so the command line can show its defaults quickly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthConfig:
    """What a data set looks like; every field is a ``mmbcd-train synth`` option."""

    sizes: tuple[tuple[int, int], ...] = ((1024, 832),)  # (rows, cols) drawn per study
    bits_stored: tuple[int, ...] = (12, 14, 16)  # drawn per study (one device per study)
    monochrome1_fraction: float = 0.25
    malignant_fraction: float = 0.5
    subtle_fraction: float = 0.20  # of cancers: low contrast
    occult_fraction: float = 0.06  # of cancers: not visible on either view
    one_view_fraction: float = 0.08  # of visible cancers: seen on one view only
    benign_finding_rate: float = 0.5  # chance that a breast has a benign look-alike
    bilateral_fraction: float = 0.05  # of malignant studies: cancer in both breasts
    history_signal: float = 1.2  # 0: histories carry no signal; 1.5 at most

    def __post_init__(self) -> None:
        for rows, cols in self.sizes:
            if not (64 <= rows <= 4096 and 64 <= cols <= 4096):
                raise ValueError(f"image size {rows}x{cols} outside 64..4096")
        for bits in self.bits_stored:
            if not 12 <= bits <= 16:
                raise ValueError(f"bits stored {bits} outside 12..16")
        for name in ("monochrome1_fraction", "malignant_fraction", "subtle_fraction",
                     "occult_fraction", "one_view_fraction", "benign_finding_rate",
                     "bilateral_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if not 0.0 <= self.history_signal <= 1.5:
            raise ValueError("history_signal must be within 0..1.5")
        if self.subtle_fraction + self.occult_fraction > 1.0:
            raise ValueError("subtle_fraction + occult_fraction must not exceed 1")
