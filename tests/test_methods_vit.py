"""The transformer-native maps (rollout, gradrollout, legrad) and the attention they read (camcli.engine.attention):
a hand-computed two-block transformer, the recorded attention against independent computations and the modules'
own outputs for each family (torchvision, timm ViT / register tokens / EVA, Hugging Face ViT), legrad against
torchcam's LeGrad, rollout and gradrollout against a from-scratch timm forward, and the one-line refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.engine.attention import attention_sites, recording
from camcli.engine.readout import patch_grid, readout_rows
from camcli.errors import LayerError
from camcli.methods import explain, get_method
from camcli.methods.whole import ModelContext

from .conftest import SAMPLES

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
LN2, LN3 = math.log(2), math.log(3)


# ------------------------------------------------------------------------------------------------ the hand case
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attention = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.self_attention(x, x, x, need_weights=False)[0]


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(Block(), Block())
        self.ln = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(x))


class VisionTransformer(nn.Module):
    """A torchvision-shaped ViT (the name and ``class_token`` say 1 prefix token; ``encoder.ln`` and ``heads`` are
    LeGrad's norm and head) whose attention is known. Tokens have 4 dims: 0–1 are read by the keys and values and
    never written (the attention output goes to dims 2–3 only), so both blocks see the same keys and values.
    An input (1, 3, 16, 32) is 2 patches of 16 × 16: patch token = (0, mean of channel 0, 0, 0); class token
    (ln 2, 0, 0, 0). Two heads of dim 2; q = (√2, 0) for every token, so the logits q·k/√2 are k's first entry:
      block 1, head 1: k = t₀ → logits (ln2, 0, 0) for (cls, p1, p2) → every row (1/2, 1/4, 1/4)
      block 1, head 2: k = t₁ → logits (0, ln3, 0) with p1 = (0, ln 3, …) → every row (1/5, 3/5, 1/5)
      block 2, head 1: k = 2·t₀ → logits (ln4, 0, 0) → every row (2/3, 1/6, 1/6)
      block 2, head 2: k = 0 → every row (1/3, 1/3, 1/3)
    Values (first entry; the second is 0): head 1 s = −1 + (2/ln2)·t₀ + (3/ln3)·t₁ = (1, 2, −1) for (cls, p1, p2);
    head 2 u = 1 − (1/ln2)·t₀ − (2/ln3)·t₁ = (0, −1, 1). out_proj writes head 1's output to dim 2, head 2's to
    dim 3; the class score is y₀ = x_cls[2] + x_cls[3] (y₁ = −y₀)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, 4, 16, stride=16)
        self.class_token = nn.Parameter(torch.tensor([[[LN2, 0.0, 0.0, 0.0]]]))
        self.encoder = Encoder()
        self.heads = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv_proj.weight.zero_()
            self.conv_proj.weight[1, 0] = 1 / 256
            self.conv_proj.bias.zero_()
            self.heads.weight.copy_(torch.tensor([[0.0, 0, 1, 1], [0, 0, -1, -1]]))
            for i, block in enumerate(self.encoder.layers):
                m = block.self_attention
                w = torch.zeros(12, 4)
                b = torch.zeros(12)
                b[0] = b[2] = math.sqrt(2)  # q
                if i == 0:
                    w[4, 0], w[6, 1] = 1.0, 1.0  # k: head 1 reads t₀, head 2 t₁
                else:
                    w[4, 0] = 2.0  # k: head 1 reads 2·t₀, head 2 nothing
                w[8, 0], w[8, 1], b[8] = 2 / LN2, 3 / LN3, -1.0  # v head 1
                w[10, 0], w[10, 1], b[10] = -1 / LN2, -2 / LN3, 1.0  # v head 2
                m.in_proj_weight.copy_(w)
                m.in_proj_bias.copy_(b)
                m.out_proj.weight.zero_()
                m.out_proj.weight[2, 0] = m.out_proj.weight[3, 2] = 1.0
                m.out_proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv_proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.class_token.expand(x.shape[0], -1, -1), t], dim=1)
        return self.heads(self.encoder(t)[:, 0])


def hand_input() -> torch.Tensor:
    x = torch.zeros(1, 3, 16, 32)
    x[:, 0, :, :16] = LN3  # patch 1's mean is ln 3; patch 2's is 0
    return x


