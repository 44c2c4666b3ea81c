"""GPU speed of a generated dcn_v2 package through its own ``train`` command (run on a CUDA machine).

The package is rendered beforehand (``smt``'s renderer is not needed on the GPU machine):
    .venv/bin/python -m benchmarks.gpu_speed --render build/gpu        # here
    python3 -m benchmarks.gpu_speed --package build/gpu/speed_dcn_v2 --out DIR [--peer DCN]   # on the GPU machine
Setup of issue #5: Criteo-shaped data, cardinalities capped at 1M, embedding 16, DCNv2 rank 64 × 2, MLP
512-256. Every batch size trains with the template's default recipe (only ``batch_size``, ``epochs`` and
``device=cuda`` are set: ``lr_scaling=auto`` scales from ``reference_batch_size``), and every recipe of
``--recipes`` at the larger ones. The first batch size
trains twice, with a cold then a warm encoded-data cache (its own, under DIR); the others run warm. Each run
reports where the process's wall time went (the template's phases), the train-loop and whole-process
throughput (samples / process wall seconds, what a user sees) and validation NE. ``--profile-batches``
times the train step alone on GPU-resident batches, eager and with ``compile=true``, and prints the top ops.
Writes ``DIR/gpu_speed.json`` and ``DIR/gpu_speed.md``. ``--merge A/gpu_speed.json,B/gpu_speed.json --out DIR``
reports runs of separate processes (a sweep of ``--extra`` options) as one, each labelled by its options.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scaffold.results import write_results

SETUP = {"cap": 1_000_000, "embedding_dim": 16, "mlp": (512, 256), "dcn_rank": 64, "dcn_layers": 2}
PHASES = ("startup", "imports", "read", "fit", "encode", "cache_write", "cache_load", "stage", "build", "steps")
PHASES += ("evaluate", "checkpoint", "other")
DEVICE = os.environ.get("GPU_SPEED_DEVICE", "cuda")  # cpu: a smoke test of this script on a machine without one


def render(out: Path) -> None:
    from scaffold.speed import SpeedSetup, render_package
    from scaffold.template import TemplateRepo

    setup = SpeedSetup(**SETUP)
    print(render_package(TemplateRepo.find(Path.cwd()), out.resolve(), "dcn_v2", setup))


def train_run(package: Path, data: Path, run: Path, batch: int, epochs: int, cache: Path, extra: list[str]) -> dict:
    """One ``train`` process at ``batch``: its summary, phases (with interpreter startup) and throughputs."""
    from scaffold.package_cli import PackageCLI
    from scaffold.speed import template_version

    env = {**os.environ, "PYTHONPATH": str(package / "src"), "SMT_DATA_CACHE": str(cache)}
    args = [sys.executable, "-m", package.name, "--features", str(data / "features.yaml")]
    args += PackageCLI.train_args(data / "train.parquet", data / "valid.parquet", run)
    args += [f"epochs={epochs}", f"batch_size={batch}", f"device={DEVICE}", *extra]
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"batch {batch}: train failed\n{proc.stderr[-3000:]}")
    summary = PackageCLI.parse_train(proc.stdout)
    samples = summary.samples_per_second * summary.train_seconds
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r and r["epoch"] == 0]
    steady = None
    if len(steps) >= 3:  # first to last logged step of epoch 0: no warm-up, evaluation or checkpoint inside
        first, last = steps[0], steps[-1]
        steady = (last["step"] - first["step"]) * batch / max(last["seconds"] - first["seconds"], 1e-9)
    label = summary.valid["label"]
    phases = {**summary.phases, "startup": max(0.0, wall - (summary.process_seconds or 0.0))}
    return {
        "batch_size": batch,
        "epochs": epochs,
        "steps": summary.steps,
        "samples": round(samples),
        "loop_samples_per_second": summary.samples_per_second,
        "steady_samples_per_second": steady,
        "process_samples_per_second": round(samples / wall, 1),
        "train_seconds": summary.train_seconds,
        "wall_seconds": round(wall, 2),
        "phases": {k: round(v, 3) for k, v in phases.items()},
        "valid_ne": label.ne,
        "valid_ne_by_epoch": [r["valid"]["label"]["ne"] for r in log if "valid" in r],
        "valid_ne_train": label.ne_train,
        "valid_auc": label.auc,
        "valid_calibration": label.calibration,
        "extra": extra,
        "template": template_version(package),
    }


def load_for_steps(package: Path, data: Path) -> tuple[dict, object, object]:
    """The rendered ``package``'s modules by name (cache, schema, config, model, builder, spec, train), its
    encoding of ``data/train.parquet`` and the model's ``FeatureSizes``: what timing its train step needs."""
    import importlib

    sys.path.insert(0, str(package / "src"))
    mod = {
        m: importlib.import_module(f"{package.name}.{m}")
        for m in ("cache", "schema", "config", "model", "builder", "spec", "train")
    }
    schema = mod["schema"].load_schema(data / "features.yaml")
    pre, encoded = mod["cache"].encode_file(data / "train.parquet", schema)
    sparse, multi = pre.cardinalities()
    return mod, encoded, mod["model"].FeatureSizes(tuple(sparse), tuple(multi), schema.dense_width)


