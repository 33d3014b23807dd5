"""Targets and heads (engine.scoring, engine.targets): each target's map against a hand-computed gradient and
against pytorch-grad-cam with the matching target on the same tensor; the head's probabilities by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget
from torch import nn

from camcli.engine.scoring import Scorer, Slots, choose
from camcli.engine.targets import Target, parse_target, parse_targets
from camcli.errors import TargetError
from camcli.methods import explain, get_method
from camcli.metrics.faithfulness import class_probs, drop_increase
from camcli.models.archs import missing_head

from .test_methods import SpatialNet, X


def test_not_negates_the_explained_score_by_hand():
    # SpatialNet, class 0: Grad-CAM weights [3/4, 1/4], map X/2 (test_methods). not:0: weights −[3/4, 1/4], map
    # −X/2 = [[−.5, −1], [0, .5]] → ReLU [[0, 0], [0, .5]] → min-max [[0, 0], [0, 1]]
    ex = explain(SpatialNet().eval(), X, "feat", get_method("gradcam"), targets=[Target(0, negate=True)])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]), atol=1e-6, rtol=0)
    assert ex.signs is not None and ex.signs.tolist() == [[-1.0]]


def test_cam_against_negates_the_classifier_weights_by_hand(tiny):
    # TinyNet: CAM of class 1 is 0.5·X + 1·X/2 = X; not:1 is −X = [[−1, −2], [0, 1]] → ReLU, min-max [[0, 0], [0, 1]]
    ex = explain(tiny, X, "feat", get_method("cam"), targets=[Target(1, True)])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


class Negated(nn.Module):
    """The model with its output negated: explaining its logit is explaining ``not:`` of the original."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.inner(x)


@pytest.fixture(scope="module")
def binary():
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=1).eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "scorecam"])
def test_binary_against_is_the_map_of_the_negated_logit(binary, method):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    m = get_method(method)
    layer = "layer2" if method == "scorecam" else "layer4"  # Score-CAM: a forward per channel, 128 here, not 512
    against = explain(binary, x, layer, m, targets=[Target(0, True)], score_batch=64)
    negated = explain(Negated(binary).eval(), x, f"inner.{layer}", get_method(method), targets=[0], score_batch=64)
    torch.testing.assert_close(against.maps, negated.maps, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("target", "category"), [(Target(0), 1), (Target(0, True), 0)])
