"""``smt bench quality``: fleet packages on their real tasks, over seeds, per variant of training overrides."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path

from rich.table import Table

from ..errors import SmtError
from ..fleet import discover
from ..paths import folder, output_file
from ..quality import (
    PEERS,
    QualityPlan,
    Summary,
    Variant,
    bench_quality,
    parse_grid,
    parse_variant,
    plot,
    relative_ne_change,
    task_path,
    template_questions,
)
from ..results import results_stem, write_results
from ..scratch import scratch_dir
from ..speed import INTERACTIONS, SpeedSetup, bench_package, bench_peer, make_dataset, render_package
from ..speed import report as speed_report
from ._common import fleet_of, repo_of

HELP = "benchmarks: `quality` (test metrics of fleet packages on real tasks), `speed` (train/serve speed vs peers)"


def register(p) -> None:
    sub = p.add_subparsers(dest="bench_command", required=True)
    q = sub.add_parser("quality", help="test NE/AUC/calibration per package and variant, mean over seeds")
    q.add_argument("names", nargs="*", help="packages (default: those with task data)")
    q.add_argument("--data", default="build/data", help="task data root (smt data fetch)")
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,key=value",
        help="a named set of training overrides; 'default' (no overrides) always runs first",
    )
    q.add_argument("--peers", default="", help="side by side: DeepFM,DCN,WDL (DeepCTR-Torch), LightGBM")
    q.add_argument("--baseline", action="store_true", help="the per-model baseline: plain DNN at equal FLOPs, tuned")
    q.add_argument("--baseline-shapes", default="256x128,512,128x128x128", help="MLP shapes the baseline tries")
    q.add_argument("--baseline-lrs", default="1e-3,2e-3,5e-3", help="learning rates the baseline tries")
    q.add_argument("--previous", metavar="REF", help="also the packages as committed at this git ref")
    q.add_argument("--plot", help="write a PNG of NE per package and variant here")
    q.add_argument("--out", help="write the runs as JSON here")
    s = sub.add_parser("speed", help="samples/s, peak memory, serving latency on a Criteo-shaped set, vs DeepCTR-Torch")
    s.add_argument("--rows", type=int, default=1_000_000, help="train rows (valid: a tenth)")
    s.add_argument("--cap", type=int, default=100_000, help="cap on the 26 Criteo cardinalities")
    s.add_argument("--batch-size", type=int, default=4096)
    s.add_argument("--interactions", default=",".join(INTERACTIONS), help="comma-separated")
    s.add_argument("--peers", default="DCN,DeepFM", help="DeepCTR-Torch models, comma-separated; '' for none")
    s.add_argument("--train-args", default="", help="extra key=value training options for the packages")
    s.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'key=value key=value'",
        help="side by side: each package also trains with these options on top of --train-args (repeatable)",
    )
    s.add_argument("--work", help="keep data and packages here (default: a temp dir)")
    s.add_argument("--out", help="write OUT.json and OUT.md here, e.g. benchmarks/results/speed")


def run(args, console) -> int:
    if args.bench_command == "speed":
        return _speed(args, console)
    repo = repo_of(args)
    if args.seeds < 1:
        raise SmtError(f"--seeds must be at least 1, got {args.seeds}")
    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise SmtError(f"unknown peer(s) {unknown}; choose from {sorted(PEERS)}")
    plot_path = output_file(args.plot, "--plot") if args.plot else None
    out_path = output_file(args.out, "--out") if args.out else None
    data_root = Path(args.data) if Path(args.data).is_absolute() else repo.root / args.data
    packages = [
        p
        for p in discover(repo, args.names or None, fleet_of(args))
        if args.names or (task_path(data_root, p) / "train.parquet").is_file()
    ]
    questions = template_questions(repo)
    plan = QualityPlan(
        variants=(Variant("default"), *(parse_variant(v, questions) for v in args.variant)),
        seeds=args.seeds,
        previous=args.previous,
        baseline=parse_grid(args.baseline_shapes, args.baseline_lrs) if args.baseline else None,
        peers=peers,
    )
    if not packages:
        raise SmtError(f"no package has task data under {data_root}; run `smt data fetch` or pass --data")
    with console.status("training") as status:
        summaries = bench_quality(repo, packages, data_root, plan, status.update)
    _table(console, summaries)
    if plot_path:
        plot(summaries, plot_path)
        console.print(f"plot: {plot_path}")
    if out_path:
        out_path.write_text(json.dumps([[r.to_dict() for r in s.runs] for s in summaries], indent=2) + "\n")
    return 0


def _table(console, summaries: list[Summary]) -> None:
    table = Table(
        title="test metrics, mean ± std over seeds (lower NE is better)",
        caption="NE: logloss / entropy of the test split's base rate; NE (train rate): of the training base rate "
        "(He et al. 2014). ΔNE is the same under either.",
    )
    columns = ("package", "variant", "NE", "NE (train rate)", "ΔNE vs default", "AUC", "calibration", "train s")
    for column in (*columns, "FLOPs/ex"):
        table.add_column(column, justify="left" if column in ("package", "variant") else "right")
    default = {s.package: s.stat("ne")[0] for s in summaries if s.variant == "default"}
    for s in summaries:
        ne, ne_sd = s.stat("ne")
        ne_train, _ = s.stat("ne_train")
        auc, _ = s.stat("auc")
        cal, _ = s.stat("calibration")
        seconds = sum(r.train_seconds for r in s.runs) / len(s.runs)
        flops = s.runs[0].capacity.dense_flops_per_example if s.runs[0].capacity else None
        delta = relative_ne_change(ne, default[s.package])
        table.add_row(
            s.package,
            s.variant,
            f"{ne:.4f} ± {ne_sd:.4f}",
            "–" if math.isnan(ne_train) else f"{ne_train:.4f}",
            f"{delta:+.2f}%",
            f"{auc:.4f}",
            f"{cal:.3f}",
            f"{seconds:.1f}",
            f"{flops:,.0f}" if flops else "–",
        )
    console.print(table)
    variants = sorted({s.variant for s in summaries if not s.variant.startswith("baseline")} - {"default"})
    for v in variants:
        deltas = [relative_ne_change(s.stat("ne")[0], default[s.package]) for s in summaries if s.variant == v]
        console.print(f"{v}: fleet-average relative NE change vs default {sum(deltas) / len(deltas):+.2f}%")
    baselines = {s.package: s.stat("ne")[0] for s in summaries if s.variant.startswith("baseline")}
    if baselines:
        deltas = [relative_ne_change(default[p], ne) for p, ne in baselines.items()]
        console.print(
            f"template default vs tuned per-model baselines (equal FLOPs): fleet-average relative NE change "
            f"{sum(deltas) / len(deltas):+.2f}% (negative = the template is better)"
        )


def _speed(args, console) -> int:
    repo = repo_of(args)
    if args.rows < 10 or args.cap < 1 or args.batch_size < 1:
        raise SmtError(
            f"--rows must be at least 10 (valid gets a tenth), --cap and --batch-size at least 1; "
            f"got {args.rows}, {args.cap}, {args.batch_size}"
        )
    setup = SpeedSetup(rows=args.rows, cap=args.cap, batch_size=args.batch_size)
    interactions = [i for i in args.interactions.split(",") if i]
    unknown = sorted(set(interactions) - set(INTERACTIONS))
    if unknown:
        raise SmtError(f"unknown interaction(s) {unknown}; choose from {list(INTERACTIONS)}")
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if PEERS.get(p) != "deepctr"]
    if unknown:
        raise SmtError(f"unknown DeepCTR-Torch model(s) {unknown}; choose from DCN, DeepFM, WDL")
    if peers and importlib.util.find_spec("deepctr_torch") is None:
        raise SmtError("DeepCTR-Torch is not installed; `pip install -e .[bench]` or pass --peers ''")
    train_args = tuple(a for a in args.train_args.split() if a)
    variants = [train_args] + [train_args + tuple(v.split()) for v in args.variant]
    malformed = sorted({a for v in variants for a in v if not all(a.partition("=")[::2])})  # key and value set
    if malformed:
        raise SmtError(f"training options are key=value; got {malformed} (e.g. --variant 'compile=true')")
    out = results_stem(output_file(args.out, "--out")) if args.out else None  # OUT.md and OUT.json
    work_dir = folder(Path(args.work).absolute(), "--work", "the data and packages") if args.work else None
    with contextlib.ExitStack() as stack:
        work = work_dir if work_dir is not None else stack.enter_context(scratch_dir("bench"))
        results = []
        with console.status("speed") as status:
            status.update(f"writing a Criteo-shaped set of {setup.rows:,} rows")
            data = make_dataset(work / "data", setup)
            for interaction in interactions:
                for i, options in enumerate(variants):  # each in its own render: its cold cache is cold
                    status.update(f"smt {interaction} {' '.join(options)}: one epoch")
                    package = render_package(repo, work / "packages" / f"variant{i}", interaction, setup)
                    results.append(bench_package(package, data, setup, options))
            for peer in peers:
                status.update(f"DeepCTR-Torch {peer}: one epoch")
                results.append(bench_peer(peer, data, setup))
    markdown, payload = speed_report(results, setup)
    console.print(markdown)
    if out is not None:
        write_results(out, payload, markdown + "\n")
    return 0
