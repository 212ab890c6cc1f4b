"""evaluate's baseline selection: a baseline runs only on sets whose items have the keys it needs."""

from __future__ import annotations

import numpy as np

from sparseconn.engine.evaluate import _baseline_runner, _scorable


class _NeedsBackground:
    needs = ("background",)

    def __call__(self, x, background):
        return x - background


def test_a_baseline_is_left_out_with_a_note_where_its_key_is_missing():
    baselines = {"plain": np.negative, "bg": _NeedsBackground()}
    notes: list[str] = []
    without = [{"input": np.zeros((1, 4, 4))}]
    assert list(_scorable(baselines, without, notes, "the test split")) == ["plain"]
    assert notes == ["bg is not scored on the test split: its items have no background"]
    notes.clear()
    with_bg = [{"input": np.zeros((1, 4, 4)), "background": np.ones((1, 4, 4))}]
    assert list(_scorable(baselines, with_bg, notes, "cross-domain")) == ["plain", "bg"] and notes == []


def test_the_runner_passes_each_item_its_own_extra_keys():
    import torch

    batch = {"input": torch.full((2, 1, 3, 3), 5.0), "background": torch.stack([torch.ones(1, 3, 3),
                                                                               2 * torch.ones(1, 3, 3)])}
    out = _baseline_runner(_NeedsBackground())(batch)
    assert out.shape == (2, 1, 3, 3) and out[0].eq(4).all() and out[1].eq(3).all()