def test_binary_targets_equal_pytorch_grad_cam(binary, target, category):
    # BinaryClassifierOutputTarget(1) is the logit and (0) its negative, whatever the prediction: camcli's 0 and
    # not:0 (its issue #428 is about *choosing* the category from the prediction, which camcli never does)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    ours = explain(binary, x, "layer4", get_method("gradcam"), targets=[target]).maps[:, 0]
    with GradCAM(binary, [binary.layer4]) as cam:
        theirs = cam(x, [BinaryClassifierOutputTarget(category)] * 2)
    ours_up = torch.nn.functional.interpolate(ours[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    for a, b in zip(ours_up, theirs, strict=True):  # both normalised to [0, 1]; theirs resized with OpenCV
        a = (a - a.min()) / (a.max() - a.min() + 1e-7)
        assert torch.corrcoef(torch.stack([a.flatten(), torch.from_numpy(b).flatten()]))[0, 1] > 0.99


def test_scorecam_against_equals_pytorch_grad_cam(binary):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    # layer3: half the forwards of layer4 (one per channel, on both sides), and a map that tells the signs apart
    # better (the logit's own map correlates 0.94 with not:'s here, 0.96 at layer4, 0.996 at layer2)
    ours = explain(binary, x, "layer3", get_method("scorecam"), targets=[Target(0, True)], score_batch=64).maps[0, 0]
    with ScoreCAM(binary, [binary.layer3]) as cam:
        cam.batch_size = 64
        theirs = torch.from_numpy(cam(x, [BinaryClassifierOutputTarget(0)])[0])
    ours_up = torch.nn.functional.interpolate(ours[None, None], size=(64, 64), mode="bilinear")[0, 0]
    ours_up = (ours_up - ours_up.min()) / (ours_up.max() - ours_up.min() + 1e-7)
    assert torch.corrcoef(torch.stack([ours_up.flatten(), theirs.flatten()]))[0, 1] > 0.99


def test_multilabel_and_regression_maps_are_the_raw_outputs_maps():
    # the head changes the probabilities shown, never the scalar explained: the label's (or output's) raw value,
    # as pytorch-grad-cam's ClassifierOutputTarget on raw logits
    torch.manual_seed(2)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    for head in ("sigmoid", "identity"):
        ex = explain(model, x, "layer4", get_method("gradcam"), targets=[3], scorer=Scorer(head))
        with GradCAM(model, [model.layer4]) as cam:
            theirs = cam(x, [ClassifierOutputTarget(3)] * 2)
        up = torch.nn.functional.interpolate(ex.maps[:, :1], size=(64, 64), mode="bilinear")[:, 0]
        for a, b in zip(up, theirs, strict=True):
            a = (a - a.min()) / (a.max() - a.min() + 1e-7)
            assert torch.corrcoef(torch.stack([a.flatten(), torch.from_numpy(b).flatten()]))[0, 1] > 0.99
        logits = model(x).detach()
        expected = logits.sigmoid() if head == "sigmoid" else logits
        torch.testing.assert_close(ex.probs, expected, atol=1e-5, rtol=0)


class CosineTarget:
    """pytorch-grad-cam's tutorial target for embeddings ("SimilarityToConceptTarget"): the cosine similarity of
    the model's output to a concept's features, written here as the tutorial writes it."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return torch.nn.CosineSimilarity(dim=0)(model_output, self.features)


def test_similarity_to_a_concept_equals_pytorch_grad_cams_concept_target():
    torch.manual_seed(3)
    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    model.eval()
    x, ref = torch.randn(2, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        concept = model(ref)[0]
    scorer = Scorer("identity", torch.nn.functional.normalize(concept[None], dim=1), ["ref"])
    ex = explain(model, x, "layer4", get_method("gradcam"), targets=[0], scorer=scorer)
    with torch.no_grad():  # the score is the cosine similarity, computed here independently
        emb = model(x)
    expected = torch.nn.functional.cosine_similarity(emb, concept[None], dim=1)
    torch.testing.assert_close(ex.logits[:, 0], expected, atol=1e-5, rtol=0)
    with GradCAM(model, [model.layer4]) as cam:
        theirs = cam(x, [CosineTarget(concept)] * 2)
    up = torch.nn.functional.interpolate(ex.maps, size=(64, 64), mode="bilinear")[:, 0]
    for a, b in zip(up, theirs, strict=True):
        a = (a - a.min()) / (a.max() - a.min() + 1e-7)
        assert torch.corrcoef(torch.stack([a.flatten(), torch.from_numpy(b).flatten()]))[0, 1] > 0.99


def test_head_probabilities_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    soft = Scorer("softmax").probabilities(logits)
    e = [math.exp(2), 1.0, math.exp(-1)]
    torch.testing.assert_close(soft, torch.tensor([[v / sum(e) for v in e]]))
    sig = Scorer("sigmoid").probabilities(logits)
    torch.testing.assert_close(sig, torch.tensor([[1 / (1 + math.exp(-v)) for v in (2.0, 0.0, -1.0)]]))
    torch.testing.assert_close(Scorer("identity").probabilities(logits), logits)
    # a negated target: 1 − p where p is a probability, −value where it is a raw value
    assert Scorer("sigmoid").slot_probability(sig[0], 0, True) == pytest.approx(1 - 1 / (1 + math.exp(-2)))
    assert Scorer("identity").slot_probability(logits[0], 2, True) == pytest.approx(1.0)


def test_threshold_picks_every_label_at_least_that_probable():
    # sigmoid of [2, 0, −1, 1] = [.88, .5, .27, .73]; of [−3, −2, −4, −1] = [.05, .12, .02, .27]
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0], [-3.0, -2.0, -4.0, -1.0]])
    classes, signs, valid = choose(logits, Scorer("sigmoid"), None, 1, threshold=0.5)
    assert classes.shape == (2, 3)  # the most labels any image has
    assert classes[0].tolist() == [0, 3, 1] and valid[0].tolist() == [True, True, True]
    assert valid[1].tolist() == [False, False, False]  # no label of the second image reaches 0.5
    assert signs.tolist() == [[1.0] * 3] * 2


def test_parse_targets():
    names = ["cat", "dog", "tabby cat"]
    assert parse_targets(["not:dog", "0", "not:1"], names) == [Target(1, True), Target(0)]
    assert str(parse_target("NOT: cat", names)) == "not:0"
    # a binary head named "no_cat"/"cat" with --labels: the negative's name is not:0
    assert parse_target("no_cat", ["cat"], negative="no_cat") == Target(0, True)
    with pytest.raises(TargetError, match="not:0"):
        parse_target("1", ["cat"])  # one output: the message names the way to say "against"
    with pytest.raises(TargetError, match="name what to negate"):
        parse_target("not:", names)


def test_metrics_read_the_heads_probability():
    torch.manual_seed(4)
    model = torchvision.models.resnet18(num_classes=1).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        p = model(x)[:, 0].sigmoid()
    classes = torch.zeros(3, dtype=torch.long)
    got = class_probs(model, x, Slots(classes, None, Scorer("sigmoid")), 2)
    torch.testing.assert_close(got, p, atol=1e-6, rtol=0)
    against = class_probs(model, x, Slots(classes, -torch.ones(3), Scorer("sigmoid")), 2)
    torch.testing.assert_close(against, 1 - p, atol=1e-6, rtol=0)
    # softmax of one logit is always 1: what evaluate measured before heads were read
    assert class_probs(model, x, classes, 2).tolist() == [1.0, 1.0, 1.0]
    # identity: a negative score has no "drop" as a share of it
    drop, _ = drop_increase(model, x, torch.ones(3, 32, 32), Slots(classes, None, Scorer("identity")))
    with torch.no_grad():
        raw = model(x)[:, 0]
    assert all(math.isnan(d) for d, r in zip(drop.tolist(), raw.tolist(), strict=True) if r < 0)


@pytest.mark.parametrize(
    ("arch", "head", "expected"),
    [
        ("resnet18", "fc", "fc"),
        ("efficientnet_b0", "classifier.1", "classifier.1"),
        ("vit_b_16", "heads", "heads.head"),  # the Sequential's only Linear: the same function
    ],
)
def test_missing_head_finds_the_removed_classifier(arch, head, expected):
    model = torchvision.models.get_model(arch, weights=None)
    sig = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.set_submodule(head, nn.Identity())
    assert missing_head(model.state_dict(), sig) == expected


def test_missing_head_is_never_a_block_inside():
    model = torchvision.models.resnet18(weights=None)
    sig = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer4.1.")}
    assert missing_head(state, sig) is None


def test_an_out_of_memory_retry_keeps_each_half_with_its_inputs():
    from camcli.jobs.runner import compute_with_retry

    class Job:
        batch_inputs = ("a", "b", "c")
        picture_sizes = ((1, 1), (2, 2), (3, 3))

        def __init__(self) -> None:
            self.seen: list[tuple[int, tuple[str, ...], int]] = []

        def compute(self, x):
            if x.shape[0] > 1:
                raise RuntimeError("CUDA out of memory")
            self.seen.append((int(x[0]), self.batch_inputs, len(self.picture_sizes)))
            return [int(x[0])]

    job = Job()
    assert compute_with_retry(job, torch.arange(3)) == [0, 1, 2]
    assert job.seen == [(0, ("a",), 1), (1, ("b",), 1), (2, ("c",), 1)]
    assert job.batch_inputs == ("a", "b", "c")  # restored


def test_loading_a_checkpoint_leaves_the_callers_safe_globals(tmp_path):
    import argparse

    from camcli.models.checkpoints import read_file

    torch.save({"state_dict": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=1)}, tmp_path / "c.pt")
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        read_file(tmp_path / "c.pt", trust=False)
        assert argparse.Namespace in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_an_embedding_checkpoint_has_no_classes(tmp_path):
    from camcli.models import load_model

    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    torch.save(model.state_dict(), tmp_path / "e.pt")
    loaded = load_model(str(tmp_path / "e.pt"))
    assert loaded.embedding and loaded.categories == []
    assert not any("read as class scores" in n for n in loaded.notes)


def test_negating_words_never_match_the_class_itself():
    with pytest.raises(TargetError, match="no class named 'no_cat'"):
        parse_target("no_cat", ["cat", "dog"])
    with pytest.raises(TargetError, match="no class named 'no tabby'"):
        parse_target("no tabby", ["tabby", "dog"])
    assert parse_target("tabby", ["tabby cat", "dog"]) == Target(0)  # the shorthand still works
    with pytest.raises(TargetError):  # a targets file's label: the exact name only
        parse_target("c", ["cat", "dog"], exact=True)
    with pytest.raises(TargetError, match="cannot be nested"):
        parse_target("not:not:0", ["cat"])
    assert parse_target("not:cat", ["not:cat", "cat"]) == Target(0)  # a class with that very name


def test_similarity_of_a_tiny_embedding_is_its_cosine():
    concept = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 0.0]]), dim=1)
    emb = torch.tensor([[1.0, 0.0, 0.0]]) * 1e-14  # F.normalize would clamp its norm at 1e-12
    assert Scorer("identity", concept, ["c"]).scores(emb).item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)


def test_own_class_outputs_of_the_wrong_shape_are_refused():
    from camcli.errors import ModelError
    from camcli.models.base import LoadedModel
    from camcli.models.outputs import with_outputs

    class FourD(nn.Module):
        def forward(self, x):
            return x

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(x.mean((2, 3))), x

    with pytest.raises(ModelError, match=r"output has shape \(1, 3, 224, 224\).*--reference"):
        with_outputs(LoadedModel("four", FourD()), None)
    loaded = with_outputs(LoadedModel("pair", Pair()), None)
    assert loaded.num_classes == 4 and any("the first, of shape (1, 4)" in n for n in loaded.notes)


def test_binary_labels_must_name_two_sides(tmp_path):
    from camcli.errors import UsageError
    from camcli.models.labels import read_labels

    (tmp_path / "same.txt").write_text("same\nsame\n")
    with pytest.raises(UsageError, match="name them apart"):
        read_labels(str(tmp_path / "same.txt"), 1)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(UsageError, match="give 1 name, or 2"):
        read_labels(str(tmp_path / "three.txt"), 1)


def test_lightning_attribute_dicts_load_safely(tmp_path, monkeypatch):
    import sys
    import types

    from camcli.models.checkpoints import read_file

    # standalone pytorch-lightning 2.x pickles its AttributeDict under lightning_fabric
    for name in ("lightning_fabric", "lightning_fabric.utilities", "lightning_fabric.utilities.data"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    attribute_dict = type("AttributeDict", (dict,), {"__module__": "lightning_fabric.utilities.data"})
    sys.modules["lightning_fabric.utilities.data"].AttributeDict = attribute_dict
    hp = attribute_dict(lr=0.1)
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": hp}, tmp_path / "l.ckpt")
    monkeypatch.delitem(sys.modules, "lightning_fabric.utilities.data")  # camcli never imports it
    _, obj = read_file(tmp_path / "l.ckpt", trust=False)
    assert obj["hyper_parameters"] == {"lr": 0.1}
