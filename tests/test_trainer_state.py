import json

import pytest

from darec.errors import CheckpointError
from darec.run.state import TrainerState

# the keys, in order, of the dict the trainer kept before TrainerState (checkpoints hold it)
LEGACY_KEYS = [
    "epoch",
    "step_in_epoch",
    "global_step",
    "best_metric",
    "best_epoch",
    "best_step",
    "bad_evals",
    "elapsed",
    "history",
    "stopped",
    "saves",
]


SAMPLE: dict = {
    "epoch": 3,
    "step_in_epoch": 2,
    "global_step": 14,
    "best_metric": 0.25,
    "best_epoch": 2,
    "best_step": 10,
    "bad_evals": 1,
    "elapsed": 12.5,
    "history": [{"epoch": 2, "step": 10, "NDCG@10": 0.25, "partial_epoch": True}],
    "stopped": "time_limit",
    "saves": 4,
}


def test_round_trip_keeps_keys_order_and_values():
    state = TrainerState(**SAMPLE)
    data = state.to_dict()
    assert list(data) == LEGACY_KEYS
    assert data["history"] == state.history and data["best_metric"] == 0.25
    again = TrainerState.from_dict(json.loads(json.dumps(data)))
    assert again == state
    assert list(TrainerState().to_dict()) == LEGACY_KEYS
    assert TrainerState().to_dict() == {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "best_metric": None,
        "best_epoch": 0,
        "best_step": 0,
        "bad_evals": 0,
        "elapsed": 0.0,
        "history": [],
        "stopped": None,
        "saves": 0,
    }


def test_older_state_without_best_step_or_saves_loads_and_is_written_back_alike():
    old = TrainerState(epoch=2, best_epoch=1).to_dict()
    del old["best_step"], old["saves"]
    state = TrainerState.from_dict(old)
    assert state.best_step is None and state.saves == 0 and state.epoch == 2
    # written back without best_step, as the code that made it did
    assert "best_step" not in state.to_dict()
    assert {k: v for k, v in state.to_dict().items() if k != "saves"} == old
    state.best_step = 7  # a later improvement records it
    assert state.to_dict()["best_step"] == 7


def test_unknown_missing_or_malformed_state_is_a_clear_error():
    data = TrainerState().to_dict()
    with pytest.raises(CheckpointError, match=r"run/state.json: unknown .*\['lr_scale'\]"):
        TrainerState.from_dict({**data, "lr_scale": 1.0}, source="run/state.json")
    del data["global_step"]
    with pytest.raises(CheckpointError, match=r"lacks \['global_step'\]"):
        TrainerState.from_dict(data)
    with pytest.raises(CheckpointError, match="expected a JSON object, got list"):
        TrainerState.from_dict([])
