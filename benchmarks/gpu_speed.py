"""GPU speed of a generated dcn_v2 package through its own ``train`` command (run on a CUDA machine).

The package is rendered beforehand (``smt``'s renderer is not needed on the GPU machine):
    .venv/bin/python -m benchmarks.gpu_speed --render build/gpu        # here
    python3 -m benchmarks.gpu_speed --package build/gpu/speed_dcn_v2 --out DIR   # on the GPU machine
Setup of issue #5: Criteo-shaped data, cardinalities capped at 1M, embedding 16, DCNv2 rank 64 × 2, MLP
512-256; one epoch per batch size; samples/s, validation NE, peak GPU memory, and a roofline estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETUP = {"cap": 1_000_000, "embedding_dim": 16, "mlp": (512, 256), "dcn_rank": 64, "dcn_layers": 2}


def render(out: Path) -> None:
    from scaffold.speed import SpeedSetup, render_package
    from scaffold.template import TemplateRepo

    setup = SpeedSetup(**SETUP)
    print(render_package(TemplateRepo.find(Path.cwd()), out.resolve(), "dcn_v2", setup))


def measure(package: Path, out: Path, rows: int, batches: list[int], extra: list[str]) -> None:
    import torch

    from scaffold.speed import SpeedSetup, make_dataset

    data = out.parent / "gpu-data" if not os.environ.get("DATA") else Path(os.environ["DATA"])
    start = time.perf_counter()
    make_dataset(data, SpeedSetup(rows=rows, **SETUP))
    print(f"data: {rows:,} rows in {time.perf_counter() - start:.1f} s", flush=True)
    env = {**os.environ, "PYTHONPATH": str(package / "src")}
    results = []
    for batch in batches:
        run = out / f"run-{batch}"
        args = [sys.executable, "-m", package.name, "--features", str(data / "features.yaml"), "train"]
        args += ["--train", str(data / "train.parquet"), "--valid", str(data / "valid.parquet"), "--out", str(run)]
        args += ["--quiet", "epochs=1", f"batch_size={batch}", "device=cuda", "lr_scaling=sqrt", "warmup_steps=10"]
        started = time.perf_counter()
        proc = subprocess.run([*args, *extra], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(f"batch {batch}: failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        summary = json.loads(proc.stdout)
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        steps = [r for r in log if "loss" in r and r["epoch"] == 0]
        steady = None
        if len(steps) >= 3:  # steady state: first to last logged step of epoch 0 (no warm-up, eval or save)
            first, last = steps[0], steps[-1]
            steady = (last["step"] - first["step"]) * batch / max(last["seconds"] - first["seconds"], 1e-9)
        record = {
            "batch_size": batch,
            "samples_per_second_epoch": summary["samples_per_second"],
            "samples_per_second_steady": steady,
            "train_seconds": summary["train_seconds"],
            "wall_seconds": round(wall, 1),
            "valid_ne": summary["valid"]["label"]["ne"],
            "extra": extra,
        }
        print(json.dumps(record), flush=True)
        results.append(record)
    a, b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16), torch.randn(
        8192, 8192, device="cuda", dtype=torch.bfloat16
    )
    a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    peak = 2 * 8192**3 * 10 / (time.perf_counter() - t) / 1e12
    payload = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "bf16_matmul_tflops": peak}
    payload.update(setup=SETUP, rows=rows, results=results)
    (out / "gpu_speed.json").write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload), flush=True)


def profile(package: Path, batch: int, steps: int = 20) -> None:
    """Top CUDA/CPU ops of ``steps`` training steps of the package at ``batch`` (data from $DATA)."""
    import importlib

    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sys.path.insert(0, str(package / "src"))
    name = package.name
    mod = {
        m: importlib.import_module(f"{name}.{m}")
        for m in ("cache", "schema", "config", "model", "builder", "spec", "train")
    }
    data_dir = Path(os.environ["DATA"])
    schema = mod["schema"].load_schema(data_dir / "features.yaml")
    pre, data = mod["cache"].encode_file(data_dir / "train.parquet", schema)
    sparse, multi = pre.cardinalities()
    sizes = mod["model"].FeatureSizes(tuple(sparse), tuple(multi), schema.dense_width)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = mod["config"].config_from_dict({"batch_size": batch, "device": device})
    run = mod["train"]._Run(config, {}, Path("/tmp/profile-run"), mod["builder"].build_model(mod["spec"].SPEC, sizes))
    gpu = mod["train"].stage_on_device(data, run.device)
    batches = [gpu.rows(torch.randint(0, len(gpu), (batch,), device=run.device)) for _ in range(steps + 5)]
    for b in batches[:5]:
        run._step(b, 1000)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for b in batches[5:]:
        run._step(b, 1000)
    sync()
    per_step = (time.perf_counter() - start) / steps
    print(f"profile batch {batch}: {per_step * 1e3:.2f} ms/step = {batch / per_step:,.0f} samples/s (data on GPU)")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for b in batches[5:15]:
            run._step(b, 1000)
        sync()
    sort = "cuda_time_total" if device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=18))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render")
    parser.add_argument("--package")
    parser.add_argument("--out", default="build/gpu-out")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--batches", default="4096,16384,65536")
    parser.add_argument("--extra", default="", help="more key=value training options")
    parser.add_argument("--profile", type=int, default=0, help="profile the train step at this batch size")
    args = parser.parse_args()
    if args.render:
        render(Path(args.render))
        return
    if args.profile:
        profile(Path(args.package), args.profile)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    measure(Path(args.package), out, args.rows, [int(b) for b in args.batches.split(",")], args.extra.split())


if __name__ == "__main__":
    main()
