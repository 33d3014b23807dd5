"""Maps of videos and 3-D volumes (camcli.methods.volume): against MONAI's GradCAM/GradCAMpp on the same tensors,
the 3-D formulas written out by hand, generated data whose evidence is known (a blob, a moving square), the 2-D maps
of the same frames, torchvision's video models, and the refusals and hook hygiene."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from camcli.engine.volumes import NCDHW, NDHWC, infer_volume_layout, volume_layout
from camcli.errors import LayerError, UsageError
from camcli.method_params import FINER_BASES
from camcli.methods import REGISTRY, explain, explain_volume, get_method, normalize, upsample, volume_methods
from tests.test_gradcam import _same_state, _state

VOLUME_METHODS = [
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "cam",
    "segeigencam",
    "eigengradcam",
    "gradcamelementwise",
    "kpcacam",
    "shapleycam",
    "random",
    "finercam",
]


def minmax(t: torch.Tensor) -> torch.Tensor:
    """Each (B, …) row min-max scaled to [0, 1] over all its other dims."""
    flat = t.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (t.dim() - 1)
    return (t - lo.view(shape)) / (hi - lo).view(shape)


# --- MONAI ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def densenet3d():
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()


@pytest.mark.parametrize("layer", ["features.transition2", "features.denseblock3"])
def test_gradcam_equals_monai_gradcam(densenet3d, layer):
    """MONAI's GradCAM: weights = gradient mean over *spatial, ReLU(Σ w·A), trilinear (align_corners=False) to the
    input, then its postprocessing. With an identity postprocessing and a min-max per volume, the same maps; its
    default normaliser maps (min, max) to (1, 0): our map flipped."""
    from monai.visualize import GradCAM

    torch.manual_seed(1)
    x = torch.randn(2, 1, 32, 48, 40)  # no side the same: a transposed axis would show
    ex = explain_volume(densenet3d, x, layer, get_method("gradcam"), targets=[1])
    ours = ex.by_method["gradcam"][:, 0]
    assert ours.shape == (2, 32, 48, 40)
    raw = GradCAM(copy.deepcopy(densenet3d), target_layers=layer, postprocessing=lambda a: a)(x=x, class_idx=1)
    assert raw.shape == (2, 1, 32, 48, 40)
    torch.testing.assert_close(ours, minmax(raw.detach()[:, 0]), atol=1e-5, rtol=0)
    flipped = GradCAM(copy.deepcopy(densenet3d), target_layers=layer)(x=x, class_idx=1)
    torch.testing.assert_close(1 - ours, flipped[:, 0], atol=1e-5, rtol=0)
    assert ours.amax(dim=(1, 2, 3)).eq(1).all()


def test_gradcampp_equals_monai_where_the_gradient_is_constant(densenet3d):
    """MONAI's GradCAMpp takes α = g² / (2g² + Σ_ab A_ab g_ab³) where the paper (and camcli) has g_ij³ Σ_ab A_ab, and
    multiplies the gradient by exp(score); the two agree where each channel's gradient is the same at every voxel:
    at the layer that feeds the global average pool and the linear head."""
    from monai.visualize import GradCAMpp

    net = copy.deepcopy(densenet3d)
    with torch.no_grad():
        net.class_layers.out.weight.mul_(100)  # gradients far above the denominators' ε (1e-6 here, 1e-7 there)
    torch.manual_seed(2)
    x = torch.randn(1, 1, 64, 96, 64)
    layer = "class_layers.relu"
    ex = explain_volume(net, x, layer, get_method("gradcam++"), targets=[1])
    assert ex.per_layer[("gradcam++", layer)].shape == (1, 1, 2, 3, 2)
    raw = GradCAMpp(copy.deepcopy(net), target_layers=layer, postprocessing=lambda a: a)(x=x, class_idx=1)
    torch.testing.assert_close(ex.by_method["gradcam++"][:, 0], minmax(raw.detach()[:, 0]), atol=1e-3, rtol=0)


# --- the 3-D formulas, written out ---------------------------------------------------------------------------------


class Small3d(nn.Module):
    """conv(stride 2) → BN → ReLU → conv → ReLU ("feat") → conv → GELU → global average → linear."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(2, 6, 3, stride=2, padding=1), nn.BatchNorm3d(6), nn.ReLU())
        self.feat = nn.Sequential(nn.Conv3d(6, 8, 3, padding=1), nn.ReLU())
        self.tail = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1), nn.GELU())
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.tail(self.feat(self.stem(x))).mean(dim=(2, 3, 4)))


