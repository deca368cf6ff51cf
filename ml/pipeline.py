"""Inference: studies (DICOM views + history) -> per view / breast / study probabilities.

``Pipeline(bundle, device).predict(studies)`` prepares every view on the CPU, then runs
the detector, the crops, the image encoder and the fusion over batches of views taken
across studies; each study's history is encoded once for all its views. A view that
cannot be read or prepared gets ``ViewPrediction(error=...)`` and the other views of the
study are still scored. Breast = max over its views, study = max over breasts (a view of
unknown laterality counts for the study only). An ensemble bundle runs every member on the
same ROIs and averages the members' malignancy scores (and ROI attention) per view before
calibration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ml.bundle import Bundle, load_bundle
from ml.crops import crop_rois
from ml.detector import Rois, detect
from ml.encoders import tokenize
from ml.preprocess import PreparedView, ViewPlan, plan_view, prepare_view, read_dataset
from ml.types import RoiPrediction, StudyInput, StudyPrediction, ViewPrediction
from ml.view_text import view_text
from ml.views import laterality_of, view_of

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA device when present, else the CPU; otherwise as given.

    Raises ``ValueError`` when a CUDA device is asked for and none is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA device is available")
    return chosen


@dataclass
class _Pending:
    study: int  # index into the studies of this call
    index: int  # index of the view within its study
    uid: str
    prepared: PreparedView | ViewPlan  # a plan when the display gather runs on the device


class Pipeline:
    """A loaded bundle on a device, ready to score studies.

    ``batch_views``: views per detector/encoder batch (1 runs each view alone).
    ``compile``: ``torch.compile`` the image encoder (CUDA only; pays off for long runs).
    ``channels_last``: NHWC convolutions for the detector (faster with CUDA tensor cores).
    ``bf16``: bfloat16 autocast for the two encoders (the ViT on every ROI and the text
    encoder), where the time goes; default on CUDA only, refused on a CPU without native
    bf16 (AVX512-BF16, AMX). The detector, the ROI ranking, the confidence feature and the
    fusion always run in float32 (TF32 off for the detector's convolutions on CUDA): which
    ROIs a view gets is a discrete choice among near-tied weak proposals that rounding
    would change, and the fusion head is cheap.
    ``stage_seconds`` accumulates wall time per stage (decode, preprocess, upload,
    detector, crops, text encoder, image encoder, fusion) for benchmarks.
    """

    def __init__(self, bundle: Bundle | Path | str | None = None, device: str = "auto",
                 batch_views: int = 16, compile: bool = False,
                 channels_last: bool | None = None, bf16: bool | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.device = resolve_device(device)
        self.batch_views = max(1, batch_views)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16
        if self.bf16 and self.device.type == "cpu" and \
                not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise ValueError("bf16 requested on a CPU without native bfloat16 support")
        self.stage_seconds: dict[str, float] = defaultdict(float)
        if self.device.type == "cuda":  # float32 convolutions stay float32 (no TF32)
            torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]
        self.members = [m.to(self.device).eval() for m in self.bundle.members]
        self.detector = self.bundle.detector.to(self.device).eval()
        nhwc = channels_last if channels_last is not None else self.device.type == "cuda"
        self.detector = self.detector.to(
            memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        # On a GPU the stored pixels travel (2 bytes/pixel, not 4) and the display LUT is
        # applied there; on the CPU the same gather runs in numpy.
        self.display_on_device = self.device.type == "cuda"
        self._image_encoders: list[torch.nn.Module] = [m.image_encoder for m in self.members]
        if compile and self.device.type == "cuda":  # wrappers: the bundle's modules untouched
            self._image_encoders = [torch.compile(encoder, dynamic=True)  # type: ignore[misc]
                                    for encoder in self._image_encoders]

    @contextlib.contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":  # kernels run asynchronously: wait to time them
            torch.cuda.synchronize(self.device)
        self.stage_seconds[name] += time.perf_counter() - start

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, studies: list[StudyInput]) -> list[StudyPrediction]:
        """Score ``studies``; one ``StudyPrediction`` per input, in the same order."""
        views: list[list[ViewPrediction | None]] = [[None] * len(s.views) for s in studies]
        refs = [(s, v) for s, study in enumerate(studies) for v in range(len(study.views))]
        with torch.inference_mode():
            with self._stage("text encoder"):
                texts = self._encode_histories(studies)  # (S, d_text)
            # Views are read and prepared one batch at a time, so memory holds at most
            # batch_views full-resolution images whatever the number of studies.
            for start in range(0, len(refs), self.batch_views):
                pending: list[_Pending] = []
                for s, v in refs[start:start + self.batch_views]:
                    view = studies[s].views[v]
                    prepared = self._prepare(view.source, view.sop_instance_uid)
                    if isinstance(prepared, ViewPrediction):
                        views[s][v] = prepared
                    else:
                        pending.append(_Pending(s, v, view.sop_instance_uid, prepared))
                if pending:
                    for item, prediction in zip(pending, self._score(pending, texts),
                                                strict=True):
                        views[item.study][item.index] = prediction
        return [self._study_prediction(study, [v for v in vs if v is not None])
                for study, vs in zip(studies, views, strict=True)]

    def _prepare(self, source: object,
                 uid: str) -> PreparedView | ViewPlan | ViewPrediction:
        laterality = view = None
        try:
            with self._stage("decode"):
                ds = read_dataset(source)  # type: ignore[arg-type]
                laterality, view = laterality_of(ds), view_of(ds)
                ds.pixel_array  # noqa: B018 - decoded once here, cached by pydicom
            with self._stage("preprocess"):
                if self.display_on_device:
                    return plan_view(ds, self.bundle.preprocess)
                return prepare_view(ds, self.bundle.preprocess)
        except Exception as exc:  # one bad view must not stop the study: reported per view
            log.warning("event=view_not_scored sop_instance_uid=%s error=%s", uid,
                        type(exc).__name__)
            return ViewPrediction(sop_instance_uid=uid, laterality=laterality, view=view,
                                  probability=None, error=f"{type(exc).__name__}: {exc}")

    def _encode_histories(self, studies: list[StudyInput]) -> list[torch.Tensor]:
        """Per member, the encoded text of every study, and with the ``side`` context of
        each of its sides: row ``_text_row(study, laterality)``."""
        if not studies:
            return []
        texts = [view_text(s.history, side, self.bundle.text_context)
                 for s in studies for side in self._sides()]
        ids, mask = tokenize(self.bundle.tokenizer, texts, self.bundle.max_length, self.device)
        with self._autocast():
            return [member.text_encoder(ids, mask).float()  # (S * sides, d_text)
                    for member in self.members]

    def _sides(self) -> tuple[str | None, ...]:
        return (None,) if self.bundle.text_context == "none" else ("R", "L", None)

    def _text_row(self, study: int, laterality: str | None) -> int:
        sides = self._sides()
        return study * len(sides) + sides.index(laterality if laterality in sides else None)

    def _score(self, chunk: list[_Pending],
               texts: list[torch.Tensor]) -> Iterator[ViewPrediction]:
        with self._stage("upload"):
            ready = [self._upload(item.prepared) for item in chunk]
            images = [view.image for view in ready]
        with self._stage("detector"):
            rois: list[Rois] = detect(self.detector, images, self.bundle.detector_params)
        crop = self.bundle.crop
        with self._stage("crops"):
            crops = torch.stack([crop_rois(image, r.boxes, size=crop.size, margin=crop.margin,
                                           min_side=crop.min_side, mean=crop.mean,
                                           std=crop.std)
                                 for image, r in zip(images, rois, strict=True)])  # (B, K, 3, S, S)
            mask = torch.stack([r.mask for r in rois])  # (B, K)
            scores = torch.stack([r.scores for r in rois])  # (B, K)
        rows = torch.tensor([self._text_row(item.study, view.laterality)
                             for item, view in zip(chunk, ready, strict=True)],
                            device=self.device)
        malignancy, attention = [], []
        for member, encoder, member_texts in zip(self.members, self._image_encoders, texts,
                                                 strict=True):
            with self._stage("image encoder"):
                with self._autocast():
                    embedded = encoder(crops[mask]).float()  # (N_real, d_image)
                roi_features = member.roi_features(embedded, mask, scores)
            with self._stage("fusion"):
                logits, weights = member.fusion(roi_features, mask, member_texts[rows])
            malignancy.append(logits.float().softmax(dim=-1)[:, 1])  # (B,)
            attention.append(weights.float())  # (B, K)
        view_scores = torch.stack(malignancy).mean(dim=0).cpu().numpy()
        probabilities = self.bundle.calibration.view(view_scores).tolist()
        roi_attention = torch.stack(attention).mean(dim=0).cpu()
        for b, item in enumerate(chunk):
            r = rois[b]
            rx0, ry0, rx1, ry1 = ready[b].region
            boxes, confidences = r.boxes.float().cpu(), r.scores.float().cpu()
            roi_list = [RoiPrediction(box=ready[b].to_stored(tuple(boxes[j].tolist())),
                                      detector_score=float(confidences[j]),
                                      attention=float(roi_attention[b, j]),
                                      whole_breast=r.whole_breast)
                        for j in range(int(r.mask.sum()))]
            yield ViewPrediction(sop_instance_uid=item.uid, laterality=ready[b].laterality,
                                 view=ready[b].view, probability=probabilities[b],
                                 score=float(view_scores[b]), rois=roi_list,
                                 breast_region=(float(rx0), float(ry0), float(rx1), float(ry1)))

    def _upload(self, prepared: PreparedView | ViewPlan) -> PreparedView:
        """The view with its image as a tensor on the device."""
        if isinstance(prepared, PreparedView):
            return dataclasses.replace(prepared, image=self._to_device(
                torch.from_numpy(prepared.image)))
        stored = np.ascontiguousarray(prepared.stored)
        unsigned16 = stored.dtype == np.uint16
        if unsigned16:  # same bytes as int16 (torch's uint16 has few kernels); unmasked below
            stored = stored.view(np.int16)
        elif stored.dtype not in (np.int16, np.uint8, np.int8):
            stored = stored.astype(np.int32)
        values = self._to_device(torch.from_numpy(stored)).to(torch.int32)
        if unsigned16:
            values = values & 0xFFFF
        lut = self._to_device(torch.from_numpy(prepared.lut))
        index = (values - prepared.low).clamp_(0, lut.numel() - 1)  # stray high bits clip
        image = lut[index]  # (H, W) float32 in [0, 1]
        if prepared.flipped:
            image = image.flip(1)
        return PreparedView(image=image, region=prepared.region, flipped=prepared.flipped,
                            laterality=prepared.laterality, view=prepared.view)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # page-locked memory lets the copy run asynchronously
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _study_prediction(self, study: StudyInput,
                          views: list[ViewPrediction]) -> StudyPrediction:
        """Breast and study probabilities: each level's calibration of its highest raw view
        score (a view of unknown laterality counts for the study only)."""
        raw: dict[str, float] = {}
        scored = [v for v in views if v.score is not None]
        for v in scored:
            if v.laterality in ("R", "L"):
                raw[v.laterality] = max(raw.get(v.laterality, 0.0), v.score or 0.0)
        highest = max((v.score or 0.0 for v in scored), default=None)
        calibration = self.bundle.calibration
        return StudyPrediction(
            study_uid=study.study_uid,
            probability=None if highest is None else calibration.study.one(highest),
            breasts={side: calibration.breast.one(score) for side, score in raw.items()},
            views=views, bundle_digest=self.bundle.digest,
            history_used=bool(study.history.strip()), operating=self.bundle.operating,
            marks=self.bundle.study_marks)
