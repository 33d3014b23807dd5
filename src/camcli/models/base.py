"""What every model source produces: a :class:`LoadedModel` (module, preprocessing, class names), and the
preprocessing that turns a decoded picture into the model's input tensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..caches import package_version
from ..engine.layouts import declared_prefix_tokens
from ..errors import UsageError
from ..options import BUNDLED
from .labels import class_name, read_labels, split_binary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Preprocessing = tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]  # (input size, mean, std)


def arch_key(name: str, num_classes: int | None, **kwargs: object) -> str:
    """What a builder of architecture ``name`` builds, for caches: name, classes, options and the version of the
    library that defines it (the bundled model's package, or torchvision)."""
    lib = "efficientnet-lite-pytorch" if name == BUNDLED else "timm" if name.startswith("timm:") else "torchvision"
    extra = "".join(f"-{k}={v}" for k, v in sorted(kwargs.items()))
    return f"{name}-{num_classes}{extra}-{lib}{package_version(lib)}"


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
        layer_key: names what ``builder`` builds (architecture, class count, library version) for the on-disk
            cache of layer tables (see :func:`camcli.engine.layers.trace`); ``None``: not cached.
        default_layer: a preferred default layer for architectures where "the last spatial layer" is not
            the right Grad-CAM layer (ViT's class token is only read after the last block).
        weights: which weights it has, for people and the manifest: ``bundled ImageNet-1k``, a torchvision
            weights name (``IMAGENET1K_V2``), ``random`` (``--weights none``), or ``checkpoint``.
        prefix_tokens: how many class/distillation/register tokens come before the grid in token layers, when
            the model says (timm's ``num_prefix_tokens``, a Hugging Face config, torchvision ViT's class token);
            ``None``: read from each layer's shape (:mod:`camcli.engine.layouts`).
        kind: what one input sample is: ``image`` (C, H, W), ``video`` (C, T, H, W: a clip of ``clip_length``
            frames; torchvision's video classifiers and checkpoints of them) or ``volume`` (C, D, H, W: a 3-D
            network, the user's own or MONAI's).
        in_channels: the channels of one sample (3 for pictures and clips; a 3-D network's first convolution's).
        clip_length: ``video``: frames per clip the weights were evaluated with (torchvision's ``clip_len`` in
            the weights' documentation: 16 for r3d_18, 32 for swin3d_t, 128 for s3d); None otherwise.
        clip_fps: ``video``: the frame rate those clips were sampled at (the weights' ``frame_rate``); None when
            not said or not a video model.
        volume_size: ``volume``: (D, H, W) the network takes (``--input-size``, or its own ``img_size``);
            ``input_size`` is then its (H, W).
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
    layer_key: str | None = None
    weights: str = "checkpoint"
    prefix_tokens: int | None = None  # class/distillation/register tokens before a token grid, when the model says
    interpolation: str = "bilinear"  # how the picture is resized to the input size (Pillow's filter names)
    task: str = "classification"  # or detection, segmentation (torchvision's detectors and segmenters)
    #: how the model's outputs read as probabilities when it says so (a Hugging Face config's problem_type):
    #: softmax, sigmoid or identity; None: not declared (camcli.jobs.targeting decides: one output → sigmoid)
    head: str | None = None
    head_why: str = ""  # where ``head`` comes from, for the run's header
    #: a binary head's name for its negative (``--labels`` with two names: the negative's, then the positive's)
    negative: str | None = None
    #: the model returns an embedding, not class scores (a backbone without its classifier head)
    embedding: bool = False
    #: texts → (T, D) embeddings in the image embeddings' space (CLIP-style models); None: no text tower
    encode_text: Callable[[list[str]], torch.Tensor] | None = None
    kind: str = "image"  # image (C, H, W), video (C, T, H, W) or volume (C, D, H, W)
    in_channels: int = 3
    clip_length: int | None = None  # video: frames per clip
    clip_fps: float | None = None  # video: the frame rate of the clips the weights were evaluated on
    volume_size: tuple[int, int, int] | None = None  # volume: (D, H, W)

    def __post_init__(self) -> None:
        if self.prefix_tokens is None:
            self.prefix_tokens = declared_prefix_tokens(self.module)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def class_name(self, index: int) -> str:
        return class_name(self.categories, index)

    def sample_shape(self) -> tuple[int, ...]:
        """One input's shape, without the batch: (C, H, W), (C, T, H, W) for a clip, (C, D, H, W) for a volume."""
        if self.kind == "video":
            return (self.in_channels, self.clip_length or 16, *self.input_size)
        if self.kind == "volume":
            if self.volume_size is None:
                raise UsageError(
                    f"{self.name} is a 3-D network whose input size it does not say; pass --input-size D,H,W"
                )
            return (self.in_channels, *self.volume_size)
        return (self.in_channels, *self.input_size)


def preprocess(image: Image.Image, model: LoadedModel) -> torch.Tensor:
    """The whole picture resized to the model's input size (no crop, so maps line up with it), normalized. A
    detector gets the picture as it is, in [0, 1]: its own transform resizes and normalizes it."""
    if model.task == "detection":
        return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    h, w = model.input_size
    resample = getattr(Image.Resampling, model.interpolation.upper(), Image.Resampling.BILINEAR)
    # a large picture is first shrunk by whole factors (box filter) to within 3x of the input size: 12 MP → 224²
    # takes 10 ms instead of 28 ms here; the pixels differ from the exact resize by 0.2 level on average (at most 2)
    resized = image.resize((w, h), resample, reducing_gap=3.0)
    return normalized(torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1), model)


def normalized(pixels: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    """(3, H, W) uint8 pixels at the model's input size → its input: in [0, 1], less its mean, over its std (on
    the pixels' device)."""
    x = pixels.float().div_(255.0)
    mean = torch.tensor(model.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(model.std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def set_labels(model: LoadedModel, path: str, outputs: int | None) -> LoadedModel:
    """``--labels``: the class names of a model with ``outputs`` outputs (two names for a binary head)."""
    model.categories, model.negative = split_binary(read_labels(path, outputs), outputs)
    return model
