"""How much of its Adam step a touched embedding element takes, by batch size (issue #11).

Adam moves an element by ``lr · m̂ / (√v̂ + ε)``. The loss is a mean over the batch, so the gradient of a row met
once in a step shrinks as 1/batch; once it is as small as ε, the element takes only ``√v̂ / (√v̂ + ε)`` of the
step its gradient's sign asks for. This trains the first ``--steps`` steps of a rendered dcn_v2 package (the
setup of ``benchmarks/gpu_speed.py``) at each batch size with the package's own step and recipe, and after
each step reads the embedding optimizer's second moments of the rows it touched. It reports, over those
elements, the quantiles of the fraction taken with ε = 1e-8, and with an ε that follows the batch (1e-8 ×
reference_batch_size / batch above the tuned batch: the gradient of a row met once is that many times smaller
than at the tuned batch). Both come from the same moments, those the package's own recipe trained; it moves
nothing, it only says how far ε bends the steps. The template's recipe keeps ε = 1e-8 and Adam's β at every
batch (``benchmarks/results/adam_eps.md`` is from a v0.7.34 render); templates v0.7.35 and v0.7.36 scaled both
above the tuned batch, and v0.7.37 took that back (``benchmarks/results/large_batch_criteo_eps.md``).

    .venv/bin/python -m benchmarks.gpu_speed --render build/gpu      # a package of the current template
    DATA=build/lb/data4m .venv/bin/python -m benchmarks.adam_eps --package build/gpu/speed_dcn_v2 \\
        --rows 4000000 --batches 512,4096,16384,65536,131072 --out build/eps
Writes ``OUT/adam_eps.json`` and ``OUT/adam_eps.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from scaffold.results import write_results

FIXED_EPS = 1e-8  # Adam's ε of the template's embedding optimizer (scaled above the tuned batch in v0.7.35-36 only)
QUANTILES = (0.1, 0.5, 0.9)


def taken_fractions(optimizer, eps: float):
    """Per touched element of every table, ``√v̂ / (√v̂ + eps)`` after the optimizer's last step: a 1-D tensor."""
    import torch

    beta2 = optimizer.param_groups[0]["betas"][1]
    parts = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if param.grad is None or not state:
                continue
            rows = param.grad.coalesce().indices()[0]  # (U,)
            v_hat = state["exp_avg_sq"].index_select(0, rows) / (1 - beta2 ** float(state["step"]))  # (U, D)
            root = v_hat.sqrt()
            parts.append((root / (root + eps)).flatten())
    return torch.cat(parts)


def measure(loaded: tuple, batch: int, steps: int, work: Path) -> dict:
    """The first ``steps`` steps at ``batch`` (seed 0): quantiles of the step taken, ε fixed and ε scaled.
    ``loaded``: what ``gpu_speed.load_for_steps`` gives (the package's modules, encoded data, feature sizes)."""
    import torch

    from benchmarks.gpu_speed import step_run

    mod, encoded, _ = loaded
    torch.manual_seed(0)
    run = step_run(loaded, {"batch_size": batch, "device": "cpu", "seed": 0}, work)
    staged = mod["train"].stage_on_device(encoded, run.device)
    scaled_eps = FIXED_EPS * min(1.0, run.config.reference_batch_size / batch)
    fixed, scaled = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        run._step(staged.rows(torch.randint(0, len(staged), (batch,), generator=generator)), 1000, batch)
        fixed.append(taken_fractions(run.sparse_opt, FIXED_EPS))
        scaled.append(taken_fractions(run.sparse_opt, scaled_eps))
    q = torch.tensor(QUANTILES, dtype=torch.float64)

    def quantiles(parts: list) -> list[float]:
        values = torch.cat(parts).double()
        sample = values[torch.randperm(len(values), generator=generator)[:2_000_000]]  # quantile's size limit
        return [round(x, 3) for x in torch.quantile(sample, q).tolist()]

    return {"batch_size": batch, "steps": steps, "scaled_eps": scaled_eps, "fixed": quantiles(fixed),
            "scaled": quantiles(scaled)}  # fmt: skip


def write(payload: dict, out: Path) -> None:
    """``out/adam_eps.json`` and ``out/adam_eps.md``; prints the table."""
    head = "| batch | scaled ε | step taken, ε = 1e-8 (p10 / median / p90) | step taken, scaled ε (p10 / median / p90) "
    head += "|"
    lines = [f"# {payload['title']}", "", payload["setup"], "", head, "|---:|---:|---|---|"]
    for r in payload["results"]:
        fixed, scaled = " / ".join(map(str, r["fixed"])), " / ".join(map(str, r["scaled"]))
        lines.append(f"| {r['batch_size']:,} | {r['scaled_eps']:.3g} | {fixed} | {scaled} |")
    write_results(out / "adam_eps", payload, "\n".join(lines) + "\n")
    print("\n".join(lines[4:]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="a rendered dcn_v2 package (gpu_speed --render)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="train rows to generate when DATA has none")
    parser.add_argument("--batches", default="512,4096,16384,65536,131072")
    parser.add_argument("--steps", type=int, default=4, help="steps from initialization at each batch size")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    package, out = Path(args.package), Path(args.out)
    if not (package / "src" / package.name).is_dir():
        raise SystemExit(f"--package {package}: no rendered package there; render one with gpu_speed --render")
    import torch

    from benchmarks.gpu_speed import ensure_dataset, load_for_steps
    from scaffold.scratch import scratch_dir

    data = Path(os.environ.get("DATA") or out / "data")
    ensure_dataset(data, args.rows)
    loaded = load_for_steps(package, data)
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        with scratch_dir("eps") as work:
            results.append(measure(loaded, batch, args.steps, work))
        print(json.dumps(results[-1]), flush=True)
    setup = (
        f"{package.name} on {args.rows:,} Criteo-shaped rows, the first {args.steps} steps from initialization "
        f"at each batch (seed 0, the package's default recipe), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}. Each cell: quantiles over the embedding elements the steps touched of "
        "√v̂ / (√v̂ + ε), the fraction of its step an element takes; scaled ε = 1e-8 × 512 / batch above 512."
    )
    write({"title": "Adam's ε and the embedding steps by batch size", "setup": setup, "results": results}, out)


if __name__ == "__main__":
    main()
