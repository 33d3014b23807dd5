"""Making a batch's inputs: the picture to draw on and the model's input tensor, with Pillow in the decode
threads, or for JPEGs on the job's device (nvjpeg on a GPU) with the batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..io.decode import Jpeg, decode, fit_long_side, read_jpeg
from ..io.inputs import InputFile
from ..io.picture import Picture, decode_jpegs, fit_pixels, resize_pixels
from ..models import LoadedModel, normalized, preprocess


@dataclass
class Decoded:
    """An input's upright RGB picture and the model's input tensor made from it; or, for a JPEG that the job's
    device decodes, its bytes until then (:func:`prepare_on_device`)."""

    picture: Picture | None = None
    tensor: torch.Tensor | None = None
    jpeg: Jpeg | None = None


def decode_and_prepare(
    item: InputFile,
    model: LoadedModel,
    max_pixels: int | None,
    max_size: int | None = None,
    on_device: bool = False,
) -> Decoded:
    """Runs in a decoder thread; raises :class:`InputError` for a file that cannot be read.

    ``max_size``: the picture drawn on is scaled so that its long side is at most that. A JPEG is then decoded
    at the smallest DCT scale that still gives both that size and the model's input size, and the model's input
    is made from that decode (not from the scaled-down picture), so the prediction does not depend on it more
    than the reduced decode does.

    ``on_device``: a JPEG is only read and checked here, and decoded by the job's device with its batch.
    """
    if on_device and (jpeg := read_jpeg(item.path, max_pixels)) is not None:
        return Decoded(jpeg=jpeg)
    h, w = model.input_size
    image = decode(item.path, max_pixels, max_size, (w, h))
    return Decoded(Picture(fit_long_side(image, max_size)), preprocess(image, model))


def prepare_on_device(
    jpegs: Sequence[Jpeg], model: LoadedModel, device: torch.device, max_size: int | None
) -> list[Decoded | None]:
    """Decode JPEGs on ``device`` in one call, and make their pictures (scaled to ``max_size``) and a classifier's
    inputs there, as :func:`decode_and_prepare` makes them with Pillow; None for a file the decoder refused."""
    out: list[Decoded | None] = []
    for hwc in decode_jpegs(jpegs, device):
        if hwc is None:
            out.append(None)
            continue
        tensor = normalized(resize_pixels(hwc.permute(2, 0, 1), model.input_size, model.interpolation), model)
        out.append(Decoded(Picture(pixels=fit_pixels(hwc, max_size)), tensor))
    return out
