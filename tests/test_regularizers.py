from __future__ import annotations

import math

import pytest
import torch

from sparseconn.regularizers import (
    REGULARIZERS,
    RegContext,
    binary_entropy,
    cost_weighted_sparsity,
    global_sparsity,
    stage_target,
)

W = [0.1, 0.5, 0.9, 0.3]


def _h(w: float) -> float:
    return -w * math.log(w) - (1 - w) * math.log(1 - w)


def test_binary_entropy_by_hand():
    expected = sum(_h(w) for w in W) / len(W)
    assert binary_entropy(torch.tensor(W)).item() == pytest.approx(expected, rel=1e-6)


def test_binary_entropy_is_finite_at_the_boundary():
    w = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    loss = binary_entropy(w)
    loss.backward()
    assert loss.item() == pytest.approx(_h(0.5) / 3, abs=1e-4)
    assert torch.isfinite(w.grad).all()


def test_global_sparsity_sum_and_mean():
    assert global_sparsity(torch.tensor(W)).item() == pytest.approx(1.8)
    assert global_sparsity(torch.tensor(W), "mean").item() == pytest.approx(0.45)
    with pytest.raises(ValueError, match="reduction"):
        global_sparsity(torch.tensor(W), "max")


def test_stage_target_by_hand():
    groups = torch.tensor([0, 0, 1, 1])
    expected = 0.0
    for ws in ([0.1, 0.5], [0.9, 0.3]):
        m = sum(ws) / 2
        r = min(2 / len(ws), 0.5)
        expected += sum(_h(w) for w in ws) / 2 - (r * math.log(m) + (1 - r) * math.log(1 - m))
    assert stage_target(torch.tensor(W), groups).item() == pytest.approx(expected, rel=1e-6)


def test_stage_target_ratio_for_large_stage():
    # 8 weights: target ratio 2/8 = 0.25, minimised (cross-entropy part) when the mean is 0.25.
    w = torch.full((8,), 0.25)
    ce = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert stage_target(w, torch.zeros(8, dtype=torch.long)).item() == pytest.approx(_h(0.25) + ce, rel=1e-6)


def test_cost_weighted_sparsity_by_hand():
    costs = torch.tensor([1.0, 1.0, 2.0, 4.0])  # mean 2
    expected = 0.1 * 0.5 + 0.5 * 0.5 + 0.9 * 1.0 + 0.3 * 2.0
    assert cost_weighted_sparsity(torch.tensor(W), costs).item() == pytest.approx(expected)
    # Equal costs reduce to the global sparsity loss.
    assert cost_weighted_sparsity(torch.tensor(W), torch.full((4,), 7.0)).item() == pytest.approx(1.8)


def test_registry_wrappers_use_context():
    ctx = RegContext(keys=list("abcd"), groups=torch.tensor([0, 0, 1, 1]), costs=torch.tensor([1.0, 1, 2, 4]))
    w = torch.tensor(W)
    assert REGULARIZERS.get("global_sparsity")(w, ctx, reduction="mean").item() == pytest.approx(0.45)
    assert REGULARIZERS.get("stage_target")(w, ctx).item() == pytest.approx(stage_target(w, ctx.groups).item())
    assert REGULARIZERS.get("cost_weighted_sparsity")(w, ctx).item() == pytest.approx(
        cost_weighted_sparsity(w, ctx.costs).item())
    assert set(REGULARIZERS.names()) >= {"binary_entropy", "global_sparsity", "stage_target",
                                         "cost_weighted_sparsity"}


@pytest.mark.parametrize(("old", "new"), [("REGULARISERS", "REGULARIZERS"), ("Regulariser", "Regularizer"),
                                          ("register_regulariser", "register_regularizer")])
def test_the_british_spellings_still_work_and_name_the_new_one(old, new):
    import sparseconn.regularizers as regularizers

    with pytest.warns(DeprecationWarning, match=rf"^sparseconn\.regularizers\.{old} is deprecated; use {new}$"):
        value = getattr(regularizers, old)
    assert value is getattr(regularizers, new)


def test_an_unknown_regularizer_is_named_as_one():
    with pytest.raises(KeyError, match=r"^unknown regularizer 'global_sparse' \(did you mean 'global_sparsity'\?\)"):
        REGULARIZERS.get("global_sparse")
