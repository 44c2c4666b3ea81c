"""DeepCTR-Torch 0.3.0 on a task directory, with its documented API and defaults (run as a subprocess).

Speed mode (`smt bench speed`): ``python -m scaffold.peers.deepctr --data DIR --model DCN|DeepFM|WDL
[--setup JSON]`` reads ``train/valid.parquet`` and ``features.yaml``, encodes them the way DeepCTR's examples
do (label-encoded sparse ids; dense values standardized on train, missing → the mean), trains one
epoch with ``model.fit`` at the setup's batch size, embedding size and MLP sizes (on ``--device``, DeepCTR's own
``device`` argument), and prints one JSON line: samples/s, train seconds, validation NE and model latency at
batch 1, 64 and 4096.

Quality mode (`smt bench quality --peers`): add ``--features FEATURES --seed S``. The library's best
ordinary usage: embedding size 16 (the template's), the model's own hidden units, Adam at lr 1e-3, batch
1,024, up to 10 epochs with DeepCTR's ``EarlyStopping`` on validation logloss (patience 2) and the best
epoch's weights restored (DeepCTR restores them only when it stops early; this runner also restores them
after the last epoch). One model per event; multi-hot lists as ``VarLenSparseFeat`` mean-pooled; a missing id
is its own value. Prints test metrics per event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from .common import normalized_entropy, read_task

PEER_VERSION = "0.3.0"
QUALITY = {"embedding_dim": 16, "batch_size": 1024, "epochs": 10}  # Adam's lr is DeepCTR's default, 1e-3


def build(model_name: str, schema: dict, vocab_sizes: dict, setup: dict, seed: int, device: str = "cpu"):
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import DCN, WDL, DeepFM

    columns = [SparseFeat(n, vocab_sizes[n], embedding_dim=setup["embedding_dim"]) for n in vocab_sizes]
    columns += [DenseFeat(f["name"], 1) for f in schema.get("dense", [])]
    hidden = tuple(setup["mlp"])
    if model_name == "DCN":
        return DCN(columns, columns, cross_num=setup["dcn_layers"], dnn_hidden_units=hidden, seed=seed, device=device)
    if model_name == "DeepFM":
        return DeepFM(columns, columns, dnn_hidden_units=hidden, seed=seed, device=device)
    if model_name == "WDL":
        return WDL(columns, columns, dnn_hidden_units=hidden, seed=seed, device=device)
    raise SystemExit(f"unknown DeepCTR model {model_name!r}; use DCN, DeepFM or WDL")


def latency_ms(model, x: dict, batches=(1, 64, 4096), repeats: int = 20) -> dict:
    inputs = torch.from_numpy(np.stack([x[name] for name in model.feature_index], axis=1).astype(np.float32))
    inputs = inputs.to(model.device)
    model.eval()
    result = {}
    with torch.no_grad():
        for b in batches:
            batch = inputs[:b]
            sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
            model(batch)
            sync()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                sync()
                times.append((time.perf_counter() - start) * 1e3)
            result[str(b)] = round(statistics.median(times), 4)
    return result


def quality(model_name: str, data: Path, features: Path, seed: int) -> dict:
    from deepctr_torch.callbacks import EarlyStopping
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DCN, WDL, DeepFM

    from .common import metrics

    task = read_task(data, features)
    dim = QUALITY["embedding_dim"]
    columns = [SparseFeat(n, task.vocab_sizes[n], embedding_dim=dim) for n in task.train.sparse]
    columns += [
        VarLenSparseFeat(SparseFeat(n, task.vocab_sizes[n], embedding_dim=dim), task.max_lengths[n], combiner="mean")
        for n in task.train.multi_hot
    ]
    columns += [DenseFeat(n, 1) for n in task.train.dense]

    def inputs(split) -> dict:
        return {**split.sparse, **split.multi_hot, **split.dense}

    started, test = time.perf_counter(), {}
    for event in task.train.labels:
        torch.manual_seed(seed)
        model = {"DCN": DCN, "DeepFM": DeepFM, "WDL": WDL}[model_name](columns, columns, seed=seed)
        model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
        stop = EarlyStopping(monitor="val_binary_crossentropy", patience=2, mode="min", restore_best_weights=True)
        valid = (inputs(task.valid), task.valid.labels[event])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(
                inputs(task.train), task.train.labels[event], batch_size=QUALITY["batch_size"],
                epochs=QUALITY["epochs"], verbose=0, validation_data=valid, callbacks=[stop],
            )  # fmt: skip
        if stop.best_weights is not None:  # the best epoch, also when all epochs ran
            model.load_state_dict(stop.best_weights)
        probs = model.predict(inputs(task.test), batch_size=4096).reshape(-1)
        test[event] = metrics(task.test.labels[event], probs, float(task.train.labels[event].mean()))
    return {
        "test": test,
        "train_seconds": round(time.perf_counter() - started, 3),
        "peer": f"DeepCTR-Torch {model_name}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--setup", default="{}", help="JSON: batch_size, embedding_dim, mlp, dcn_layers")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1024)
    parser.add_argument("--device", default="cpu", help="speed mode: where DeepCTR trains (cpu, cuda:0)")
    parser.add_argument("--features", help="quality mode: the package's features.yaml; test metrics per event")
    args = parser.parse_args(argv)
    if args.features:
        print(json.dumps(quality(args.model, Path(args.data), Path(args.features), args.seed)))
        return
    setup = {"batch_size": 4096, "embedding_dim": 16, "mlp": [512, 256], "dcn_layers": 2, **json.loads(args.setup)}
    data = Path(args.data)
    schema = yaml.safe_load((data / "features.yaml").read_text())
    task = read_task(data, data / "features.yaml", splits=("train", "valid"))
    x_train, x_valid = ({**split.sparse, **split.dense} for split in (task.train, task.valid))
    label = schema["labels"][0]
    y_train, y_valid, vocab_sizes = task.train.labels[label], task.valid.labels[label], task.vocab_sizes
    torch.manual_seed(args.seed)
    model = build(args.model, schema, vocab_sizes, setup, args.seed, args.device)
    model.compile("adam", "binary_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=setup["batch_size"], epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
    probs = model.predict(x_valid, batch_size=setup["batch_size"]).reshape(-1)
    result = {
        "samples_per_second": round(args.epochs * len(y_train) / seconds, 1),
        "train_seconds": round(seconds, 3),
        "valid_ne": normalized_entropy(y_valid, probs),
        "latency_ms": latency_ms(model, x_valid),
        "notes": f"deepctr-torch {PEER_VERSION}, own fit (Adam lr 1e-3), epochs={args.epochs}, {args.device}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
