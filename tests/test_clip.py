"""Image–text models and Hugging Face heads: a tiny CLIPModel saved with save_pretrained (its tokenizer built from
a hand-written vocabulary, offline), an open_clip model built without weights, Hugging Face configs that say their
head (problem_type) or have none (a backbone). Maps against pytorch-grad-cam's CLIP recipe on the same tensor."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.engine.targets import Target
from camcli.jobs.targeting import prompt_scorer
from camcli.methods import explain, get_method
from camcli.models import load_model, preprocess
from camcli.options import Layout

from .conftest import SAMPLES

transformers = pytest.importorskip("transformers")
runner = CliRunner()
CAT = str(SAMPLES / "chelsea.png")
PROMPTS = ["a photo of a cat", "a dog"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A random CLIPModel (32×32 pictures, patches of 8) with a byte-level BPE tokenizer of a few merges."""
    from tokenizers import pre_tokenizers

    folder = tmp_path_factory.mktemp("tiny_clip")
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder


def _corr(ours: torch.Tensor, theirs, size) -> float:
    up = torch.nn.functional.interpolate(ours[None, None], size=size, mode="bilinear")[0, 0]
    up = (up - up.min()) / (up.max() - up.min() + 1e-7)
    return float(torch.corrcoef(torch.stack([up.flatten(), torch.as_tensor(theirs).flatten()]))[0, 1])


def _tokens_to_grid(tensor: torch.Tensor, side: int = 4) -> torch.Tensor:
    """pytorch-grad-cam's ViT recipe: drop the class token, cells back into a grid, channels first."""
    return tensor[:, 1:, :].reshape(tensor.size(0), side, side, tensor.size(2)).permute(0, 3, 1, 2)


def test_hf_clip_prompt_maps_equal_pytorch_grad_cams_clip_recipe(clip_folder):
    loaded = load_model(str(clip_folder))
    assert loaded.embedding and loaded.prefix_tokens == 1 and loaded.input_size == (32, 32)
    assert loaded.default_layer == "vision_model.encoder.layers.1.layer_norm1"
    scorer = prompt_scorer(loaded, PROMPTS)
    x = preprocess(Image.open(CAT).convert("RGB"), loaded)[None]
    layer = loaded.default_layer
    clip = transformers.CLIPModel.from_pretrained(str(clip_folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(clip_folder))
    text = tok(PROMPTS, padding=True, return_tensors="pt")

    class ImageClassifier(nn.Module):  # pytorch-grad-cam's CLIP tutorial: logits_per_image for fixed texts
        def __init__(self) -> None:
            super().__init__()
            self.model = clip

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixels, **text).logits_per_image

    wrapper = ImageClassifier().eval()
    with torch.no_grad():  # the scores: cosine similarities, computed here with transformers' own call
        logits = wrapper(x)
    expected = logits / clip.logit_scale.exp()
    for i in range(len(PROMPTS)):
        ex = explain(loaded.module, x, layer, get_method("gradcam"), targets=[Target(i)], scorer=scorer,
                     layouts={layer: Layout("tokens", 1)})  # fmt: skip
        torch.testing.assert_close(ex.logits, expected, atol=1e-5, rtol=1e-4)
        target_layer = clip.vision_model.encoder.layers[-1].layer_norm1
        with GradCAM(wrapper, [target_layer], reshape_transform=_tokens_to_grid) as cam:
            theirs = cam(x, [ClassifierOutputTarget(i)])[0]
        assert _corr(ex.maps[0, 0], theirs, (32, 32)) > 0.99