def raw(name: str, model: nn.Module, x: torch.Tensor, classes: list[int], signs: list[float] | None = None):
    ctx = ModelContext(model, x, torch.tensor(classes), torch.tensor(signs or [1.0] * len(classes)))
    with torch.no_grad():
        return get_method(name).model_map(ctx)  # type: ignore[attr-defined]


def test_rollout_hand_computed():
    # heads averaged: block 1 every row (0.35, 0.425, 0.225); block 2 every row (0.5, 0.25, 0.25)
    # Â = 0.5·A + 0.5·I: Â₁ rows (0.675, 0.2125, 0.1125), (0.175, 0.7125, 0.1125), (0.175, 0.2125, 0.6125)
    #                    Â₂ row 0 (0.75, 0.125, 0.125)
    # (Â₂Â₁) row 0 = 0.75·(0.675, 0.2125, 0.1125) + 0.125·(0.175, 0.7125, 0.1125) + 0.125·(0.175, 0.2125, 0.6125)
    #              = (0.55, 0.275, 0.175): the map over the two patches is (0.275, 0.175)
    model = VisionTransformer().eval()
    torch.testing.assert_close(raw("rollout", model, hand_input(), [0]), torch.tensor([[[0.275, 0.175]]]))
    # class-agnostic: the other class, or a negated one, gets the same map
    torch.testing.assert_close(raw("rollout", model, hand_input(), [1], [-1.0]), torch.tensor([[[0.275, 0.175]]]))


def test_gradrollout_hand_computed():
    # y₀ = x_cls[2] + x_cls[3] takes each block's head-h output of the class token, Σ_j A_h[0, j]·value_h[j]: so
    # ∂y₀/∂A_h[0, j] = value_h[j] (s = (1, 2, −1) for head 1, u = (0, −1, 1) for head 2), and 0 in rows 1–2 (those
    # tokens' outputs land in dims 2–3, which neither a later key/value nor the head reads)
    # block 1: head 1 (1, 2, −1)⊙(1/2, 1/4, 1/4) = (0.5, 0.5, −0.25) → ReLU (0.5, 0.5, 0)
    #          head 2 (0, −1, 1)⊙(1/5, 3/5, 1/5) = (0, −0.6, 0.2) → (0, 0, 0.2);  Ā₁ row 0 = (0.25, 0.25, 0.1)
    # block 2: head 1 (1, 2, −1)⊙(2/3, 1/6, 1/6) → (2/3, 1/3, 0); head 2 (0, −1, 1)/3 → (0, 0, 1/3)
    #          Ā₂ row 0 = (1/3, 1/6, 1/6)
    # R₁ = I + Ā₁: row 0 (1.25, 0.25, 0.1), rows 1–2 the identity's
    # R₂ row 0 = R₁ row 0 + Ā₂ row 0 · R₁ = (1.25, 0.25, 0.1) + (1/3)(1.25, 0.25, 0.1) + (1/6)e₁ + (1/6)e₂
    #          = (5/3, 0.5, 0.3): the map is (0.5, 0.3)
    model = VisionTransformer().eval()
    torch.testing.assert_close(raw("gradrollout", model, hand_input(), [0]), torch.tensor([[[0.5, 0.3]]]))
    # not:0 explains −y₀: the gradients flip, (−s)⊙A₁ keeps only p2's 0.25 (head 1), −u⊙A₁ p1's 0.6 (head 2):
    # Ā₁ row 0 = (0, 0.3, 0.125); block 2: head 1 (0, 0, 1/6), head 2 (0, 1/3, 0) → Ā₂ row 0 = (0, 1/6, 1/12)
    # R₁ row 0 = (1, 0.3, 0.125); R₂ row 0 = R₁ row 0 + (1/6)e₁ + (1/12)e₂ = (1, 0.4667, 0.2083)
    torch.testing.assert_close(
        raw("gradrollout", model, hand_input(), [0], [-1.0]), torch.tensor([[[0.3 + 1 / 6, 0.125 + 1 / 12]]])
    )


def test_legrad_hand_computed():
    # block l's score is y₀ of the tokens' mean: (1/3)·Σ_i (z_i[2] + z_i[3]), so ∂s/∂A_h[i, j] = value_h[j] / 3 in
    # every row i (the attention itself is not multiplied in): ReLU → head 1 (1/3, 2/3, 0), head 2 (0, 0, 1/3);
    # the mean over heads and rows (1/6, 1/3, 1/6), the same in both blocks; less the class key: (1/3, 1/6)
    model = VisionTransformer().eval()
    torch.testing.assert_close(raw("legrad", model, hand_input(), [0]), torch.tensor([[[1 / 3, 1 / 6]]]))