def step_run(loaded: tuple, options: dict, work: Path):
    """A fresh model of the package ``loaded`` (what ``load_for_steps`` gives) and its training run at the training
    ``options``: what a benchmark of the bare step drives with ``run._step``. ``work``: the run's output folder.
    Seed torch before it for a seeded model."""
    mod, _, sizes = loaded
    config = mod["config"].config_from_dict(options)
    return mod["train"]._Run(config, {}, work, mod["builder"].build_model(mod["spec"].SPEC, sizes))


def ensure_dataset(data: Path, rows: int) -> None:
    """The Criteo-shaped set of ``SETUP`` with ``rows`` train rows in ``data``, made unless it is already there:
    a rewrite would change the files, and so miss the encoded-data cache."""
    from scaffold.speed import SpeedSetup, make_dataset

    if not _has_rows(data / "train.parquet", rows):
        make_dataset(data, SpeedSetup(rows=rows, **SETUP))


def step_rate(
    package: Path, data: Path, batch: int, compiled: bool, work: Path, steps: int = 20, show_ops: bool = False
) -> dict:
    """The train step alone at ``batch`` on GPU-resident batches (after warm-up): ms/step and samples/s. ``work``:
    an empty folder, the run's output folder (a step writes nothing there)."""
    import torch

    loaded = load_for_steps(package, data)
    mod, encoded, _ = loaded
    run = step_run(loaded, {"batch_size": batch, "device": DEVICE, "compile": compiled}, work)
    gpu = mod["train"].stage_on_device(encoded, run.device)
    warmup = 10 if compiled else 5
    batches = [gpu.rows(torch.randint(0, len(gpu), (batch,), device=run.device)) for _ in range(steps + warmup)]
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    for b in batches[:warmup]:
        run._step(b, 1000, batch)
    sync()
    start = time.perf_counter()
    for b in batches[warmup:]:
        run._step(b, 1000, batch)
    sync()
    per_step = (time.perf_counter() - start) / steps
    result = {"batch_size": batch, "compile": compiled, "ms_per_step": round(per_step * 1e3, 3)}
    result["samples_per_second"] = round(batch / per_step)
    result["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else 0
    print(json.dumps(result), flush=True)
    if show_ops:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for b in batches[warmup : warmup + 10]:
                run._step(b, 1000, batch)
            sync()
        sort = "cuda_time_total" if run.device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=18), flush=True)
    return result


def peer_run(data: Path, model: str, batch: int) -> dict:
    """DeepCTR-Torch ``model`` one epoch on cuda with its own ``fit`` (``scaffold.peers.deepctr`` speed mode)."""
    setup = {"batch_size": batch, "embedding_dim": SETUP["embedding_dim"], "mlp": list(SETUP["mlp"])}
    setup["dcn_layers"] = SETUP["dcn_layers"]
    args = [sys.executable, "-m", "scaffold.peers.deepctr", "--data", str(data), "--model", model]
    args += ["--setup", json.dumps(setup), "--device", "cuda:0" if DEVICE == "cuda" else "cpu"]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"peer": f"DeepCTR-Torch {model}", "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"peer": f"DeepCTR-Torch {model}", "batch_size": batch, "wall_seconds": round(wall, 2), **result}


def _has_rows(path: Path, rows: int) -> bool:
    import pyarrow.parquet as pq

    return path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows


def bf16_matmul_tflops() -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * 10 / (time.perf_counter() - start) / 1e12


