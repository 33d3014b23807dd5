"""`camcli evaluate`'s leaderboard: ranks per score (ties shared), the mean rank, who leads on what, the plot."""

from __future__ import annotations

import pytest

from camcli.jobs.eval_summary import (
    MethodSummary,
    leaderboard,
    leaders,
    leaders_line,
    mean_rank,
    metric_rows,
    plot_leaderboard,
    ranks,
)


def _summary(name: str, baseline: bool = False, **scores: list[float]) -> MethodSummary:
    return MethodSummary(name, baseline, {k: list(v) for k, v in scores.items()})


@pytest.fixture()
def summaries() -> dict[str, MethodSummary]:
    # deletion: lower is better; insertion: higher is better
    return {
        "a": _summary("a", deletion_auc=[0.1, 0.3], insertion_auc=[0.5, 0.5]),  # deletion 0.2 · insertion 0.5
        "b": _summary("b", deletion_auc=[0.2, 0.2], insertion_auc=[0.9, 0.7]),  # deletion 0.2 · insertion 0.8
        "c": _summary("c", deletion_auc=[0.1, 0.1], insertion_auc=[0.2, 0.2]),  # deletion 0.1 · insertion 0.2
        "random": _summary("random", True, deletion_auc=[0.5, 0.5], insertion_auc=[0.6, 0.6]),  # 0.5 · 0.6
    }


def test_ranks_by_hand(summaries):
    table = ranks(summaries)
    # deletion (↓): c 0.1 → 1; a and b tie at 0.2 → ranks 2 and 3 shared: 2.5 each; random 0.5 → 4
    assert {n: table[n]["deletion_auc"] for n in table} == {"c": 1, "a": 2.5, "b": 2.5, "random": 4}
    # insertion (↑): b 0.8 → 1, random 0.6 → 2, a 0.5 → 3, c 0.2 → 4
    assert {n: table[n]["insertion_auc"] for n in table} == {"b": 1, "random": 2, "a": 3, "c": 4}
    # mean ranks: b (2.5 + 1) / 2 = 1.75; c 2.5; a 2.75; random 3
    assert mean_rank(table["b"]) == pytest.approx(1.75)
    assert leaderboard(summaries) == ["b", "c", "a", "random"]


def test_leaders_are_methods_not_baselines(summaries):
    assert leaders(summaries) == {"deletion_auc": ["c"], "insertion_auc": ["b"]}
    assert leaders_line(summaries) == "leads: deletion AUC ↓ c · insertion AUC ↑ b"
    alone = {"a": summaries["a"], "random": summaries["random"]}
    assert leaders_line(alone) == ""  # one method leads nothing


def test_table_is_ordered_by_rank_with_costs(summaries):
    for name, forwards in (("a", [1.0, 1.0]), ("b", [1.0, 1.0]), ("c", [129.0, 129.0])):  # from the records
        summaries[name].values["map_forwards"] = forwards
    columns, rows = metric_rows(summaries, {"a": 9, "b": 9, "c": 9, "random": 9})
    assert columns == [
        "method",
        "n",
        "deletion AUC ↓",
        "insertion AUC ↑",
        "rank ↓",
        "map forwards/img",
        "metric forwards/img",
    ]
    assert [r[0] for r in rows] == ["b", "c", "a", "random (baseline)"]
    assert rows[0][4] == "1.8" and rows[1][5] == "129" and rows[3][5] == ""  # a baseline costs no pass of its own


def test_plot(tmp_path, summaries):
    path = tmp_path / "leaderboard.png"
    assert plot_leaderboard(summaries, path, "test")
    from PIL import Image

    assert Image.open(path).size[0] > 300
    assert not plot_leaderboard({"a": summaries["a"]}, tmp_path / "none.png", "one method")
    assert not (tmp_path / "none.png").exists()


def test_forward_counter_charges_each_method(resnet18):
    import torch

    from camcli.methods.costs import SHARED, charged, counting_forwards

    x = torch.randn(2, 3, 32, 32)
    with counting_forwards(resnet18) as counter:
        resnet18(x)  # shared: 2 rows
        with charged("scorecam"):
            resnet18(torch.randn(5, 3, 32, 32))  # 5 masked copies
    resnet18(x)  # outside the block: not counted, and no hook is left behind
    assert counter.rows == {SHARED: 2, "scorecam": 5}
    assert counter.per_image("scorecam", 2) == 3.5 and counter.per_image("gradcam", 2) == 1
    assert not resnet18._forward_pre_hooks


def test_explain_charges_each_method_its_own_passes(resnet18):
    import torch

    from camcli.methods import explain, get_method
    from camcli.methods.costs import SHARED, counting_forwards

    x = torch.randn(2, 3, 32, 32)
    methods = [get_method("gradcam"), get_method("scorecam"), get_method("saliency")]
    with counting_forwards(resnet18) as counter:
        explain(resnet18, x, "layer1", methods, top_k=2, score_batch=16)
    assert counter.rows[SHARED] == 2  # the one pass that scores the batch and records the layer
    assert counter.rows["gradcam"] == 0  # gradients of the shared pass only
    # saliency: one forward (and backward) of the batch per class slot: 2 slots × 2 images
    assert counter.rows["saliency"] == 4
    # Score-CAM: one masked copy per channel of layer1 (64) whose mask is not all zero, per image, shared by the
    # class slots; all-zero channels cost one pass per image together
    assert 2 <= counter.rows["scorecam"] <= 2 * 65