def _acts_and_grads(model: nn.Module, x: torch.Tensor, layer: nn.Module, cls: int):
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = layer.register_forward_hook(hook)
    try:
        model(x)[:, cls].sum().backward()
    finally:
        h.remove()
    a = store["a"]
    return a.detach(), a.grad.detach()


def test_the_maps_are_the_3d_formulas():
    """Each method's layer map from the (B, C, d, h, w) activations and gradients, with sums and means over (d, h, w)
    written out; the input-size map their trilinear resize, normalised."""
    torch.manual_seed(3)
    model = Small3d().eval()
    x = torch.randn(2, 2, 6, 10, 8)
    clone = copy.deepcopy(model)
    a, g = _acts_and_grads(clone, x, clone.feat, 2)
    dims = (2, 3, 4)
    g2, g3 = g**2, g**3
    alpha = torch.where(g != 0, g2 / (2 * g2 + a.sum(dims, keepdim=True) * g3 + 1e-6), torch.zeros_like(g))
    expected = {
        "gradcam": (g.mean(dims, keepdim=True) * a).sum(1),
        "gradcam++": ((alpha * g.clamp_min(0)).sum(dims, keepdim=True) * a).sum(1),
        "xgradcam": (((g * a).sum(dims) / (a.sum(dims) + 1e-7))[..., None, None, None] * a).sum(1),
        "hirescam": (g * a).sum(1),
        "layercam": (g.clamp_min(0) * a).sum(1),
        "gradcamelementwise": (g * a).clamp_min(0).sum(1),
    }
    ex = explain_volume(model, x, "feat", [get_method(n) for n in expected], targets=[2])
    for name, raw in expected.items():
        layer_map = ex.per_layer[(name, "feat")][:, 0]
        assert layer_map.shape == (2, 3, 5, 4)
        torch.testing.assert_close(layer_map, minmax(raw.clamp_min(0)), atol=1e-5, rtol=0, msg=name)
        up = F.interpolate(layer_map[:, None], size=(6, 10, 8), mode="trilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(ex.by_method[name][:, 0], minmax(up), atol=1e-5, rtol=0, msg=name)


def test_eigencam_is_the_first_principal_component_over_voxels():
    torch.manual_seed(4)
    model = Small3d().eval()
    x = torch.randn(1, 2, 6, 10, 8)
    clone = copy.deepcopy(model)
    a, _ = _acts_and_grads(clone, x, clone.feat, 0)
    rows = a[0].reshape(8, -1).T.double()  # (d·h·w, C)
    centred = rows - rows.mean(0)
    _u, _s, vt = torch.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[0]
    proj = proj if torch.corrcoef(torch.stack([proj, rows.sum(1)]))[0, 1] >= 0 else -proj  # camcli's orientation
    ex = explain_volume(model, x, "feat", get_method("eigencam"))
    expected = minmax(proj.clamp_min(0).float().reshape(1, 3, 5, 4))
    torch.testing.assert_close(ex.per_layer[("eigencam", "feat")][:, 0], expected, atol=1e-5, rtol=0)


# --- generated evidence --------------------------------------------------------------------------------------------


class Brightness(nn.Module):
    """Two strided 3-D convolutions with positive weights (a local brightness detector), then a global average and a
    linear head whose class 0 is "bright" (+1) and class 1 "dark" (−1). ``kernel``: the first convolution's."""

    def __init__(self, channels: int = 1, kernel: tuple[int, int, int] = (3, 3, 3), stride=(2, 2, 2)) -> None:
        super().__init__()
        pad = tuple(k // 2 for k in kernel)
        self.stem = nn.Sequential(nn.Conv3d(channels, 4, kernel, stride=stride, padding=pad), nn.ReLU())
        self.feat = nn.Sequential(nn.Conv3d(4, 8, kernel, stride=stride, padding=pad), nn.ReLU())
        self.fc = nn.Linear(8, 2)
        torch.manual_seed(5)
        with torch.no_grad():
            for conv in (self.stem[0], self.feat[0]):
                conv.weight.uniform_(0.5, 1.0).div_(conv.weight[0].numel())
                conv.bias.fill_(-0.005)
            self.fc.weight.copy_(torch.tensor([[1.0] * 8, [-1.0] * 8]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(self.stem(x)).mean(dim=(2, 3, 4)))


def blob(size: tuple[int, int, int], centre: tuple[int, int, int], sigma: float = 1.5) -> torch.Tensor:
    zz, yy, xx = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in size), indexing="ij")
    d2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "layercam", "eigencam"])
