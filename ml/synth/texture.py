"""Breast tissue texture: power-law (1/f^beta) noise shaped into fat and fibroglandular
tissue, as measured on real mammograms (beta close to 3), not white noise.
"""

from __future__ import annotations

import functools

import numpy as np

from ml.synth.anatomy import ViewAnatomy, upsample


def power_law_spectrum(shape: tuple[int, int], beta: float, rng: np.random.Generator,
                       stretch: float = 1.0) -> np.ndarray:
    """Half (rfft) spectrum of a random field with power ~ 1/f^beta whose inverse
    transform has zero mean and unit variance; spectra add, so a mixture of textures
    costs one inverse FFT.

    ``stretch`` > 1 makes structures elongated along the columns' direction (x), as the
    ducts and Cooper's ligaments that run from the nipple to the chest wall.
    """
    half = (shape[0], shape[1] // 2 + 1)
    white = rng.standard_normal(half, dtype=np.float32) + 1j * rng.standard_normal(
        half, dtype=np.float32)
    return white * _amplitude(shape, beta, stretch)


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator,
                    stretch: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum ~ 1/f^beta."""
    return _inverse(power_law_spectrum(shape, beta, rng, stretch), shape)


def _inverse(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.fft.irfft2(spectrum, s=shape).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _amplitude(shape: tuple[int, int], beta: float, stretch: float) -> np.ndarray:
    rows, cols = shape
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    f = np.sqrt((fx * stretch) ** 2 + fy ** 2)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    # Parseval: the inverse transform's variance is 2 * sum|A|^2 over the full
    # (Hermitian) spectrum / N^2 for unit complex white noise; scale it to 1.
    weight = np.full(amplitude.shape[1], 2.0, np.float32)
    weight[0] = 1.0
    if cols % 2 == 0:
        weight[-1] = 1.0
    variance = 2.0 * float((amplitude ** 2 * weight).sum()) / float(rows * cols) ** 2
    return (amplitude / np.sqrt(variance)).astype(np.float32)


def tissue(anatomy: ViewAnatomy, density: float, rng: np.random.Generator) -> np.ndarray:
    """Attenuation image (float32, 0 = air, ~1 = dense tissue) of the breast without
    findings: fat, fibroglandular tissue concentrated in a cone behind the nipple, the
    pectoral muscle on MLO, the skin line and the compressed-thickness roll-off."""
    radius, thickness, pectoral = anatomy.radius, anatomy.thickness, anatomy.pectoral
    small = radius.shape
    strands = power_law_spectrum(small, 2.6, rng, stretch=3.5)
    # Mix in the frequency domain: one inverse transform per texture the image needs.
    glandular_field = _inverse(0.7 * power_law_spectrum(small, 3.0, rng) + 0.5 * strands, small)
    fat_field = _inverse(0.04 * power_law_spectrum(small, 2.2, rng) + 0.05 * strands, small)

    # Glandular tissue fills a cone from the retro-areolar region towards the chest
    # wall, sparing the subcutaneous fat near the outline.
    x = anatomy.coarse_x[None, :] / anatomy.depth_px
    cone = np.clip((0.92 - radius) / 0.35, 0.0, 1.0) * np.clip(x * 4.0, 0.0, 1.0)
    threshold = 1.1 - 2.2 * density  # denser breast: more of the field is glandular
    gland = cone / (1.0 + np.exp(-(glandular_field - threshold) * 3.0))
    image = thickness * (0.30 + fat_field + 0.42 * gland)
    if anatomy.view == "MLO":
        muscle = 0.58 + 0.8 * fat_field
        image = image * (1.0 - pectoral) + muscle * pectoral
    # Skin: a slightly denser band along the outline.
    skin_px = max(1.0, 1.5 / anatomy.spacing_mm)
    image += 0.06 * np.clip(1.0 - np.abs(radius - 1.0) * anatomy.depth_px / skin_px, 0.0, 1.0)
    full = upsample(image.astype(np.float32), anatomy.rows, anatomy.cols)
    full *= anatomy.mask
    return full
