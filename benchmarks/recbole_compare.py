"""RecBole 1.2.1 SASRec on MovieLens-100K, leave-one-out, full ranking: an outside reference.

NOT part of the darec package or its tests, and it does not import darec. It must run in a
SEPARATE virtualenv that has RecBole installed (darec's own venv installs recbole with --no-deps
only for the ML-100K files it ships and never imports it). To create that venv (CPU only):

    python3 -m venv /tmp/recbole-cmp/venv
    /tmp/recbole-cmp/venv/bin/pip install torch==2.13.0   # CPU build (requirements/torch.txt)
    /tmp/recbole-cmp/venv/bin/pip install recbole==1.2.1
    /tmp/recbole-cmp/venv/bin/pip install "numpy<2" "pandas<2.3"   # RecBole 1.2.1 needs both

(install torch first: a plain ``torch`` requirement pulls several GB of CUDA packages.)
Then, from the repository root (the script chdirs to a scratch folder itself):

    /tmp/recbole-cmp/venv/bin/python benchmarks/recbole_compare.py                 # both runs
    /tmp/recbole-cmp/venv/bin/python benchmarks/recbole_compare.py --runs drop0.2  # one run
    /tmp/recbole-cmp/venv/bin/python benchmarks/recbole_compare.py --epochs 6 --note "..."
    python benchmarks/recbole_compare.py --quick --out /tmp/r.json   # skips without RecBole

Cost: RecBole trains on every prefix (96,458 samples of up to 50 items per epoch, 47 steps of
2048), so one epoch takes about 4 minutes on one CPU thread (2-core machine, shared); the
recorded CPU runs were therefore cut to ``--epochs 6`` (see their ``note``). For the full
protocol (200 epochs, stopping_step 10) run it on a GPU with ``--device cuda``.

Runs (SASRec, RecBole defaults except where the protocol below says otherwise):
  drop0.5  hidden_dropout_prob = attn_dropout_prob = 0.5 (RecBole's SASRec default)
  drop0.2  hidden_dropout_prob = attn_dropout_prob = 0.2 (darec's ML-100K setting)

Protocol: RecBole's own dataset_example/ml-100k (user_id, item_id, timestamp), 5-core on users
and items, leave-one-out by time per user ('LS': valid_and_test, order TO), full ranking,
Hit/NDCG/MRR@5/10/20, model selection and early stopping on valid NDCG@10 (stopping_step 10,
eval every epoch, up to 200 epochs), train_batch_size 2048, lr 1e-3, max length 50, CE loss,
seed 42, reproducibility on, CPU with torch.set_num_threads(1) (``--threads``).

What it prints: RecBole's own log lines (per-epoch loss and valid score), then per run one line
``RESULT <name> epochs=.. best_epoch=.. best_valid_ndcg@10=.. test={...} seconds=..``; at the end
the path of the JSON it wrote. The JSON (default benchmarks/results/recbole_sasrec_ml100k.json,
``--out``) holds the versions, dataset counts after filtering, the config of each run, the
per-epoch valid curve, the test results of the best-valid checkpoint and the wall seconds;
runs already in that file under another name are kept. RecBole's log/, saved/ and
log_tensorboard/ go to a temporary folder (``--workdir`` to keep them), never into the repo.

Two compatibility shims, applied here rather than by editing site-packages: ``torch.load``
defaults to ``weights_only=False`` again (torch >= 2.6 changed the default and RecBole's
best-checkpoint reload stores a non-tensor config), and numpy's removed aliases (np.float, ...)
are set by RecBole itself on numpy < 2, which is why numpy is pinned below 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

# torch >= 2.6: torch.load(weights_only=True) by default; RecBole's checkpoints hold a Config.
torch.load = functools.partial(torch.load, weights_only=False)

import numpy as np  # noqa: E402

try:
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed
except ImportError as error:  # not in RecBole's own virtualenv (see above)
    RECBOLE_MISSING = f"{type(error).__name__}: {error}"
else:
    RECBOLE_MISSING = ""

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "recbole_sasrec_ml100k.json"
)
if not (DEFAULT_OUT.parent.parent.is_dir() and (DEFAULT_OUT.parents[2] / "src" / "darec").is_dir()):
    # run from outside the repository (e.g. a scratch copy): write beside the script
    DEFAULT_OUT = Path(__file__).resolve().parent / "recbole_sasrec_ml100k.json"
QUICK_OUT = Path(tempfile.gettempdir()) / "darec-bench-quick" / DEFAULT_OUT.name

RUNS = {
    "drop0.5": {"hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5},
    "drop0.2": {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2},
}


def base_config(epochs: int, stopping_step: int, workdir: Path, device: str = "cpu") -> dict:
    data_path = Path(recbole.__file__).resolve().parent / "dataset_example"
    return {
        # data
        "data_path": str(data_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[5,inf)",
        "item_inter_num_interval": "[5,inf)",
        "MAX_ITEM_LIST_LENGTH": 50,
        # evaluation
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        # SASRec (RecBole defaults, written out)
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 64,
        "inner_size": 256,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
        "train_neg_sample_args": None,  # CE needs no negatives
        # training
        "train_batch_size": 2048,
        "learning_rate": 0.001,
        "epochs": epochs,
        "stopping_step": stopping_step,
        "eval_step": 1,
        "seed": 42,
        "reproducibility": True,
        "device": device,
        "use_gpu": device != "cpu",
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": str(workdir / "saved"),
    }


def raw_counts(data_path: str) -> dict:
    path = Path(data_path) / "ml-100k" / "ml-100k.inter"
    users, items, pairs, n = set(), set(), set(), 0
    with open(path) as f:
        next(f)
        for line in f:
            u, i = line.split("\t")[:2]
            users.add(u)
            items.add(i)
            pairs.add((u, i))
            n += 1
    return {
        "users": len(users),
        "items": len(items),
        "interactions": n,
        "distinct_user_item_pairs": len(pairs),
    }


def run_one(name: str, overrides: dict, args, workdir: Path) -> dict:
    cfg_dict = base_config(args.epochs, args.stopping_step, workdir, args.device)
    cfg_dict.update(overrides)
    config = Config(model="SASRec", dataset="ml-100k", config_dict=cfg_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    # before data_preparation: build() replaces inter_feat by the prefix-augmented samples
    counts = {
        "users": dataset.user_num - 1,  # RecBole counts the [PAD] id 0
        "items": dataset.item_num - 1,
        "interactions": dataset.inter_num,
    }
    train_data, valid_data, test_data = data_preparation(config, dataset)
    counts.update(
        {
            "train_samples_after_prefix_augmentation": len(train_data.dataset),
            "valid_users": len(valid_data.dataset),
            "test_users": len(test_data.dataset),
        }
    )
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])  # as run_recbole
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    print(f"DATASET {name} {json.dumps(counts)}", flush=True)

    curve: list[float] = []
    best_valid_score, best_valid_result = trainer.fit(
        train_data,
        valid_data,
        saved=True,
        show_progress=False,
        callback_fn=lambda epoch, score: curve.append(float(score)),
    )
    fit_s = time.perf_counter() - t0
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    seconds = time.perf_counter() - t0

    epochs_trained = len(trainer.train_loss_dict)
    best_epoch = int(np.argmax(curve)) if curve else None  # first max = RecBole's (strict >)
    keep = [k for k in cfg_dict if k not in ("data_path", "checkpoint_dir")]
    used = {k: config[k] for k in keep}
    used.update(
        {
            k: config[k]
            for k in (
                "eval_batch_size",
                "learner",
                "weight_decay",
                "clip_grad_norm",
                "rm_dup_inter",
                "filter_inter_by_user_or_item",
            )
            if k in config
        }
    )
    record = {
        "name": name,
        "model": "SASRec",
        "dataset": "ml-100k (recbole/dataset_example)",
        "config": json.loads(json.dumps(used, default=str)),
        "dataset_counts_after_filtering": counts,
        "epochs_trained": epochs_trained,
        "best_epoch": best_epoch,  # 0-based, as in RecBole's log
        "best_valid_ndcg@10": float(best_valid_score),
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test_result": {k: float(v) for k, v in test_result.items()},
        "valid_ndcg@10_curve": [round(x, 6) for x in curve],
        "train_loss_curve": [
            round(float(trainer.train_loss_dict[e]), 4) for e in sorted(trainer.train_loss_dict)
        ],
        "fit_seconds": round(fit_s, 1),
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "device": args.device,
        "note": args.note,
    }
    print(
        f"RESULT {name} epochs={epochs_trained} best_epoch={best_epoch} "
        f"best_valid_ndcg@10={best_valid_score:.4f} test={json.dumps(record['test_result'])} "
        f"seconds={seconds:.1f}",
        flush=True,
    )
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="drop0.5,drop0.2", help=f"comma list of {list(RUNS)}")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--stopping-step", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cpu", help="cpu (the protocol) or cuda, for a GPU machine")
    ap.add_argument("--out", type=Path, help=f"default: {DEFAULT_OUT}")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where RecBole writes log/, saved/ (default: a temporary folder)",
    )
    ap.add_argument("--note", default="", help="free text stored in the JSON")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: drop0.2 for one epoch (minutes); where RecBole cannot be imported, "
        "only a record that says so",
    )
    args = ap.parse_args()
    if args.quick:
        args.out = args.out or QUICK_OUT
        if args.out.resolve().parent == DEFAULT_OUT.parent:
            ap.error(f"--quick never writes beside the recorded results: {args.out}")
        args.runs, args.epochs, args.stopping_step = "drop0.2", 1, 1
        if RECBOLE_MISSING:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"skipped": RECBOLE_MISSING}, indent=2) + "\n")
            print(f"RecBole cannot be imported ({RECBOLE_MISSING}): skipped; wrote {args.out}")
            return
    if RECBOLE_MISSING:
        raise SystemExit(f"RecBole cannot be imported ({RECBOLE_MISSING}); its venv: see --help")

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="recbole-cmp-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    out = (args.out or DEFAULT_OUT).resolve()
    os.chdir(workdir)  # RecBole writes ./log and ./log_tensorboard relative to the cwd

    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    records = [run_one(n, RUNS[n], args, workdir) for n in names]

    doc = {}
    if out.exists():
        doc = json.loads(out.read_text())
    old = {r["name"]: r for r in doc.get("runs", [])}
    old.update({r["name"]: r for r in records})
    data_path = base_config(1, 1, workdir)["data_path"]
    doc.update(
        {
            "what": "RecBole SASRec on ML-100K, leave-one-out, full ranking (outside reference)",
            "script": "benchmarks/recbole_compare.py",
            "versions": {
                "recbole": recbole.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "raw_counts": raw_counts(data_path),
            "runs": [
                old[k] for k in sorted(old, key=lambda k: list(RUNS).index(k) if k in RUNS else 99)
            ],
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
