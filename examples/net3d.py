"""A small 3-D network of your own (a volume in, two classes out), as a training script would define it (used by
the README's volume example: examples/make_media.py saves a checkpoint of it whose evidence is a bright blob)."""

import torch
from torch import nn


class Net3d(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3, 4)))
