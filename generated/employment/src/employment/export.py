"""Export a trained model with ``torch.export``, check parity with eager, measure serving speed (template-owned).

The artifact (``.pt2``) embeds the checkpoint meta (schema, preprocessing, spec) as ``smt_meta.json``, so a
server can encode raw rows exactly as training did.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch.export import Dim

from .atomic import replacing
from .capacity import example_inputs
from .checkpoint import load_trained
from .errors import ModelError
from .model import FeatureSizes
from .schema import FeatureSchema

PARITY_TOLERANCE = 1e-5
META_FILE = "smt_meta.json"


def export(
    checkpoint: str | Path,
    out_file: str | Path,
    schema: FeatureSchema,
    latency_batches: tuple[int, ...] = (1, 64, 4096),
    repeats: int = 20,
) -> dict:
    """Export the best weights of a training dir to ``out_file``; see export_model."""
    if Path(out_file).is_dir():
        raise ModelError(f"--out {out_file} is a directory; give the artifact's file path, e.g. {out_file}/model.pt2")
    model, meta, _ = load_trained(checkpoint, schema)
    return export_model(model, meta, schema, out_file, latency_batches, repeats)


def export_model(
    model: torch.nn.Module, meta: dict, schema: FeatureSchema, out_file: str | Path, latency_batches, repeats: int
) -> dict:
    """``torch.export`` with a dynamic batch dimension, saved with ``meta``; parity-checked after reloading."""
    model.eval()
    sizes = FeatureSizes.from_dict(meta["sizes"])
    example = example_inputs(sizes, schema, batch=8)
    batch = Dim("batch", min=1, max=1 << 20)
    dynamic = ({0: batch}, {0: batch}, [{0: batch} for _ in example[2]])
    program = torch.export.export(model, example, dynamic_shapes=dynamic)
    out_file = Path(out_file)
    with replacing(out_file) as tmp:  # an artifact already at out_file stays whole until the new one is checked
        torch.export.save(program, tmp, extra_files={META_FILE: json.dumps(meta)})
        served = torch.export.load(tmp).module()
        check = example_inputs(sizes, schema, batch=37, seed=1)
        with torch.no_grad():
            diff = float((served(*check) - model(*check)).abs().max())
        if not diff <= PARITY_TOLERANCE:
            raise ModelError(f"exported model differs from eager by {diff:.2e} (> {PARITY_TOLERANCE}); not exported")
    return {
        "artifact": str(out_file),
        "parity_max_abs_diff": diff,
        **serving_speed(served, sizes, schema, latency_batches, repeats),
    }


def serving_speed(module, sizes: FeatureSizes, schema: FeatureSchema, batches, repeats: int) -> dict:
    """Median latency (ms) and throughput (rows/s) of ``module`` at each batch size, on CPU (and CUDA if any)."""
    result = {"latency_ms_p50": {}, "rows_per_second": {}}
    for b in batches:
        ms = _latency_ms(module, sizes, schema, b, repeats)
        result["latency_ms_p50"][str(b)] = ms
        result["rows_per_second"][str(b)] = round(b / (ms / 1e3), 1)
    if torch.cuda.is_available():
        try:
            on_gpu = module.to("cuda")
            result["cuda_latency_ms_p50"] = {
                str(b): _latency_ms(on_gpu, sizes, schema, b, repeats, device="cuda") for b in batches
            }
        except RuntimeError as exc:  # not every exported program moves across devices
            result["cuda_latency_ms_p50"] = f"unavailable: {exc}".splitlines()[0]
        finally:
            module.to("cpu")
    return result


def _latency_ms(
    module, sizes: FeatureSizes, schema: FeatureSchema, batch: int, repeats: int, device: str = "cpu"
) -> float:
    sparse, dense, multi_hot = example_inputs(sizes, schema, batch=batch, seed=2)
    inputs = (sparse.to(device), dense.to(device), [m.to(device) for m in multi_hot])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        module(*inputs)
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            module(*inputs)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 4)
