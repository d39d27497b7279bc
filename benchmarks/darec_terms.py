"""How much each learned LLM term of a trained DARec run contributes, on validation.

Evaluates the run's selected checkpoint on the validation split (full ranking) as trained, with
the LLM user term switched off (``user_head`` zeroed: CF user vector only) and with the text
term switched off (``text_head`` zeroed: ID embeddings only). Prints JSON (and writes it to
``--out``).

    python benchmarks/darec_terms.py runs/demo/darec
    python benchmarks/darec_terms.py --quick --out /tmp/t.json   # a tiny DARec trained first
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from benchlib.quick import quick_setup
from benchlib.records import write_json

from darec.data.split import leave_one_out
from darec.evaluation.evaluator import evaluate
from darec.experiment import demo_config, run_experiment
from darec.models.darec import DARec
from darec.run import load_data, load_trained_model


def terms(run: Path) -> dict[str, Any]:
    """Validation NDCG@10 of ``run``'s DARec as trained and without each LLM term."""
    cfg, model, _ = load_trained_model(run)
    if not isinstance(model, DARec):
        raise SystemExit(f"{run} is a {cfg.model.name} run, not a DARec run")
    valid = leave_one_out(load_data(cfg)).valid

    def ndcg() -> float:
        return evaluate(model, valid, cfg.eval, cfg.model.max_seq_len).metrics["NDCG@10"]

    out = {"trained": ndcg()}
    with torch.no_grad():
        for head in ("user_head", "text_head"):
            layer = getattr(model, head)
            saved = [p.detach().clone() for p in layer.parameters()]
            for p in layer.parameters():
                p.zero_()
            out[f"without {head}"] = ndcg()
            for p, v in zip(layer.parameters(), saved, strict=True):
                p.copy_(v)
    return {"run": str(run), "valid NDCG@10": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a DARec run folder")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: train a tiny DARec run, then measure"
    )
    args = parser.parse_args()
    if args.quick:
        with quick_setup() as quick:
            run = quick.folder / "darec"
            run_experiment(demo_config("darec", extra=quick.sets()), run, test=False)
            out = terms(run)
    elif args.run:
        out = terms(Path(args.run))
    else:
        parser.error("give a DARec run folder (or --quick)")
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
