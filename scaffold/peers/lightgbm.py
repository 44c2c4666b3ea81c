"""LightGBM on a task directory (run as a subprocess by `smt bench quality --peers LightGBM`).

``python -m scaffold.peers.lightgbm --data DIR --features FEATURES --seed S`` trains one binary model per
event with LightGBM's default parameters (num_leaves 31, learning_rate 0.1), sparse ids as categorical
features, multi-hot lists as one 0/1 column per token, up to 2,000 rounds with early stopping (50 rounds)
on the valid split, and prints one JSON line: test metrics per event and train seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .common import Split, metrics, read_task


def matrix(split: Split, vocab_sizes: dict) -> tuple[np.ndarray, list[str], list[str]]:
    columns, names = [], []
    for name, ids in split.sparse.items():
        columns.append(ids.astype(np.float64))
        names.append(name)
    categorical = list(names)
    for name, padded in split.multi_hot.items():
        onehot = np.zeros((len(padded), vocab_sizes[name]), dtype=np.float64)
        np.put_along_axis(onehot, padded, 1.0, axis=1)
        columns += list(onehot[:, 1:].T)
        names += [f"{name}_{i}" for i in range(1, vocab_sizes[name])]
    for name, values in split.dense.items():
        columns.append(values)
        names.append(name)
    return np.stack(columns, axis=1), names, categorical


def main(argv: list[str] | None = None) -> None:
    import lightgbm as lgb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    task = read_task(args.data, args.features)
    x = {s: matrix(getattr(task, s), task.vocab_sizes) for s in ("train", "valid", "test")}
    names, categorical = x["train"][1], x["train"][2]
    started, test = time.perf_counter(), {}
    for event in task.train.labels:
        params = {"objective": "binary", "seed": args.seed, "verbosity": -1, "num_threads": 2}
        train = lgb.Dataset(
            x["train"][0], task.train.labels[event], feature_name=names, categorical_feature=categorical
        )
        valid = lgb.Dataset(x["valid"][0], task.valid.labels[event], reference=train)
        booster = lgb.train(params, train, 2000, valid_sets=[valid], callbacks=[lgb.early_stopping(50, verbose=False)])
        test[event] = metrics(
            task.test.labels[event], booster.predict(x["test"][0], num_iteration=booster.best_iteration)
        )
    print(json.dumps({"test": test, "train_seconds": round(time.perf_counter() - started, 3), "peer": "LightGBM"}))


if __name__ == "__main__":
    main()
