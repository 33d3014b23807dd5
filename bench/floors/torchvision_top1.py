"""Floor for `camcli gradcam IMAGE --model NAME --weights none`: build the torchvision model, decode, classify."""

import sys

import numpy as np
import torch
import torchvision
from PIL import Image

model = torchvision.models.get_model(sys.argv[2], weights=None).eval()
image = Image.open(sys.argv[1]).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
with torch.no_grad():
    print(int(model(x).argmax()), file=sys.stderr)