def test_a_blob_at_a_known_voxel_is_where_the_map_peaks(method):
    # the layer's cell i sees the input around voxel 4i (two stride-2 convolutions); trilinear resizing with
    # align_corners=False (MONAI's, and camcli's 2-D bilinear) draws it at 4i + 1.5: the peak is 1.5 voxels off per axis
    size, centre = (16, 24, 32), (8, 4, 20)
    x = blob(size, centre)[None, None]
    ex = explain_volume(Brightness(), x, "feat", get_method(method), targets=[0])
    m = ex.by_method[method][0, 0]
    assert m.shape == size
    peak = torch.tensor(torch.unravel_index(m.argmax(), size), dtype=torch.float32)
    assert (peak - torch.tensor(centre, dtype=torch.float32)).abs().max() <= 2, (method, peak)
    far = blob(size, centre, sigma=5.0) < 0.05  # more than ~12 voxels from the blob
    assert m[far].max() < 0.05, method


def moving_square(frames: int = 8, side: int = 40, square: int = 8) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A (1, 3, T, side, side) clip: a white square on black moving down-right, 3 pixels a frame; its corners."""
    x = torch.zeros(1, 3, frames, side, side)
    corners = [(4 + 3 * t, 2 + 3 * t) for t in range(frames)]
    for t, (y0, x0) in enumerate(corners):
        x[0, :, t, y0 : y0 + square, x0 : x0 + square] = 1.0
    return x, corners


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "layercam"])
def test_the_map_follows_a_moving_square_in_every_frame(method):
    x, corners = moving_square()
    model = Brightness(channels=3, kernel=(1, 3, 3), stride=(1, 2, 2))  # frame by frame, like a 2-D network
    ex = explain_volume(model, x, "feat", get_method(method), targets=[0])
    m = ex.by_method[method][0, 0]
    assert m.shape == (8, 40, 40)
    for t, (y0, x0) in enumerate(corners):
        frame = m[t]
        inside = torch.zeros_like(frame, dtype=torch.bool)
        inside[max(0, y0 - 4) : y0 + 12, max(0, x0 - 4) : x0 + 12] = True  # one layer cell around it
        y, xx = torch.unravel_index(frame.argmax(), frame.shape)
        assert inside[y, xx], (method, t, (int(y), int(xx)), (y0, x0))
        assert frame[inside].sum() > 0.9 * frame.sum(), (method, t)
        assert frame.max() > 0.8  # every frame has the square: no frame is left dim


# --- the 2-D maps of the same frames -------------------------------------------------------------------------------


class Flat2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.feat = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.tail = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.GELU())
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.tail(self.feat(self.stem(x))).mean(dim=(-2, -1)))


class Flat3d(nn.Module):
    """:class:`Flat2d` with every (k, k) kernel a (1, k, k) one: the same network on each frame."""

    def __init__(self, flat: Flat2d) -> None:
        super().__init__()

        def conv(c: nn.Conv2d) -> nn.Conv3d:
            return nn.Conv3d(c.in_channels, c.out_channels, (1, 3, 3), (1, *c.stride), (0, *c.padding))

        self.stem = nn.Sequential(conv(flat.stem[0]), nn.BatchNorm3d(8), nn.ReLU())
        self.feat = nn.Sequential(conv(flat.feat[0]), nn.ReLU())
        self.tail = nn.Sequential(conv(flat.tail[0]), nn.GELU())
        self.fc = nn.Linear(12, 5)
        state = {k: (v[:, :, None] if v.dim() == 4 else v) for k, v in flat.state_dict().items()}
        self.load_state_dict(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.tail(self.feat(self.stem(x))).mean(dim=(-3, -2, -1)))


def test_a_one_frame_volume_gives_the_2d_maps_of_the_frame():
    """(B, C, 1, H, W) through Conv3d kernels (1, k, k) = the 2-D maps of the frames through the Conv2d network, for
    every method that explains volumes (the layer's maps, and the maps at the input's size)."""
    torch.manual_seed(6)
    flat = Flat2d()
    flat.stem[1].running_mean.uniform_(-0.2, 0.2)
    flat.stem[1].running_var.uniform_(0.5, 1.5)
    flat.eval()
    vol = Flat3d(flat).eval()
    frames = torch.randn(2, 3, 20, 28)
    methods = [get_method(n) for n in VOLUME_METHODS]
    flat_ex = explain(flat, frames, "feat", methods, top_k=2)
    vol_ex = explain_volume(vol, frames[:, :, None], "feat", methods, top_k=2)
    assert torch.equal(flat_ex.classes, vol_ex.classes)
    torch.testing.assert_close(flat_ex.logits, vol_ex.logits, atol=1e-5, rtol=0)
    for name in VOLUME_METHODS:
        layer_map = vol_ex.per_layer[(name, "feat")]
        assert layer_map.shape == (2, 2, 1, 10, 14)
        torch.testing.assert_close(layer_map[:, :, 0], flat_ex.by_method[name], atol=1e-5, rtol=0, msg=name)
        flat_up = normalize(upsample(flat_ex.by_method[name], (20, 28)))  # what the 2-D overlay draws
        torch.testing.assert_close(vol_ex.by_method[name][:, :, 0], flat_up, atol=1e-5, rtol=0, msg=name)
        assert vol_ex.by_method[name].amax() == 1.0, name


# --- torchvision's video models ------------------------------------------------------------------------------------


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[tuple[int, ...], str]]:
    """{module name: (its 5-D output's shape, its type)} for one forward pass."""
    seen: dict[str, tuple[tuple[int, ...], str]] = {}
    handles = []
    for name, module in model.named_modules():
        if name:

            def hook(m, _i, out, name=name):
                if isinstance(out, torch.Tensor) and out.dim() == 5:
                    seen[name] = (tuple(out.shape), type(m).__name__)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "swin3d_t"])