def _delta(run: dict, base: dict) -> float | None:
    """Relative valid NE in % against the first batch size's at the same seed (None: no such run)."""
    first = base.get(run.get("seed"))
    return 100 * (run["valid_ne"] / first - 1) if first else None


def _percent(delta: float | None) -> str:
    return "–" if delta is None else f"{delta:+.2f}%"


def _by_seed(runs: list[dict], base: dict) -> list[str]:
    """Where runs span seeds: per (batch, recipe) the mean valid NE and every seed's Δ against its first batch."""
    if len(base) < 2:
        return []
    last = {(r["batch_size"], r.get("recipe", "default"), r.get("seed")): r for r in runs}  # warm over cold
    groups: dict[tuple, list[dict]] = {}
    for (batch, recipe, _), r in last.items():
        groups.setdefault((batch, recipe), []).append(r)
    lines = ["", "Over seeds (Δ: each seed against the first batch size at the same seed):", ""]
    lines += ["| batch | recipe | seeds | mean valid NE | mean Δ | Δ by seed |", "|---:|---|---:|---:|---:|---|"]
    for (batch, recipe), group in groups.items():
        deltas = [d for d in (_delta(r, base) for r in group) if d is not None]
        mean_ne = sum(r["valid_ne"] for r in group) / len(group)
        mean_delta = _percent(sum(deltas) / len(deltas) if deltas else None)
        each = ", ".join(_percent(d) for d in deltas)
        lines.append(f"| {batch:,} | {recipe} | {len(group)} | {mean_ne:.4f} | {mean_delta} | {each} |")
    return lines


