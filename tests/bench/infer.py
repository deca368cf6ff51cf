"""``make bench-infer``: inference throughput of the full-size MMBCD architecture.

The paper recipe's shape with random weights built from configurations (nothing
downloaded): ViT-S/8 (``vit_small_patch8_224.dino``) on 224-px crops, a
``roberta-base``-shaped text encoder, YOLOv8s at 1024 px (``--imgsz`` to change it),
K = 8 ROIs per view, the MLP head.
Studies are 4 views of ``--rows`` x ``--cols`` 14-bit mammograms, already decoded (the
decode of a compressed file is timed separately, once).

CPU: batches of 1 and 2 studies (``--cpu-batches ''`` skips them), median of 3 runs, a
plain float32 path (one view at a time) against the optimised path (views batched across
studies, channels-last detector, bf16 autocast where the CPU has native bf16); prints
``paper recipe on CPU: X.XX s/study``.
CUDA, when present: batches 1..32, plain eager bf16 (one view at a time) against the
optimised path (views batched across studies, channels-last detector, compiled image
encoder, pinned asynchronous uploads). Prints where the time goes per stage. The last
line is ``speedup optimised/eager: X.XX`` (stating whether it was measured on CPU).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import torch
from pydicom.uid import JPEGLSLossless, generate_uid

from ml.bundle import Bundle, CropParams
from ml.detector import DetectorParams
from ml.encoders import load_tokenizer
from ml.pipeline import Pipeline
from ml.preprocess import PreprocessParams
from ml.random_bundle import model_section, random_parts, train_tokenizer
from ml.types import OperatingPoints, StudyInput, ViewInput
from tests.support.mammo import make_mammogram, write_mammogram

VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
DISTINCT_STUDIES = 8  # larger batches repeat these: synthesis of full-size views is slow


@dataclass
class Row:
    device: str
    path: str
    batch: int
    seconds: float  # median wall time of one batch

    @property
    def per_study(self) -> float:
        return self.seconds / self.batch

    @property
    def studies_per_second(self) -> float:
        return self.batch / self.seconds


def full_size_bundle(imgsz: int) -> Bundle:
    """The paper's architecture with random weights, in memory (no 600 MB bundle on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_tokenizer(train_tokenizer(Path(tmp)))
    parts = random_parts("full", vocab_size=50265, seed=0, imgsz=imgsz)
    section = parts.model_section
    return Bundle(path=Path("(random full-size)"), manifest={"digest": "random-full-size"},
                  members=[parts.model.eval()], detector=parts.detector.eval(),
                  tokenizer=tokenizer,
                  preprocess=PreprocessParams(),
                  detector_params=DetectorParams(imgsz=imgsz, k=section["k"]),
                  crop=CropParams(), max_length=128,
                  operating=OperatingPoints.single(0.5))


def make_studies(count: int, rows: int, cols: int) -> list[StudyInput]:
    """``count`` 4-view studies; beyond ``DISTINCT_STUDIES`` the pixels repeat."""
    distinct = []
    for s in range(min(count, DISTINCT_STUDIES)):
        uid = generate_uid()
        views = []
        for v, (laterality, view) in enumerate(VIEWS):
            ds = make_mammogram(study_uid=uid, laterality=laterality, view=view, rows=rows,
                                cols=cols, bits_stored=14, seed=s * 4 + v)
            ds.pixel_array  # noqa: B018 - decoded up front: the benchmark starts from decoded views
            views.append(ViewInput(ds, ds.SOPInstanceUID))
        distinct.append(views)
    return [StudyInput(generate_uid(), distinct[s % len(distinct)],
                       "palpable lump in the left breast, mother had breast cancer at 52")
            for s in range(count)]