def test_torchvision_video_layers_read_right(name):
    """Every 5-D output of the video models, read from its shape: channels first for the 3-D ConvNets, channels last
    for Video Swin after its patch embedding (whose convolution is channels first); a grid of one cell is no grid."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    size = (8, 64, 64)
    x = torch.randn(1, 3, *size)
    outputs = _outputs(model.features if name == "s3d" else model, x)  # s3d's head needs 16 × 224 × 224 or more
    assert len(outputs) > 10
    for layer, (shape, kind) in outputs.items():
        found, problem = infer_volume_layout(shape, size, kind)
        last = name == "swin3d_t" and layer not in ("patch_embed.proj", "avgpool")  # its pool takes channels first
        if (shape[1:4] if last else shape[2:5]) == (1, 1, 1):
            assert found is None and "follows" in problem, (layer, shape)
        else:
            assert found == (NDHWC if last else NCDHW), (layer, shape, problem)


def test_r3d_18_gives_a_map_for_every_frame():
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    ex = explain_volume(model, x, "layer4", get_method("gradcam"))
    m = ex.maps
    assert m.shape == (1, 1, 8, 64, 64) and m.dtype == torch.float32
    assert ex.per_layer[("gradcam", "layer4")].shape == (1, 1, 1, 4, 4)  # 8 frames → 1 in time
    assert m.min() >= 0 and m.max() == 1
    assert all(torch.equal(m[0, 0, t], m[0, 0, 0]) for t in range(8))  # one map in time, spread over every frame
    assert ex.classes.shape == (1, 1) and ex.classes[0, 0] == ex.logits.argmax()


def test_swin3d_channels_last_layer():
    torch.manual_seed(0)
    model = torchvision.models.video.swin3d_t(weights=None).eval()
    ex = explain_volume(model, torch.randn(1, 3, 8, 64, 64), "features.6", get_method("gradcam"))
    assert ex.per_layer[("gradcam", "features.6")].shape == (1, 1, 4, 2, 2)
    assert ex.maps.shape == (1, 1, 8, 64, 64) and ex.maps.max() == 1


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


def test_a_channels_last_layer_gives_the_maps_of_its_channels_first_twin():
    torch.manual_seed(7)
    first = Small3d().eval()
    last = copy.deepcopy(first)
    last.feat.append(Permute(0, 2, 3, 4, 1))  # (B, d, h, w, C) …
    last.tail.insert(0, Permute(0, 4, 1, 2, 3))  # … and back
    x = torch.randn(2, 2, 6, 10, 8)
    methods = [get_method(n) for n in VOLUME_METHODS]
    a = explain_volume(first, x, "feat", methods, top_k=2)
    b = explain_volume(last, x, "feat", methods, top_k=2)
    for name in VOLUME_METHODS:
        torch.testing.assert_close(a.by_method[name], b.by_method[name], atol=1e-5, rtol=0, msg=name)
        assert b.per_layer[(name, "feat")].shape == (2, 2, 3, 5, 4)


class Patches(nn.Module):
    """An 8 × 8 × 8 output of an 8 × 64 × 64 clip with 8 channels: either side could be the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 8, (1, 8, 8), stride=(1, 8, 8))
        self.same = nn.Identity()  # the convolution's output again, from a module whose type does not say
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.same(self.conv(x))).mean(dim=(2, 3, 4)))


