"""``mmbcd-train ablate``: the paper's Table 2 plus a text-only row, on one data set.

Rows: text only; vision only; vision + text (concatenation); + attention (full MMBCD,
no keyword masking); + keyword masking (full MMBCD as the demo trains it). Every row
trains with the same seed, data, ROIs and settings except its head and masking; each
picks its checkpoint and threshold on the validation split and is measured once on the
test split. ``--reuse RUN`` takes the last row from an existing fusion run instead of
training it again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from ml.bundle import CropParams
from ml.encoders import load_tokenizer
from ml.manifest import resolve_location
from ml.model import MMBCD
from ml.pipeline import resolve_device
from ml.train.export import RUN_RESULT, load_run_model
from ml.train.fusion_run import prepare_caches
from ml.train.fusion_training import (
    FusionTraining,
    encode_texts,
    evaluate_cache,
    predict_cache,
    train_fusion,
)
from ml.train.roi_cache import progress_bar
from ml.train.run_folder import RunFolder
from ml.train.view_cache import ViewCache

log = logging.getLogger(__name__)
ROWS = (("text only", "text", False), ("vision only", "vision", False),
        ("vision + text (concat)", "concat", False), ("+ attention", "attention", False),
        ("+ keyword masking", "attention", True))


def test_row(name: str, model: MMBCD, settings: FusionTraining, test: ViewCache,
             threshold: float, device: Any) -> dict[str, Any]:
    """The metrics of one trained row on the test cache."""
    tokenizer = load_tokenizer(resolve_location(settings.text_location))
    text = encode_texts(model, tokenizer, test.histories, settings.max_length, device)
    probabilities, _ = predict_cache(model, test, CropParams(size=settings.crop_size), text,
                                     device)
    return {"name": name, **evaluate_cache(test, probabilities, threshold),
            "threshold": threshold}


def run_ablation(settings: FusionTraining, data: Path, test: Path, detector_run: Path,
                 out: Path, *, val_fraction: float = 0.2, reuse: Path | None = None,
                 force: bool = False) -> list[dict[str, Any]]:
    """Train and test every row; writes ``ablation.json``, ``ablation.md`` and per-row
    ``metrics.jsonl`` files into ``out``; returns the rows."""
    from ml.evaluate.report import ablation_markdown

    device = resolve_device(settings.device)
    run = RunFolder.create(out, "ablation", {**dataclasses.asdict(settings),
                                             "data": str(data.resolve()),
                                             "test": str(test.resolve()),
                                             "detector_run": str(detector_run.resolve()),
                                             "reuse": str(reuse) if reuse else None,
                                             "val_fraction": val_fraction}, force=force)
    try:
        caches = prepare_caches(data, detector_run, settings, val_fraction, test,
                                with_test=True)
        assert caches.test is not None
        rows = []
        for name, variant, masked in ROWS:
            row_settings = dataclasses.replace(
                settings, variant=variant, keyword_p=settings.keyword_p if masked else 0.0)
            if masked and reuse is not None:
                fusion_run = RunFolder.open(reuse, "fusion")
                model, _ = load_run_model(fusion_run)
                threshold = float(fusion_run.read_json(RUN_RESULT)["threshold"])
                rows.append({**test_row(name, model.to(device), row_settings, caches.test,
                                        threshold, device), "reused": str(reuse)})
                continue
            metrics_file = out / f"metrics_{variant}{'_masked' if masked else ''}.jsonl"
            metrics_file.unlink(missing_ok=True)

            def record(values: dict[str, Any], file: Path = metrics_file) -> None:
                with file.open("a") as handle:
                    handle.write(json.dumps(values) + "\n")

            with progress_bar() as bar:
                task = bar.add_task(f"ablation: {name}", total=None)

                def advance(done: int, total: int, t: Any = task, b: Any = bar) -> None:
                    b.update(t, completed=done, total=total)

                result = train_fusion(row_settings, caches.detector, caches.train, caches.val,
                                      device, on_epoch=record, progress=advance)
            rows.append({**test_row(name, result.model, row_settings, caches.test,
                                    result.threshold, device),
                         "best_epoch": result.best_epoch})
            log.info("event=ablation_row name=%r auc_view=%.4f", name, rows[-1]["view"]["auc"])
        run.write_json("ablation.json", {"rows": rows, "studies": caches.counts})
        (out / "ablation.md").write_text(ablation_markdown(rows) + "\n")
        return rows
    finally:
        run.close()
