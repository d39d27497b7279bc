"""How much each learned LLM term of a trained DARec run contributes, on validation.

Evaluates the run's selected checkpoint on the validation split (full ranking) as trained, with
the LLM user term switched off (``user_head`` zeroed: CF user vector only) and with the text
term switched off (``text_head`` zeroed: ID embeddings only). Prints JSON.

    python benchmarks/darec_terms.py runs/demo/darec
"""

from __future__ import annotations

import argparse
import json

import torch

from darec.data.split import leave_one_out
from darec.evaluation.evaluator import evaluate
from darec.models.darec import DARec
from darec.run import load_data, load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    args = parser.parse_args()
    cfg, model, _ = load_trained_model(args.run)
    if not isinstance(model, DARec):
        raise SystemExit(f"{args.run} is a {cfg.model.name} run, not a DARec run")
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
    print(json.dumps({"run": args.run, "valid NDCG@10": out}, indent=1))


if __name__ == "__main__":
    main()
