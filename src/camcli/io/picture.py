"""An input's picture as it is drawn on: a Pillow image, or pixels decoded on a device (nvjpeg on a GPU).

A run on a GPU decodes its JPEG inputs there (:func:`decode_jpegs`), scales them there (:func:`fit_pixels`) and
draws its overlays there; a :class:`Picture` then holds the device's pixels, and makes the Pillow image only for
what needs one (a caption, a panel, the report's copies). The same functions run on the CPU, where the tests
compare them with the Pillow path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .decode import Jpeg, fitted_size

#: how a model's input may be resized for :func:`resize_pixels` to match Pillow (others go through Pillow)
DEVICE_INTERPOLATIONS = ("bilinear", "bicubic")


class Picture:
    """The upright RGB picture of one input, as a Pillow image or as (H, W, 3) uint8 pixels on a device; each
    form is made from the other once, when first asked for (by one writer thread)."""

    def __init__(self, image: Image.Image | None = None, pixels: torch.Tensor | None = None) -> None:
        if (image is None) == (pixels is None):
            raise ValueError("a Picture is made from a Pillow image or from pixels")
        self._image = image
        self._pixels = pixels

    @property
    def width(self) -> int:
        return self._image.width if self._image is not None else int(self._pixels.shape[1])  # type: ignore[union-attr]

    @property
    def height(self) -> int:
        return self._image.height if self._image is not None else int(self._pixels.shape[0])  # type: ignore[union-attr]

    def pil(self) -> Image.Image:
        """The picture as a Pillow RGB image (copied from the device the first time)."""
        if self._image is None:
            assert self._pixels is not None
            self._image = Image.fromarray(self._pixels.cpu().numpy(), "RGB")
        return self._image

    def pixels(self, device: torch.device) -> torch.Tensor:
        """The picture as (H, W, 3) uint8 on ``device`` (uploaded from the Pillow image the first time)."""
        if self._pixels is None or not on(self._pixels, device):
            self._pixels = torch.from_numpy(np.array(self.pil())).to(device)
        return self._pixels


def on(tensor: torch.Tensor, device: torch.device) -> bool:
    """``tensor`` is on ``device`` (``cuda`` without an index: on any GPU, as torch reads it as the current one)."""
    where = tensor.device
    return where.type == device.type and (device.index is None or where.index in (None, device.index))


def decode_jpegs(jpegs: Sequence[Jpeg], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEGs on ``device`` in one call (nvjpeg on a GPU, libjpeg-turbo on the CPU): upright (H, W, 3)
    uint8 pixels, or None for a file the device's decoder refuses or decodes to another size than its header's
    (the caller reads that one with Pillow, which says what is wrong with it, if anything)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
    on_gpu = device.type == "cuda"
    if on_gpu:  # nvjpeg works on a stream of its own, which does not wait for the work queued on ours
        torch.cuda.synchronize(device)
    try:
        decoded: list[torch.Tensor | None] = list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad file fails the batch: decode them one by one
        decoded = []
        for data in datas:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
    if on_gpu:  # ... nor does ours wait for it
        torch.cuda.synchronize(device)
    out: list[torch.Tensor | None] = []
    for j, chw in zip(jpegs, decoded, strict=True):
        if chw is None or chw.dim() != 3 or chw.shape[0] != 3 or (chw.shape[2], chw.shape[1]) != j.size:
            out.append(None)
        else:
            out.append(upright(chw, j.orientation).permute(1, 2, 0).contiguous())
    return out


def upright(chw: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) pixels turned as Pillow's ``exif_transpose`` turns a picture with that EXIF orientation."""
    if orientation == 2:  # mirrored
        return chw.flip(-1)
    if orientation == 3:  # upside down
        return chw.flip(-2, -1)
    if orientation == 4:  # upside down, mirrored
        return chw.flip(-2)
    if orientation == 5:  # transposed
        return chw.transpose(-2, -1)
    if orientation == 6:  # turned a quarter to the left: turn it right
        return torch.rot90(chw, -1, (-2, -1))
    if orientation == 7:  # transversed
        return chw.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # turned a quarter to the right: turn it left
        return torch.rot90(chw, 1, (-2, -1))
    return chw


def resize_pixels(chw: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """(C, H, W) uint8 pixels resized to ``size`` (H, W) with antialiasing, as Pillow resizes a picture
    (``bilinear`` or ``bicubic``; anything else is read as bilinear), rounded back to uint8."""
    if (int(chw.shape[-2]), int(chw.shape[-1])) == tuple(size):
        return chw
    mode = interpolation if interpolation in DEVICE_INTERPOLATIONS else "bilinear"
    x = torch.nn.functional.interpolate(chw[None].float(), size=size, mode=mode, align_corners=False, antialias=True)
    return x[0].round_().clamp_(0, 255).to(torch.uint8)


def fit_pixels(hwc: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """(H, W, 3) pixels scaled down so that the long side is at most ``max_side`` (:func:`fitted_size`, as for
    Pillow's pictures); as they are otherwise."""
    size = fitted_size(int(hwc.shape[1]), int(hwc.shape[0]), max_side)
    if size is None:
        return hwc
    return resize_pixels(hwc.permute(2, 0, 1), (size[1], size[0])).permute(1, 2, 0).contiguous()