def test_hf_clip_through_the_cli(clip_folder, tmp_path):
    out = tmp_path / "o"
    args = ["gradcam", CAT, "--model", str(clip_folder), "--out", str(out)]
    r = runner.invoke(app, [*args, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [rec["class_name"] for rec in recs] == PROMPTS  # every prompt is a target
    assert all(-1 <= rec["probability"] <= 1 for rec in recs)
    assert "head identity (cosine similarity to 2 prompt(s))" in r.output
    assert recs[0]["outputs"]["overlay"].endswith(".0-a_photo_of_a_cat.png")
    r = runner.invoke(app, args)  # no prompt: an image–text model has no classes
    assert r.exit_code == 2 and "--reference" in r.output
    r = runner.invoke(app, ["gradcam", CAT, "--weights", "none", "--model", "resnet18", "--prompt", "a cat",
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code == 2 and "image–text model" in r.output


def test_open_clip_built_without_weights(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    }
    (tmp_path / "camcli-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    loaded = load_model("open_clip:camcli-tiny-vit", "none")
    assert loaded.random_weights and loaded.prefix_tokens == 1
    assert loaded.default_layer == "visual.transformer.resblocks.1.ln_1"
    scorer = prompt_scorer(loaded, PROMPTS)
    x = preprocess(Image.open(CAT).convert("RGB"), loaded)[None]
    whole = loaded.module._whole
    tokens = open_clip.get_tokenizer("camcli-tiny-vit")(PROMPTS)

    class Wrapper(nn.Module):  # open_clip's zero-shot recipe: cosine of normalised image and text features
        def __init__(self) -> None:
            super().__init__()
            self.model = whole

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            img = self.model.encode_image(pixels, normalize=True)
            txt = self.model.encode_text(tokens, normalize=True)
            return img @ txt.T

    wrapper = Wrapper().eval()
    layer = loaded.default_layer
    ex = explain(loaded.module, x, layer, get_method("gradcam"), targets=[Target(1)], scorer=scorer,
                 layouts={layer: Layout("tokens", 1)})  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(ex.logits, wrapper(x), atol=1e-5, rtol=1e-4)
    with GradCAM(wrapper, [whole.visual.transformer.resblocks[-1].ln_1], reshape_transform=_tokens_to_grid) as cam:
        theirs = cam(x, [ClassifierOutputTarget(1)])[0]
    assert _corr(ex.maps[0, 0], theirs, (32, 32)) > 0.99
    # open_clip names need weights said: none, a tag, or a file
    with pytest.raises(Exception, match="needs --weights"):
        load_model("open_clip:camcli-tiny-vit")


def _vit_config(**kwargs):
    return transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  image_size=32, patch_size=8, **kwargs)  # fmt: skip


def test_hf_problem_type_says_the_head(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "multi"
    config = _vit_config(num_labels=3, problem_type="multi_label_classification")
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    r = runner.invoke(app, ["gradcam", CAT, "--model", str(folder), "--threshold", "0.0", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "head sigmoid (Hugging Face problem_type multi_label_classification)" in r.output
    recs = [json.loads(line) for line in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and sum(rec["probability"] for rec in recs) != pytest.approx(1.0)  # independent labels


def test_hf_backbone_is_an_embedding_model(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "backbone"
    transformers.ViTModel(_vit_config()).save_pretrained(folder)
    loaded = load_model(str(folder))
    assert loaded.embedding and not loaded.categories
    out = tmp_path / "o"
    r = runner.invoke(app, ["gradcam", CAT, "--model", str(folder), "--out", str(out)])
    assert r.exit_code == 2 and "no classifier head" in r.output
    coffee = str(SAMPLES / "coffee.png")
    r = runner.invoke(app, ["gradcam", CAT, "--model", str(folder), "--reference", coffee, "--out", str(out)])
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    with torch.no_grad():  # the pooled output's cosine similarity, computed with transformers
        model = transformers.ViTModel.from_pretrained(str(folder)).eval()
        a, b = (model(preprocess(Image.open(p).convert("RGB"), loaded)[None]).pooler_output for p in (CAT, coffee))
    assert rec["probability"] == pytest.approx(torch.nn.functional.cosine_similarity(a, b).item(), abs=1e-4)


def test_hf_siglip_has_no_class_token(tmp_path):
    # SigLIP pools its patch tokens (no class token); its tokenizer here: a tokenizers-backed BPE built offline
    folder = tmp_path / "siglip"
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials)}
    vocab |= {f"<0x{b:02X}>": len(specials) + b for b in range(256)}
    for ch in [*"abcdefghijklmnopqrstuvwxyz▁", "ca"]:
        vocab[ch] = len(vocab)
    tok = transformers.Siglip2Tokenizer(vocab=vocab, merges=[("c", "a")], model_max_length=16)
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=len(vocab) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.SiglipModel(config).save_pretrained(folder)
    images = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    transformers.SiglipProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    loaded = load_model(str(folder))
    assert loaded.prefix_tokens == 0 and loaded.embedding and loaded.encode_text is not None
    out = tmp_path / "o"
    r = runner.invoke(app, ["gradcam", CAT, "--model", str(folder), "--prompt", "a cat", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    model = transformers.SiglipModel.from_pretrained(str(folder)).eval()
    text = transformers.AutoTokenizer.from_pretrained(str(folder))(["a cat"], padding="max_length", max_length=16,
                                                                  truncation=True, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        img = model.get_image_features(pixel_values=preprocess(Image.open(CAT).convert("RGB"), loaded)[None])
        txt = model.get_text_features(**text)
    img, txt = (v if isinstance(v, torch.Tensor) else v.pooler_output for v in (img, txt))
    assert rec["probability"] == pytest.approx(torch.nn.functional.cosine_similarity(img, txt).item(), abs=1e-4)