# ------------------------------------------------------------------------------------------------ the families
def tv_vit() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()
    nn.init.normal_(m.heads.head.weight, std=0.2)  # torchvision starts its head at zero: every gradient would be 0
    return m


def timm_model(name: str, size: int = 32, **kw) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=5, img_size=size, depth=2, **kw).eval()


def hf_vit(kind: str = "vit") -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5)
    if kind == "deit":
        config = transformers.DeiTConfig(**small, image_size=32, patch_size=8)
        return transformers.DeiTForImageClassificationWithTeacher(config).eval()
    return transformers.ViTForImageClassification(transformers.ViTConfig(**small, image_size=32, patch_size=8)).eval()


FAMILIES = {
    "torchvision": (tv_vit, 32),
    "timm vit": (lambda: timm_model("vit_tiny_patch16_224", patch_size=8), 32),
    "timm registers": (lambda: timm_model("vit_small_patch14_reg4_dinov2", 28, embed_dim=32, num_heads=2), 28),
    "timm eva (rope)": (lambda: timm_model("eva02_tiny_patch14_224", 28), 28),
    "timm deit distilled": (lambda: timm_model("deit_tiny_distilled_patch16_224", patch_size=8), 32),
    "hf vit": (hf_vit, 32),
    "hf deit teacher": (lambda: hf_vit("deit"), 32),
}


def logits(out: object) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out  # type: ignore[return-value,attr-defined]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_recorded_pass_equals_the_modules_own(family):
    # the output with the probabilities read (explicit recomputation, timm's unfused path, HF's eager attention)
    # equals the model's own (fused / sdpa) output; the model's flags, hooks and grad mode are as they were
    build, size = FAMILIES[family]
    model = build()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = logits(model(x))
    sites = attention_sites(model)
    flags = [getattr(s.module, "fused_attn", None) for s in sites]
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    for grad in (False, True):
        with recording(model, sites, grad=grad) as rec, torch.no_grad():
            read = logits(model(x))
        torch.testing.assert_close(read, own, rtol=1e-5, atol=1e-5)
        assert len(rec.probs) == len(sites) == 2
        for p in rec.probs.values():
            torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))  # rows of probabilities
            assert p.requires_grad == grad
    assert [getattr(s.module, "fused_attn", None) for s in sites] == flags
    assert getattr(getattr(model, "config", None), "_attn_implementation", None) == impl
    assert torch.is_grad_enabled()  # restored
    assert all(not s.module._forward_hooks and not s.module._forward_pre_hooks for s in sites)
    assert all("forward" not in s.module.__dict__ for s in sites)  # nn.MultiheadAttention's own forward again
    assert all(p.grad is None for p in model.parameters())
    maps = explain(model, x, [], [get_method(n) for n in ("rollout", "gradrollout", "legrad")]).by_method
    for name, m in maps.items():
        assert m.shape == (2, 1, size // (8 if size == 32 else 14), size // (8 if size == 32 else 14)), name
        assert torch.isfinite(m).all() and (m.flatten(2).amax(-1) > 0).all(), name


@pytest.mark.parametrize(
    ("family", "rows"),
    [
        ("torchvision", [1.0, 0, 0, 0, 0]),  # the class token
        ("timm vit", [1.0, 0, 0, 0, 0]),  # global_pool='token'
        ("timm deit distilled", [0.5, 0.5, 0, 0, 0, 0]),  # class and distillation heads averaged
        ("timm eva (rope)", [0, 0.25, 0.25, 0.25, 0.25]),  # global_pool='avg' over the patch tokens
        ("timm registers", [1.0, 0, 0, 0, 0, 0, 0, 0, 0]),  # class token, 4 registers, 4 patches
        ("hf vit", [1.0, 0, 0, 0, 0]),
        ("hf deit teacher", [0.5, 0.5, 0, 0, 0, 0]),
    ],
)
def test_the_rows_the_head_reads(family, rows):
    model = FAMILIES[family][0]()
    prefix, grid = patch_grid(model, len(rows), (FAMILIES[family][1],) * 2)
    assert grid == (2, 2) and prefix == len(rows) - 4
    assert readout_rows(model, len(rows), prefix).tolist() == rows
    model.global_pool = ""  # no pooling (timm's features): every row
    if family.startswith("timm"):
        assert readout_rows(model, len(rows), prefix).tolist() == pytest.approx([1 / len(rows)] * len(rows))


@pytest.mark.parametrize("family", ["torchvision", "timm vit", "hf vit"])
def test_an_error_mid_pass_leaves_the_model_as_it_was(family):
    model = FAMILIES[family][0]()
    sites = attention_sites(model)
    flags = [getattr(s.module, "fused_attn", None) for s in sites]
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    last = sites[-1].module

    def fail(*_: object) -> None:
        raise RuntimeError("injected")

    handle = last.register_forward_hook(fail)
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="injected"):
            raw("gradrollout", model, torch.randn(1, 3, 32, 32), [0])
        assert not torch.is_grad_enabled()  # the caller's no_grad, which the pass had switched off inside
    handle.remove()
    assert [getattr(s.module, "fused_attn", None) for s in sites] == flags
    assert getattr(getattr(model, "config", None), "_attn_implementation", None) == impl
    assert all(not s.module._forward_hooks and not s.module._forward_pre_hooks for s in sites)
    assert all("forward" not in s.module.__dict__ for s in sites)
    assert all(p.grad is None for p in model.parameters())


