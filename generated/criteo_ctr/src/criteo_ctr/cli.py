"""Command line: ``python -m <package> train|evaluate|export|synth|capacity`` (template-owned).

Parses arguments, calls the library, prints results; maps typed errors to exit code 2 with one line.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from .config import options_help
from .errors import ModelError
from .spec import SPEC
from .timing import PHASES

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_FEATURES = PACKAGE_DIR / "features.yaml"
DEFAULT_TRAIN_CONFIG = PACKAGE_DIR / "train.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {SPEC.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--features", default=str(DEFAULT_FEATURES), help="feature schema (default: packaged)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "train",
        help="train on a train file, early-stop on a valid file",
        epilog=options_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--out", required=True, help="training directory (checkpoints, log, metrics)")
    p.add_argument("--config", help="training options YAML (default: the package's train.yaml, if any)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--quiet", action="store_true", help="no progress (bar on a terminal, else lines on stderr)")
    p.add_argument(
        "--test",
        metavar="PATH",
        help='then score the kept model on this held-out file in the same process (the summary\'s "test": '
        "what `evaluate --json` of --out gives)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training options, e.g. lr=0.001")
    p = sub.add_parser("evaluate", help="metrics per event of a checkpoint on a data file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("export", help="torch.export artifact with parity check, latency and throughput")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batches", default="1,64,4096", help="batch sizes to time, comma-separated")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per batch size (median reported)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("synth", help="seeded synthetic data matching the schema")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--out", required=True, help=".parquet, .csv or .tsv (header-less, file_columns order)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("capacity", help="parameters, embedding bytes, dense FLOPs per example")
    p.add_argument("--checkpoint", help="a training dir; default: sizes implied by features.yaml")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """Run one command; ``own_process``: the process is this command's alone (``python -m``), so its imports
    may be frozen out of the garbage collector's way (``frozen_imports``)."""
    args = build_parser().parse_args(argv)
    args.own_process = own_process
    try:
        return COMMANDS[args.command](args)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` once its work is done, without tearing down its modules.

    Python's own exit frees every module and object one by one: with torch loaded that takes about 0.4 s after
    every command, and 0.7 s with ``torch._dynamo`` (which ``export`` and ``compile=true`` load), about a tenth
    of a small training. So this finishes what an exit must finish, in the order Python does:
    ``threading._shutdown`` (what ``Py_FinalizeEx`` calls first) tells thread pools to stop, so their idle
    workers end, and joins the threads that are not daemons; then the ``atexit`` handlers run (inductor's
    compile workers, temporary folders, coverage); the output is flushed and the process ends. Every file a
    command wrote is closed by then.
    Joining the threads without the pools' hooks waited forever on an open ``ThreadPoolExecutor``'s idle
    workers: every ``compile=true`` command hung after its work was done (v0.7.12 to v0.7.15).

    A rank of a torchrun job (WORLD_SIZE > 1) ends without the handlers. ``DistributedDataParallel`` keeps
    gloo's process group and its worker threads alive until the process ends; a worker thread that drops its
    reference to a finished collective while Python finalizes needs the GIL and aborts the process (SIGABRT,
    "terminate called without an active exception"; a core dump shows ``~AsyncWork`` → ``take_gil`` under
    ``Py_FinalizeEx``). That failed 3 of 115 two-process CPU runs, after every file was written, and torchrun
    then failed the job.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        threading._shutdown()  # what Py_Finalize runs first: the pools' exit hooks, then joins non-daemon threads
        atexit._run_exitfuncs()  # what Py_Finalize runs next, before it frees the modules
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach the reader
            pass
    os._exit(code)


@contextmanager
def frozen_imports(own_process: bool) -> Iterator[None]:
    """Import a command's modules with the cyclic garbage collector paused, then freeze what they made.

    Importing torch and the training code makes about 250,000 objects that live as long as the process; the
    collector walks them all in every full collection, during the imports and after (0.1 s each, AMD EPYC).
    ``gc.freeze`` moves them to the permanent generation, so the collections of the command, which still run,
    see only what it makes itself: 0.1 to 0.2 s less per small `train` process, in ``imports`` and, where a
    full collection landed there, ``build`` (SMT's ``benchmarks/results/process_v0732.md``).
    Only in a process of its own: a caller's heap (a test calling ``main``) is left as it is.
    """
    if not own_process:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _schema(args):
    from .schema import load_schema

    return load_schema(args.features)


def _train(args) -> int:
    with PHASES.phase("imports"), frozen_imports(args.own_process):
        from .config import load_config
        from .train import Interrupted, train

    schema = _schema(args)
    if args.resume and args.overrides:
        print("error: --resume continues the saved run exactly; drop the key=value overrides", file=sys.stderr)
        return 2
    own = DEFAULT_TRAIN_CONFIG if DEFAULT_TRAIN_CONFIG.is_file() else None  # model-owned: a package may drop it
    config = load_config(args.config or own, args.overrides)
    try:
        show = False if args.quiet else None
        paths = (args.train, args.valid, args.out)
        summary = train(*paths, config, schema, resume=args.resume, show_progress=show, test_path=args.test)
    except Interrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 130
    if summary:  # under torchrun only rank 0 reports (the others return an empty summary)
        print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args) -> int:
    with frozen_imports(args.own_process):
        from .evaluate import evaluate

    result = evaluate(args.checkpoint, args.data, _schema(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'event':<16}{'rows':>9}{'logloss':>10}{'NE':>9}{'NE train':>10}{'AUC':>9}{'calib':>8}")
    columns = (("ne", 9), ("ne_train", 10), ("auc", 9), ("calibration", 8))
    for event, m in result["events"].items():
        ne, ne_train, auc, calib = (_shown(m.get(k), width) for k, width in columns)
        print(f"{event:<16}{m['rows']:>9}{m['logloss']:>10.4f}{ne}{ne_train}{auc}{calib}")
    print("NE: logloss / entropy of this split's base rate; NE train: of the training base rate (He et al. 2014)")
    return 0


def _shown(value: float | None, width: int) -> str:
    """A metric in the table: 4 decimals, or '–' where the split cannot define it."""
    return f"{'–':>{width}}" if value is None else f"{value:>{width}.4f}"


def _export(args) -> int:
    with frozen_imports(args.own_process):
        from .export import export

    try:
        batches = tuple(int(b) for b in args.batches.split(","))
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1 or args.repeats < 1:
        print(
            f"error: --batches must be comma-separated sizes of 1 or more and --repeats at least 1, "
            f"got --batches {args.batches!r} --repeats {args.repeats}",
            file=sys.stderr,
        )
        return 2
    result = export(args.checkpoint, args.out, _schema(args), latency_batches=batches, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else f"exported {result['artifact']} {result}")
    return 0


def _synth(args) -> int:
    with frozen_imports(args.own_process):
        from .data import writable, write_table
        from .synth import synthesize

    if args.rows < 1 or args.seed < 0:
        print(f"error: --rows must be >= 1 and --seed >= 0, got --rows {args.rows} --seed {args.seed}", file=sys.stderr)
        return 2
    writable(args.out)  # a bad path fails now, not after the rows are made
    schema = _schema(args)
    write_table(synthesize(schema, args.rows, seed=args.seed), args.out, schema)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


def _capacity(args) -> int:
    with frozen_imports(args.own_process):
        from .builder import build_model
        from .capacity import capacity, sizes_from_schema
        from .checkpoint import load_trained
        from .model import FeatureSizes

    schema = _schema(args)
    if args.checkpoint:
        model, meta, _ = load_trained(args.checkpoint, schema)
        sizes = FeatureSizes.from_dict(meta["sizes"])
    else:
        sizes = sizes_from_schema(schema)
        model = build_model(SPEC, sizes)
    result = capacity(model, sizes, schema)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v:,.0f}" for k, v in result.items()))
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "export": _export, "synth": _synth, "capacity": _capacity}