def test_an_undecided_layout_is_not_guessed():
    torch.manual_seed(8)
    model, x = Patches().eval(), torch.rand(1, 1, 8, 64, 64)
    with pytest.raises(LayerError, match=r"--layout ncdhw\|ndhwc") as err:
        explain_volume(model, x, "same", get_method("gradcam"))
    assert "\n" not in str(err.value) and "reads as channels first (8 channels) or channels last (8)" in str(err.value)
    told = explain_volume(model, x, "same", get_method("gradcam"), layout="ncdhw")
    by_type = explain_volume(model, x, "conv", get_method("gradcam"))  # a Conv3d's output is channels first
    torch.testing.assert_close(told.maps, by_type.maps, atol=0, rtol=0)
    other = explain_volume(model, x, "same", get_method("gradcam"), layout="NDHWC")
    assert other.per_layer[("gradcam", "same")].shape == (1, 1, 8, 8, 8)
    assert not torch.equal(other.maps, told.maps)
    with pytest.raises(UsageError, match="use ncdhw or ndhwc"):
        explain_volume(model, x, "same", get_method("gradcam"), layout="nchw")


def test_layers_without_a_volume_grid_say_so_in_one_line():
    with pytest.raises(LayerError, match="video transformers such as mvit are not supported") as err:
        volume_layout((1, 393, 768), None, (16, 224, 224), "norm", "LayerNorm")  # mvit_v2_s's last tokens
    assert "\n" not in str(err.value)
    with pytest.raises(LayerError, match=r"has no grid of the video or volume.*pick an earlier layer"):
        volume_layout((1, 512, 1, 1, 1), None, (8, 64, 64), "avgpool", "AdaptiveAvgPool3d")
    with pytest.raises(LayerError, match="cannot be read as --layout ndhwc"):
        volume_layout((1, 512, 1, 4, 4), NDHWC, (8, 64, 64), "layer4", "Sequential")
    model = Small3d().eval()
    with pytest.raises(LayerError, match="not a \\(B, C, D, H, W\\)"):
        explain_volume(model, torch.randn(1, 2, 4, 8, 8), "fc", get_method("gradcam"))