def decode_seconds(rows: int, cols: int) -> float:
    """Seconds to read and decode one JPEG-LS lossless view (the usual archive syntax)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mammogram(Path(tmp) / "v.dcm", make_mammogram(rows=rows, cols=cols,
                                                                   bits_stored=14),
                               JPEGLSLossless)
        start = time.perf_counter()
        pydicom.dcmread(path).pixel_array  # noqa: B018
        return time.perf_counter() - start


def measure(pipelines: dict[str, Pipeline], studies: list[StudyInput], batches: list[int],
            repeats: int, device: str) -> dict[str, list[Row]]:
    """Median batch time per path; the paths alternate run by run so that both see the
    same machine load (a shared CPU's load drifts over minutes)."""
    for pipeline in pipelines.values():
        pipeline.predict(studies[:1])  # warm-up: allocator, kernels, compilation
        pipeline.stage_seconds.clear()
    rows: dict[str, list[Row]] = {name: [] for name in pipelines}
    for batch in batches:
        times: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(repeats):
            for name, pipeline in pipelines.items():
                start = time.perf_counter()
                pipeline.predict(studies[:batch])
                times[name].append(time.perf_counter() - start)
        for name in pipelines:
            row = Row(device, name, batch, statistics.median(times[name]))
            rows[name].append(row)
            print(f"{device:4} {name:9} batch {batch:3}: {row.per_study * 1000:9.1f} ms/study "
                  f"{row.studies_per_second:8.2f} studies/s", flush=True)
    return rows


def own_detector(bundle: Bundle) -> Bundle:
    """The bundle with a private copy of the detector: each path sets its memory format."""
    return dataclasses.replace(bundle, detector=copy.deepcopy(bundle.detector))


def print_stages(title: str, stages: dict[str, float]) -> None:
    """Share of each stage (upload, decode, preprocess, detector, crops, image encoder, text
    encoder, fusion); decode is near 0 here, the views come decoded."""
    total = sum(stages.values()) or 1.0
    parts = ", ".join(f"{name} {100 * sec / total:.0f}%"
                      for name, sec in sorted(stages.items(), key=lambda kv: -kv[1]))
    print(f"where the time goes ({title}): {parts}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MMBCD inference benchmark")
    parser.add_argument("--imgsz", type=int,
                        default=model_section("full", 50265)["detector"]["imgsz"],
                        help="detector input size (default: the paper recipe's)")
    parser.add_argument("--rows", type=int, default=3328)
    parser.add_argument("--cols", type=int, default=2560)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-batches", default="1,2")
    parser.add_argument("--gpu-batches", default="1,2,4,8,16,32")
    args = parser.parse_args(argv)
    imgsz = args.imgsz
    cpu_batches = [int(b) for b in args.cpu_batches.split(",") if b]
    gpu_batches = [int(b) for b in args.gpu_batches.split(",") if b]
    print(f"paper recipe, random weights: ViT-S/8, roberta-base, YOLOv8s at {imgsz} px, "
          f"K=8; 4-view studies of {args.rows}x{args.cols} 14-bit views; "
          f"median of {args.repeats}; torch threads {torch.get_num_threads()}")
    print(f"decode of one JPEG-LS lossless view: {decode_seconds(args.rows, args.cols):.3f} s "
          "(not in the figures below)")
    bundle = full_size_bundle(imgsz)
    cuda = torch.cuda.is_available()
    studies = make_studies(max(cpu_batches + (gpu_batches if cuda else [])), args.rows,
                           args.cols)

    results: dict[str, list[Row]] = {}
    if cpu_batches:
        results.update(run_cpu(bundle, studies, cpu_batches, args.repeats))
    if cuda:
        results.update(run_cuda(bundle, studies, gpu_batches, args.repeats))
        eager, best = results["cuda eager"], results["cuda optimised"]
        ratio = max(r.studies_per_second for r in best) / max(
            r.studies_per_second for r in eager)
        print(f"peak: eager {max(r.studies_per_second for r in eager):.1f} studies/s, "
              f"optimised {max(r.studies_per_second for r in best):.1f} studies/s")
        print(f"speedup optimised/eager: {ratio:.2f}")
    elif cpu_batches:
        print("no CUDA device: GPU rows skipped")
        eager, best = results["cpu eager"], results["cpu optimised"]
        ratio = eager[-1].seconds / best[-1].seconds
        print(f"(measured on CPU at batch {best[-1].batch})")
        print(f"speedup optimised/eager: {ratio:.2f} (CPU)")


def run_cpu(bundle: Bundle, studies: list[StudyInput], batches: list[int],
            repeats: int) -> dict[str, list[Row]]:
    cpu_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    print(f"cpu paths: eager = one view at a time, float32; optimised = views batched, "
          f"channels-last detector, {'bf16 autocast' if cpu_bf16 else 'float32 (no native bf16)'}")
    cpu = {"eager": Pipeline(own_detector(bundle), device="cpu", batch_views=1,
                             channels_last=False, bf16=False),
           "optimised": Pipeline(own_detector(bundle), device="cpu", batch_views=8,
                                 channels_last=True, bf16=cpu_bf16)}
    results = {f"cpu {name}": rows for name, rows in
               measure(cpu, studies, batches, repeats, "cpu").items()}
    for name, pipeline in cpu.items():
        print_stages(f"cpu {name}", pipeline.stage_seconds)
    best = min(results["cpu optimised"], key=lambda r: r.per_study)
    eager = min(results["cpu eager"], key=lambda r: r.per_study)
    print(f"paper recipe on CPU ({torch.get_num_threads()} threads): {best.per_study:.2f} "
          f"s/study optimised (batch {best.batch}), {eager.per_study:.2f} s/study eager")
    return results


def run_cuda(bundle: Bundle, studies: list[StudyInput], batches: list[int],
             repeats: int) -> dict[str, list[Row]]:
    gpu = {"eager": Pipeline(own_detector(bundle), device="cuda", batch_views=1,
                             channels_last=False),
           "optimised": Pipeline(own_detector(bundle), device="cuda",
                                 batch_views=4 * max(batches), compile=True,
                                 channels_last=True)}
    results = {f"cuda {name}": rows for name, rows in
               measure(gpu, studies, batches, repeats, "cuda").items()}
    for name, pipeline in gpu.items():
        print_stages(f"cuda {name} bf16", pipeline.stage_seconds)
    return results

if __name__ == "__main__":
    main()
