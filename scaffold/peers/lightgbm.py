"""LightGBM on a task directory (run as a subprocess by `smt bench quality --peers LightGBM`).

``python -m scaffold.peers.lightgbm --data DIR --features FEATURES --seed S`` trains one binary model per
event, as LightGBM is ordinarily used: learning rate 0.05, up to 2,000 rounds with early stopping after 50
rounds on the valid split's logloss (best iteration used), every other parameter LightGBM's default
(num_leaves 31, …); sparse ids as LightGBM categorical features, multi-hot lists as a sparse 0/1 column per
token, dense values raw with missing values left to LightGBM. Prints one JSON line: test metrics per event
and train seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .common import Split, metrics, read_task


def matrix(split: Split, vocab_sizes: dict):
    """(X, feature names, categorical names): X dense (N, F), or CSR when multi-hot columns are present."""
    columns = [ids.astype(np.float64) for ids in split.sparse.values()]
    columns += list(split.dense_raw.values())
    names = [*split.sparse, *split.dense_raw]
    categorical = list(split.sparse)
    base = np.stack(columns, axis=1) if columns else np.zeros((len(next(iter(split.labels.values()))), 0))
    if not split.multi_hot:
        return base, names, categorical
    from scipy import sparse

    blocks = [sparse.csr_matrix(base)]
    for name, padded in split.multi_hot.items():
        rows = np.repeat(np.arange(len(padded)), padded.shape[1])
        ids = padded.reshape(-1)
        keep = ids > 0
        onehot = sparse.csr_matrix(
            (np.ones(int(keep.sum())), (rows[keep], ids[keep] - 1)), shape=(len(padded), vocab_sizes[name] - 1)
        )
        onehot.data[:] = 1.0  # a token repeated in one list counts once
        blocks.append(onehot)
        names += [f"{name}_{i}" for i in range(1, vocab_sizes[name])]
    return sparse.hstack(blocks, format="csr"), names, categorical


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
        params = {"objective": "binary", "learning_rate": 0.05, "seed": args.seed, "verbosity": -1}
        params |= {"metric": "binary_logloss", "num_threads": 2}
        train = lgb.Dataset(
            x["train"][0], task.train.labels[event], feature_name=names, categorical_feature=categorical
        )
        valid = lgb.Dataset(x["valid"][0], task.valid.labels[event], reference=train)
        booster = lgb.train(params, train, 2000, valid_sets=[valid], callbacks=[lgb.early_stopping(50, verbose=False)])
        probs = booster.predict(x["test"][0], num_iteration=booster.best_iteration)
        test[event] = metrics(task.test.labels[event], probs, float(task.train.labels[event].mean()))
    print(json.dumps({"test": test, "train_seconds": round(time.perf_counter() - started, 3), "peer": "LightGBM"}))


if __name__ == "__main__":
    main()