def test_probabilities_equal_independent_computations():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    # torchvision: nn.MultiheadAttention's own weights (need_weights=True, per head) on the block's input
    model = tv_vit()
    mha = model.encoder.layers[0].self_attention
    seen: list[torch.Tensor] = []
    handle = mha.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with recording(model, attention_sites(model), grad=False) as rec, torch.no_grad():
        model(x)
    handle.remove()
    with torch.no_grad():
        own = mha(seen[0], seen[0], seen[0], need_weights=True, average_attn_weights=False)[1]
    torch.testing.assert_close(rec.probs[0], own, rtol=1e-5, atol=1e-6)
    # timm ViT: softmax(q kᵀ · d^-½) from the qkv weights, on the first block's normed input
    model = timm_model("vit_tiny_patch16_224", patch_size=8)
    with recording(model, attention_sites(model), grad=False) as rec, torch.no_grad():
        model(x)
        t = model.blocks[0].norm1(model.norm_pre(model._pos_embed(model.patch_embed(x))))
        q, k, _ = model.blocks[0].attn.qkv(t).view(2, 17, 3, 3, 64).permute(2, 0, 3, 1, 4)
        own = (q @ k.transpose(-2, -1) / 8).softmax(-1)
    torch.testing.assert_close(rec.probs[0], own, rtol=1e-5, atol=1e-6)
    # Hugging Face: the attentions the model returns with output_attentions=True
    model = hf_vit()
    with recording(model, attention_sites(model), grad=False) as rec, torch.no_grad():
        model(x)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        own_all = model(x, output_attentions=True).attentions
    for i, own in enumerate(own_all):
        torch.testing.assert_close(rec.probs[i], own, rtol=1e-5, atol=1e-6)


def reference_rollouts(probs: list[torch.Tensor], grads: tuple[torch.Tensor, ...]):
    """Rollout (Abnar & Zuidema: heads' mean, + I, rows renormalised, multiplied) and gradient rollout (Chefer et
    al.'s code: cam = (grad · attn).clamp(min=0).mean(heads); R += cam @ R), picture by picture, class row."""
    n = probs[0].shape[-1]
    roll, grad_roll = [], []
    for i in range(probs[0].shape[0]):
        r = torch.eye(n)
        g = torch.eye(n)
        for a, ga in zip(probs, grads, strict=True):
            fused = a[i].mean(0) + torch.eye(n)
            r = (fused / fused.sum(-1, keepdim=True)) @ r
            g = g + (ga[i] * a[i]).clamp(min=0).mean(0) @ g
        roll.append(r[0, 1:])
        grad_roll.append(g[0, 1:])
    side = math.isqrt(n - 1)
    return torch.stack(roll).view(-1, side, side).detach(), torch.stack(grad_roll).view(-1, side, side).detach()


