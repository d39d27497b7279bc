import numpy as np

from darec.data.batching import make_batch, pad_left, training_windows


def test_all_windows_cover_every_target_once():
    seq = np.arange(1, 12)  # 11 items -> 10 targets
    windows, owners = training_windows([np.array([]), seq], max_len=4, mode="all")
    targets = sorted(int(t) for w in windows for t in w[1:])
    assert targets == list(range(2, 12))
    assert all(len(w) <= 5 for w in windows) and set(owners.tolist()) == {1}


def test_last_window_is_most_recent():
    windows, _ = training_windows([np.arange(1, 12)], max_len=4, mode="last")
    assert len(windows) == 1 and windows[0].tolist() == [7, 8, 9, 10, 11]


def test_pad_left_and_batch_shift():
    assert pad_left([np.array([3, 4]), np.array([1, 2, 3, 4, 5])], 4).tolist() == [
        [0, 0, 3, 4],
        [2, 3, 4, 5],
    ]
    batch = make_batch([np.array([5, 6, 7]), np.array([8, 9])], np.array([1, 2]), 4)
    assert batch.inputs.tolist() == [[5, 6], [0, 8]]  # trimmed to the longest window
    assert batch.targets.tolist() == [[6, 7], [0, 9]]
    long = make_batch([np.arange(1, 10)], np.array([1]), 4)
    assert long.inputs.tolist() == [[5, 6, 7, 8]] and long.targets.tolist() == [[6, 7, 8, 9]]
