"""Floor for `camcli inspect CKPT`: load the state_dict safely and print its keys and shapes."""

import sys

import torch

state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
for k, v in state.items():
    print(k, tuple(v.shape))