@pytest.mark.slow
def test_mvit_is_refused_in_one_line():
    torch.manual_seed(0)
    model = torchvision.models.video.mvit_v2_s(weights=None).eval()
    with pytest.raises(LayerError, match="mvit are not supported"):
        explain_volume(model, torch.randn(1, 3, 16, 224, 224), "norm", get_method("gradcam"))


# --- refusals and the user's model ---------------------------------------------------------------------------------


def test_the_methods_that_explain_volumes():
    assert volume_methods() == VOLUME_METHODS
    assert set(FINER_BASES) <= set(VOLUME_METHODS)  # finercam's every base works on volumes too


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - set(VOLUME_METHODS)))
def test_methods_made_from_the_input_size_are_refused_in_one_line(name):
    model = Small3d().eval()
    before = _state(model)
    with pytest.raises(UsageError) as err:
        explain_volume(model, torch.randn(1, 2, 4, 8, 8), "feat", [get_method("gradcam"), get_method(name)])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name} cannot explain a video or volume")
    assert message.endswith("use one of: " + ", ".join(VOLUME_METHODS))
    _same_state(before, _state(model))


def test_a_batch_that_is_not_5d_is_refused():
    with pytest.raises(UsageError, match=r"\(B, C, D, H, W\); got shape \[1, 2, 8, 8\]"):
        explain_volume(Small3d(), torch.randn(1, 2, 8, 8), "feat", get_method("gradcam"))


def _touched() -> nn.Module:
    """A model as a user may hand it: in training mode with one block in eval, frozen stem, a .grad set."""
    torch.manual_seed(9)
    model = Small3d().train()
    model.tail.eval()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 3.0)
    return model


def test_the_users_model_is_untouched():
    model = _touched()
    before = _state(model)
    bn = model.stem[1].running_mean.clone()
    methods = [get_method(n) for n in VOLUME_METHODS]
    explain_volume(model, torch.randn(2, 2, 6, 10, 8), "feat", methods, top_k=2)
    _same_state(before, _state(model))
    assert torch.equal(bn, model.stem[1].running_mean), "ran in train mode: batch-norm statistics moved"
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("where", ["after the layer", "laying out the layer"])
def test_the_users_model_is_untouched_after_a_failure(where):
    model = _touched()
    before = _state(model)
    if where == "after the layer":

        def boom(*_):
            raise RuntimeError("injected")

        handle = model.fc.register_forward_hook(boom)  # fails after the layer's hook has run
        before = _state(model)
        with pytest.raises(RuntimeError, match="injected"):
            explain_volume(model, torch.randn(1, 2, 6, 10, 8), "feat", get_method("gradcam"))
    else:
        handle = None
        with pytest.raises(LayerError, match="cannot be read as --layout ndhwc"):
            explain_volume(model, torch.randn(1, 2, 6, 10, 8), "feat", get_method("gradcam"), layout="ndhwc")
    _same_state(before, _state(model))
    assert torch.is_grad_enabled()
    if handle is not None:
        handle.remove()
