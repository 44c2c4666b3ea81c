"""Micro-batches on CPU: the train step of a rendered dcn_v2 package at large batches, in one pass and in
micro-batches (template option ``micro_batch_size``), on the Criteo-shaped set of ``benchmarks/gpu_speed.py``.

Every configuration trains a fresh model (seed 0) on the same batches; the repeats are interleaved, so a slow
moment of the machine falls on every configuration alike. Prints a table of median samples/s, writes JSON:

    .venv/bin/python -m benchmarks.gpu_speed --render build/gpu
    .venv/bin/python -m benchmarks.micro_batch --package build/gpu/speed_dcn_v2 --data build/lb/data1m \\
        --rows 1000000 --batches 16384,32768,131072 --micros 0,4096,8192,16384 --out build/mb/micro_batch_cpu
                   # build/mb/micro_batch_cpu.{md,json}: the table of benchmarks/results/micro_batch_cpu.md

``0`` in ``--micros`` is the whole batch in one pass (the option's value equal to the batch), and the package's
auto rule is reported beside it. The reference row is ``--reference`` (4,096) in one pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from scaffold.results import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help="a rendered dcn_v2 package (gpu_speed --render)")
    parser.add_argument("--data", type=Path, required=True, help="Criteo-shaped set (made unless it has --rows)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", default="16384,32768,131072")
    parser.add_argument("--micros", default="0,4096,8192,16384", help="micro-batch rows; 0 = the whole batch")
    parser.add_argument("--reference", type=int, default=4096, help="a batch timed in one pass, for scale")
    parser.add_argument("--samples", type=int, default=393_216, help="samples timed per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    import torch

    from benchmarks.gpu_speed import ensure_dataset, load_for_steps
    from scaffold.scratch import scratch_dir
    from scaffold.speed import machine, template_version

    ensure_dataset(args.data, args.rows)
    loaded = load_for_steps(args.package.resolve(), args.data)
    mod, encoded, _ = loaded
    cpu = torch.device("cpu")

    configs = [(args.reference, args.reference)]
    for batch in [int(b) for b in args.batches.split(",")]:
        configs += [(batch, int(m) or batch) for m in args.micros.split(",") if int(m) <= batch]
    configs = list(dict.fromkeys(configs))  # 16,384 in micro-batches of 16,384 is its one pass
    timings: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    with scratch_dir("microbatch") as work:  # _Run makes its output folder; a step writes nothing there
        for repeat in range(args.repeats):
            for batch, micro in configs:
                rate = _step_rate(loaded, batch, micro, repeat, args.samples, work)
                timings[(batch, micro)].append(rate)
                line = {"repeat": repeat, "batch": batch, "micro": micro, "samples_per_second": round(rate)}
                print(json.dumps(line), flush=True)

    reference = statistics.median(timings[configs[0]])
    rows = []
    for batch, micro in configs:
        median = statistics.median(timings[(batch, micro)])
        whole = statistics.median(timings[(batch, batch)]) if (batch, batch) in timings else None
        auto = mod["train"].micro_batch_rows(mod["config"].config_from_dict({"batch_size": batch}), batch, cpu)
        rows.append(
            {
                "batch_size": batch,
                "micro_batch_size": micro,
                "auto": micro == auto,
                "samples_per_second": round(median),
                "all": [round(t) for t in timings[(batch, micro)]],
                "vs_one_pass": round(median / whole, 3) if whole else None,
                "vs_reference": round(median / reference, 3),
            }
        )
    payload = {
        "machine": machine(),
        "package": str(args.package),
        "template": template_version(args.package),
        "rows": len(encoded),
        "reference_batch": args.reference,
        "repeats": args.repeats,
        "samples_per_configuration": args.samples,
        "results": rows,
    }
    text = report(payload)
    print(text)
    write_results(args.out, payload, text)


def report(payload: dict) -> str:
    """The Markdown table of a run's ``payload``. "vs one pass" is "–" where the batch was not also timed in one
    pass (``--micros`` without 0)."""
    lines = [
        f"Machine: {payload['machine']}. Template: {payload['template'] or 'not recorded'}. "
        f"Data: {payload['rows']:,} Criteo-shaped rows; train step alone (forward, "
        f"backward, both optimizers, weight averaging) on random batches of them; median of {payload['repeats']} "
        f"interleaved repeats of about {payload['samples_per_configuration']:,} samples each.",
        "",
        f"| batch | micro-batch | auto | samples/s | vs one pass | vs batch {payload['reference_batch']:,} | repeats |",
        "|---:|---:|:---:|---:|---:|---:|---|",
    ]
    for r in payload["results"]:
        micro = "one pass" if r["micro_batch_size"] == r["batch_size"] else f"{r['micro_batch_size']:,}"
        one_pass = "–" if r["vs_one_pass"] is None else f"{r['vs_one_pass']:.2f}×"
        lines.append(
            f"| {r['batch_size']:,} | {micro} | {'yes' if r['auto'] else ''} | {r['samples_per_second']:,} | "
            f"{one_pass} | {r['vs_reference']:.2f}× | {', '.join(f'{t:,}' for t in r['all'])} |"
        )
    return "\n".join(lines) + "\n"


def _step_rate(loaded: tuple, batch: int, micro: int, repeat: int, samples: int, work: Path) -> float:
    """Samples/s of a fresh model's (seed 0) CPU train step at ``batch`` in micro-batches of ``micro`` rows, over
    about ``samples`` samples of random batches drawn with seed ``repeat``, after one warm-up step. ``loaded``:
    what ``gpu_speed.load_for_steps`` gives."""
    import torch

    from benchmarks.gpu_speed import step_run

    encoded = loaded[1]
    torch.manual_seed(0)
    run = step_run(loaded, {"batch_size": batch, "device": "cpu", "micro_batch_size": micro}, work)
    steps = max(2, samples // batch)
    generator = torch.Generator().manual_seed(repeat)
    batches = [encoded.rows(torch.randint(0, len(encoded), (batch,), generator=generator)) for _ in range(steps + 1)]
    run._step(batches[0], 1000, batch)  # warm-up: allocator, first-touch of the optimizer state
    start = time.perf_counter()
    for b in batches[1:]:
        run._step(b, 1000, batch)
    return batch * steps / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