def report(payload: dict) -> str:
    """Markdown: runs (throughputs, NE against the first batch size), phases, step rates, peers."""
    runs = payload["runs"]
    base = {}  # by seed: the first batch size's NE (its warm run where there are two)
    for r in runs:
        if r["batch_size"] == runs[0]["batch_size"] and r.get("recipe", "default") == "default":
            base[r.get("seed")] = r["valid_ne"]
    peak = payload["bf16_matmul_tflops"]
    lines = [
        f"Machine: {payload['device']}, torch {payload['torch']}"
        + (f", bf16 matmul {peak:.0f} TFLOP/s" if peak else " (no GPU: fp32)")
        + f". Data: {payload['rows']:,} train rows (Criteo-shaped, cap {SETUP['cap']:,}), "
        f"{payload['rows'] // 10:,} valid rows; generated in {payload['data_seconds']:.0f} s.",
        *_templates_line(runs),
        "",
        "| batch | recipe | seed | cache | epochs | steps | loop samples/s | steady samples/s | "
        "whole process samples/s | wall s | valid NE | Δ NE vs first | NE by epoch | AUC | calibration |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in runs:
        steady = f"{r['steady_samples_per_second']:,.0f}" if r["steady_samples_per_second"] else "–"
        seed = "" if r.get("seed") is None else r["seed"]
        by_epoch = " → ".join(f"{ne:.4f}" for ne in r.get("valid_ne_by_epoch", []))
        lines.append(
            f"| {r['batch_size']:,} | {r.get('recipe', 'default')} | {seed} | {r['cache']} | {r['epochs']} | "
            f"{r['steps']} | {r['loop_samples_per_second']:,.0f} | {steady} | {r['process_samples_per_second']:,.0f} | "
            f"{r['wall_seconds']:.1f} | {r['valid_ne']:.4f} | {_percent(_delta(r, base))} | {by_epoch} | "
            f"{r['valid_auc']:.4f} | {r['valid_calibration']:.3f} |"
        )
    lines += _by_seed(runs, base)
    names = [n for n in PHASES if any(n in r["phases"] for r in runs)]
    names += sorted({n for r in runs for n in r["phases"]} - set(names))
    lines += ["", "Where each process's wall seconds went (startup = interpreter start to the CLI module):", ""]
    lines += ["| batch | cache | " + " | ".join(names) + " | total |", "|---:|---|" + "---:|" * (len(names) + 1)]
    for r in runs:
        if r.get("recipe", "default") != "default":
            continue
        cells = " | ".join(f"{r['phases'][n]:.2f}" if n in r["phases"] else "–" for n in names)
        lines.append(f"| {r['batch_size']:,} | {r['cache']} | {cells} | {sum(r['phases'].values()):.2f} |")
    if payload.get("steps"):
        lines += ["", "Train step alone (GPU-resident batches, after warm-up):", ""]
        lines += ["| package | batch | compile | ms/step | samples/s | peak GPU GB |", "|---|---:|---|---:|---:|---:|"]
        for s in payload["steps"]:
            lines.append(
                f"| {s.get('package', '')} | {s['batch_size']:,} | {s['compile']} | {s['ms_per_step']:.2f} | "
                f"{s['samples_per_second']:,} | {s['peak_gpu_gb']} |"
            )
    for peer in payload.get("peers", []):
        if "error" in peer:
            lines += ["", f"{peer['peer']}: failed ({' '.join(peer['error'])})"]
        else:
            lines += [
                "",
                f"{peer['peer']} (batch {peer['batch_size']:,}, one epoch, own `fit` on cuda): "
                f"{peer['samples_per_second']:,.0f} samples/s in `fit`, "
                f"{payload['rows'] / peer['wall_seconds']:,.0f} whole process, valid NE {peer['valid_ne']:.4f}.",
            ]
    return "\n".join(lines) + "\n"


def _templates_line(runs: list[dict]) -> list[str]:
    """The template versions the runs' packages were rendered from, in order of first use (none: no line)."""
    versions = list(dict.fromkeys(r["template"] for r in runs if r.get("template")))
    unknown = any(not r.get("template") for r in runs)
    if not versions:
        return []
    return [f"Template: {', '.join(versions)}" + (" (some runs do not say)" if unknown else "") + "."]


def merge(payloads: list[dict]) -> dict:
    """One payload of the runs of separate ``gpu_speed`` processes on the same machine, data and torch.

    A run's recipe is its own name, or else its ``--extra`` options other than ``seed=`` (``default`` when
    none), with ``epochs=N`` added where it trained other epochs than the first run; its seed is taken from
    ``seed=`` where the process had no ``--seeds``. Put the payload with the reference batch size first: every
    Δ is against the first batch size at the same seed.
    """
    keys = ("device", "torch", "rows", "setup")
    first = payloads[0]
    for other in payloads[1:]:
        differ = [k for k in keys if other.get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"cannot merge runs whose {', '.join(differ)} differ; merge one machine's runs only")
    runs = [run for payload in payloads for run in payload.get("runs", [])]
    if not runs:
        raise SystemExit("nothing to merge: none of the files holds a run")
    steps = [step for payload in payloads for step in payload.get("steps", [])]
    merged = {**first, "runs": [], "steps": steps, "data_seconds": first.get("data_seconds", 0.0)}
    for run in runs:
        options = [o for o in run.get("extra", []) if not o.startswith("seed=")]
        options += [f"epochs={run['epochs']}"] if run["epochs"] != runs[0]["epochs"] else []
        seeds = [int(o.split("=", 1)[1]) for o in run.get("extra", []) if o.startswith("seed=")]
        recipe = run.get("recipe", "default")
        if recipe == "default" and options:
            recipe = " ".join(options)
        seed = run.get("seed") if run.get("seed") is not None else (seeds[-1] if seeds else None)
        merged["runs"].append({**run, "recipe": recipe, "seed": seed})
    return merged


def _load_payload(path: Path) -> dict:
    """A ``gpu_speed.json``, or a one-line error naming the file that is missing or not one."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"cannot merge {path}: {err}; pass gpu_speed.json files written by this script") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("runs"), list):
        raise SystemExit(f"cannot merge {path}: it has no 'runs' list; pass gpu_speed.json files of this script")
    return payload


def write(payload: dict, out: Path) -> None:
    """``out/gpu_speed.json`` and ``out/gpu_speed.md``; prints the report."""
    text = report(payload)
    write_results(out / "gpu_speed", payload, text)
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render")
    parser.add_argument("--package")
    parser.add_argument("--out", default="build/gpu-out")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", default="4096,16384,65536,131072")
    parser.add_argument("--extra", default="", help="more key=value training options for every run")
    parser.add_argument(
        "--recipes",
        default="",
        help="large-batch recipes to compare at the batches after the first: 'name=k=v k=v;name2=…' "
        "(the first batch always trains with the defaults)",
    )
    parser.add_argument("--profile-batches", default="", help="time the train step alone at these batch sizes")
    parser.add_argument(
        "--recipe-batches", default="", help="the batches the recipes run at (default: all but the first)"
    )
    parser.add_argument("--cache", help="the encoded-data cache folder (default: OUT/cache)")
    parser.add_argument("--once", action="store_true", help="train the first batch size once (no warm repeat)")
    parser.add_argument("--seeds", default="", help="repeat every run at these seeds (e.g. 0,1); NE by seed")
    parser.add_argument("--compile-step", action="store_true", help="also time the step with compile=true")
    parser.add_argument("--step-packages", default="", help="more rendered packages whose eager step to time")
    parser.add_argument("--peer", default="", help="also a DeepCTR-Torch model (DCN) on cuda, at the 2nd batch")
    parser.add_argument(
        "--merge", default="", help="no training: one report of these gpu_speed.json files (comma-separated) in OUT"
    )
    parser.add_argument("--step-only", type=int, default=0, help=argparse.SUPPRESS)  # a subprocess of --profile
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        render(Path(args.render))
        return
    if args.merge:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write(merge([_load_payload(Path(p)) for p in args.merge.split(",")]), Path(args.out))
        return
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(os.environ.get("DATA") or out / "data")
    package = Path(args.package)
    if args.step_only:
        from scaffold.scratch import scratch_dir

        with scratch_dir("step") as work:
            step_rate(package, data, args.step_only, args.compiled, work, show_ops=not args.compiled)
        return
    started = time.perf_counter()
    ensure_dataset(data, args.rows)
    gpu = torch.cuda.is_available()
    payload = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__, "setup": SETUP}
    payload.update(rows=args.rows, data_seconds=round(time.perf_counter() - started, 1), runs=[], steps=[])
    payload["bf16_matmul_tflops"] = bf16_matmul_tflops() if gpu else 0.0
    print(f"data: {args.rows:,} rows in {payload['data_seconds']} s", flush=True)
    batches, extra = [int(b) for b in args.batches.split(",")], args.extra.split()
    recipes = {"default": []}
    for item in filter(None, args.recipes.split(";")):
        name, _, options = item.partition("=")
        recipes[name.strip()] = options.split()
    cache = Path(args.cache) if args.cache else out / "cache"
    warm_before = cache.is_dir() and any(cache.iterdir())
    plan = [(batches[0], "warm" if warm_before else "cold", "default")]
    plan += [] if args.once else [(batches[0], "warm", "default")]
    recipe_batches = [int(b) for b in args.recipe_batches.split(",") if b] or batches[1:]
    plan += [(b, "warm", "default") for b in batches[1:]]
    plan += [(b, "warm", name) for name in list(recipes)[1:] for b in recipe_batches]
    seeds = [int(s) for s in args.seeds.split(",") if s] or [None]  # None: the package's own seed
    later = [(batch, "warm", recipe) for batch, _, recipe in (plan if args.once else plan[1:])]  # cache is warm
    for seed in seeds:
        for i, (batch, state, recipe) in enumerate(plan if seed == seeds[0] else later):
            run = out / (f"run-{i}-{batch}" if seed is None else f"run-s{seed}-{i}-{batch}")
            options = extra + recipes[recipe] + ([] if seed is None else [f"seed={seed}"])
            record = train_run(package, data, run, batch, args.epochs, cache, options)
            record.update(cache=state, recipe=recipe, seed=seed)
            print(json.dumps(record), flush=True)
            payload["runs"].append(record)
    variants = [(package, False)] + ([(package, True)] if args.compile_step else [])
    variants += [(Path(p), False) for p in args.step_packages.split(",") if p]
    for batch in [int(b) for b in args.profile_batches.split(",") if b]:
        for step_package, compiled in variants:
            cmd = [sys.executable, "-m", "benchmarks.gpu_speed", "--package", str(step_package), "--out", str(out)]
            cmd += ["--step-only", str(batch)] + (["--compiled"] if compiled else [])
            proc = subprocess.run(cmd, env={**os.environ, "DATA": str(data), "SMT_DATA_CACHE": str(cache)},
                                  capture_output=True, text=True)  # fmt: skip
            print(proc.stdout[-6000:], proc.stderr[-1500:] if proc.returncode else "", flush=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith('{"batch_size"')]
            if lines:
                payload["steps"].append({"package": str(step_package), **json.loads(lines[0])})
    if args.peer:
        payload["peers"] = [peer_run(data, args.peer, batches[min(1, len(batches) - 1)])]
        print(json.dumps(payload["peers"]), flush=True)
    write(payload, out)


if __name__ == "__main__":
    main()