def test_rollout_and_gradrollout_equal_a_reference_forward():
    # timm: a from-scratch forward of the ViT (class token, no layer scale) that keeps its attention
    model = timm_model("vit_tiny_patch16_224", patch_size=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    cls = torch.tensor([1, 4])
    t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    probs = []
    for blk in model.blocks:
        b, n, c = t.shape
        q, k, v = blk.attn.qkv(blk.norm1(t)).view(b, n, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * blk.attn.scale).softmax(-1)
        probs.append(a)
        t = t + blk.attn.proj((a @ v).transpose(1, 2).reshape(b, n, c))
        t = t + blk.mlp(blk.norm2(t))
    torch.testing.assert_close(model.forward_head(model.norm(t)), model(x), rtol=1e-5, atol=1e-5)
    y = model.forward_head(model.norm(t)).gather(1, cls[:, None]).sum()
    roll, grad_roll = reference_rollouts(probs, torch.autograd.grad(y, probs))
    torch.testing.assert_close(raw("rollout", model, x, [1, 4]), roll, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(raw("gradrollout", model, x, [1, 4]), grad_roll, rtol=1e-4, atol=1e-7)
    # Hugging Face: the attentions its own output_attentions hands back (eager), and their gradients
    model = hf_vit()
    model.config._attn_implementation = "eager"
    out = model(x, output_attentions=True)
    probs = list(out.attentions)
    roll, grad_roll = reference_rollouts(probs, torch.autograd.grad(out.logits.gather(1, cls[:, None]).sum(), probs))
    model.config._attn_implementation = "sdpa"
    torch.testing.assert_close(raw("rollout", model, x, [1, 4]), roll, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(raw("gradrollout", model, x, [1, 4]), grad_roll, rtol=1e-4, atol=1e-7)


def test_legrad_equals_torchcam():
    methods = pytest.importorskip("torchcam.methods")
    model = tv_vit()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    cls = [2, 0, 4]
    with methods.LeGrad(model, list(model.encoder.layers)) as extractor:
        scores = model(x)
        theirs = extractor(class_idx=cls, scores=scores, normalized=False)[0]
        normalized = extractor._normalize(theirs.clone())
    torch.testing.assert_close(raw("legrad", model, x, cls), theirs, rtol=1e-5, atol=1e-7)
    ours = explain(model, x, [], get_method("legrad"), classes=torch.tensor(cls)[:, None]).maps[:, 0]
    torch.testing.assert_close(ours, normalized, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ refusals
class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: Conv(), "needs a transformer's attention blocks and Conv has none; on it use gradcam"),
        (
            lambda: timm.create_model(
                "swin_tiny_patch4_window7_224", pretrained=False, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1,) * 4
            ),
            "WindowAttention is windowed .*rollout, gradrollout and legrad are not supported",
        ),
        (
            lambda: timm_model("vit_base_patch16_siglip_224", patch_size=8, embed_dim=32, num_heads=2),
            "VisionTransformer pools its tokens with attention",
        ),
    ],
)
def test_models_the_maps_cannot_read_are_refused_in_one_line(build, says):
    model = build()
    with pytest.raises(LayerError, match=says) as err:
        raw("rollout", model.eval(), torch.randn(1, 3, 32, 32), [0])
    assert "\n" not in str(err.value)


def test_legrad_without_a_known_head_and_masked_attention_are_refused():
    class Headless(nn.Module):  # attention blocks, but no norm and head LeGrad knows
        def __init__(self) -> None:
            super().__init__()
            self.inner = VisionTransformer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    with pytest.raises(LayerError, match="legrad needs the final norm and classifier head of Headless"):
        raw("legrad", Headless().eval(), hand_input(), [0])
    assert raw("rollout", Headless().eval(), hand_input(), [0]).shape == (1, 1, 2)

    model = VisionTransformer().eval()
    mask = torch.zeros(3, 3, dtype=torch.bool)
    model.encoder.layers[0].forward = lambda x: x + model.encoder.layers[0].self_attention(x, x, x, attn_mask=mask)[0]
    with pytest.raises(LayerError, match=r"nn\.MultiheadAttention called with a mask"):
        raw("rollout", model, hand_input(), [0])


def test_cli_refuses_the_bundled_cnn_in_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["cam", str(SAMPLES / "chelsea.png"), "--method", "rollout", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    line = [s for s in result.output.splitlines() if s.startswith("error:")]
    assert len(line) == 1 and "rollout needs a transformer's attention blocks" in line[0] and "saliency" in line[0]
    assert "Traceback" not in result.output
