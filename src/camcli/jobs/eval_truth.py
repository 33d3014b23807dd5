"""`camcli evaluate --annotations`: the ground truth of each input, on the grid of the maps, and the localisation
scores (camcli.metrics.localisation), plus the pictures that show it (each method's map with the object's outline).

The model's input is the whole picture resized (no crop), so the annotation's pixels map to the input's grid by
scale alone: each region is rasterised on the maps' grid by :meth:`camcli.io.annotations.Region.grid` (a cell is
in the object when at least half of it is covered; the most covered cell always is, so a one-pixel object is never
lost). An (image, class) pair is about every region whose class stands for the explained class (the file's name,
or ``--annotation-classes``' mapping) and every region without a class (a mask image). Inputs the file does not
name, and pairs with no region of their class, have no localisation scores; they are counted and named in one
line each at the end, not failed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import InputError, UsageError
from ..io.annotations import Annotations, ImageAnnotations, Region, read_annotations
from ..io.class_match import class_match_note, match_classes, read_class_mapping
from ..io.inputs import InputFile
from ..methods import upsample_normalized
from ..metric_names import KEYS, LOCALISATION
from ..metrics import (
    complexity,
    energy_pointing,
    iou,
    pointing,
    random_logit,
    relevance_mass,
    relevance_rank,
    sparseness,
)
from ..options import EvalOptions
from ..render import draw_outline, overlay


@dataclass
class BatchTruth:
    """The ground truth of a batch's rows (one per image and class): the object and its bounding box on the maps'
    grid, and whether the row has any."""

    masks: torch.Tensor  # (N, h, w) bool
    boxes: torch.Tensor  # (N, h, w) bool
    known: torch.Tensor  # (N,) bool: the row has a region of its class
    regions: list[list[Region]]  # per row: the regions it is about (for the pictures)
    frames: list[tuple[int, int]]  # per row: (W, H) the regions' coordinates are in
    errors: list[str | None]  # per image: why its annotation cannot be used (a size that is not the picture's)


@dataclass
class GroundTruth:
    """The annotations of a run, matched to the model's classes."""

    annotations: Annotations
    mapping: dict[str, list[str]] | None
    classes: dict[str, list[int]] = field(default_factory=dict)
    note: str = ""
    names: list[str] = field(default_factory=list)  # the model's classes
    unannotated: list[str] = field(default_factory=list)  # inputs the file names nowhere
    unmatched: list[str] = field(default_factory=list)  # "astronaut.png: suit (annotated: person)"
    empty: list[str] = field(default_factory=list)  # inputs annotated with no object
    claimed: dict[str, str] = field(default_factory=dict)  # an entry's name → the input it was used for

    @classmethod
    def of(cls, options: EvalOptions) -> GroundTruth:
        assert options.annotations is not None
        mapping = read_class_mapping(Path(options.annotation_classes)) if options.annotation_classes else None
        return cls(read_annotations(Path(options.annotations)), mapping)

    def match(self, names: Sequence[str]) -> None:
        """Match the annotation's classes to the model's ``names`` (a mapping naming no class of the model: one
        line, before any image is read)."""
        self.names = list(names)
        self.classes = match_classes(self.annotations.labels(), names, self.mapping)
        self.note = class_match_note(self.classes, names, self.mapping)

    def header(self) -> str:
        return f"ground truth {self.annotations.describe()}" + (f" · {self.note}" if self.note else "")

    def of_input(self, item: InputFile) -> ImageAnnotations | None:
        return self.annotations.for_input(item.path, item.rel.as_posix())

    def batch(
        self,
        items: Sequence[InputFile],
        sizes: Sequence[tuple[int, int]],
        classes: torch.Tensor,
        grid: tuple[int, int],
        max_size: int | None,
        device: torch.device | str = "cpu",
    ) -> BatchTruth:
        """The rows' ground truth for ``classes`` (B, K) of the batch ``items`` whose pictures have ``sizes`` (H, W)
        (perhaps scaled down to ``max_size``) on the maps' ``grid`` (h, w), on the maps' ``device`` (moved there
        once, not once per method)."""
        b, k = classes.shape
        masks = np.zeros((b * k, *grid), dtype=bool)
        boxes = np.zeros((b * k, *grid), dtype=bool)
        known = np.zeros(b * k, dtype=bool)
        regions: list[list[Region]] = [[] for _ in range(b * k)]
        frames: list[tuple[int, int]] = []
        errors: list[str | None] = []
        for i, (item, (h, w)) in enumerate(zip(items, sizes, strict=True)):
            frame, error = (w, h), None
            resized = max_size is not None and max(w, h) >= max_size  # (a smaller picture was not scaled)
            try:
                ann = self.of_input(item)
            except InputError as why:  # two entries name this input and its path does not settle it
                ann, error = None, str(why)
            if ann is not None and self.claimed.setdefault(ann.name, item.display) != item.display:
                error = (
                    f"{item.display}: {self.annotations.path.name}'s entry {ann.name} was used for "
                    f"{self.claimed[ann.name]} already; name the images by their paths relative to the input folder"
                )
            elif ann is not None and not ann.regions:
                self.empty.append(item.display)
            if ann is None:
                if error is None:
                    self.unannotated.append(item.display)
            elif ann.size is not None:
                frame = ann.size
                error = _size_error(ann, (w, h), resized)
            elif resized and any(r.kind != "mask" for r in ann.regions):
                error = (
                    f"{item.display}: the annotation's boxes are in the original picture's pixels and the file gives "
                    "no size to scale them by; drop --max-size"
                )
            frames += [frame] * k
            if ann is not None and error is None:
                try:
                    self._rows(item, ann, classes[i], frame, grid, (masks, boxes, known, regions), i * k)
                except InputError as why:  # a mask of another size, a box outside the picture: this input fails
                    error = str(why)
                    start = slice(i * k, (i + 1) * k)
                    masks[start], boxes[start], known[start] = False, False, False
            errors.append(error)
        on_device = [torch.from_numpy(a).to(device) for a in (masks, boxes, known)]
        return BatchTruth(on_device[0], on_device[1], on_device[2], regions, frames, errors)

    def _rows(
        self,
        item: InputFile,
        ann: ImageAnnotations,
        classes: torch.Tensor,
        frame: tuple[int, int],
        grid: tuple[int, int],
        into: tuple[np.ndarray, np.ndarray, np.ndarray, list[list[Region]]],
        first: int,
    ) -> None:
        """One image's rows (one per class of ``classes`` (K,)) from ``first`` on, into the batch's arrays."""
        masks, boxes, known, regions = into
        for j, index in enumerate(int(c) for c in classes):
            row = first + j
            own = [r for r in ann.regions if r.label is None or index in self.classes.get(r.label, [])]
            if not own and ann.regions:
                labels = sorted({r.label or "?" for r in ann.regions})
                name = self.names[index] if 0 <= index < len(self.names) else str(index)
                self.unmatched.append(f"{item.display}: {name} (annotated: {', '.join(labels)})")
            if not own:
                continue
            regions[row], known[row] = own, True
            for r in own:
                cells = r.grid(frame, grid)
                masks[row] |= cells
                boxes[row] |= cells if r.kind == "box" else r.box_grid(frame, grid)

    def end_lines(self, path: str) -> list[str]:
        """What the run could not compare with the ground truth, one line each (empty when everything was)."""
        out = []
        if self.unannotated:
            n = len(self.unannotated)
            out.append(
                f"{n} input(s) have no annotation in {path} (e.g. {self.unannotated[0]}): measured, without "
                "localisation scores"
            )
        if self.empty:
            out.append(
                f"{len(self.empty)} input(s) are annotated with no object (e.g. {self.empty[0]}): without "
                "localisation scores"
            )
        if self.unmatched:
            out.append(
                f"{len(self.unmatched)} (image, class) pair(s) have no annotated object of the explained class "
                f"(e.g. {self.unmatched[0]}): without localisation scores; map the annotation's classes to the "
                "model's with --annotation-classes FILE"
            )
        return out


def fingerprint(path: Path) -> str:
    """A digest of an annotation file's contents, or of a folder's files' names, sizes and times (a rerun with
    --skip-existing measures again when the annotations changed)."""
    digest = hashlib.blake2b(digest_size=8)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            st = file.stat()
            digest.update(f"{file.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _size_error(ann: ImageAnnotations, picture: tuple[int, int], resized: bool) -> str | None:
    """Why the picture (W, H) is not the one annotated (None when it is: the same size, or with --max-size the same
    shape to a pixel)."""
    assert ann.size is not None
    (aw, ah), (w, h) = ann.size, picture
    if not resized:
        try:
            ann.check_size(w, h)
        except InputError as why:
            return str(why)
        return None
    scale = max(w, h) / max(aw, ah)
    if abs(aw * scale - w) <= 1 and abs(ah * scale - h) <= 1:
        return None
    return f"{ann.name}: annotated as {aw}×{ah}, a shape the picture ({w}×{h} after --max-size) does not have"


def map_scores(
    maps: torch.Tensor,
    other: torch.Tensor | None,
    truth: BatchTruth | None,
    metrics: Sequence[str],
    tolerance: float,
    threshold: float,
) -> dict[str, torch.Tensor]:
    """The scores of ``metrics`` read off the maps (N, h, w) of a batch's rows themselves (no forward pass):
    localisation against ``truth``, complexity, and random-logit against ``other``, the maps of a random other
    class (None for a baseline map, which is the same for every class: its score is the worst, 1)."""
    out = localisation_scores(maps, truth, metrics, tolerance, threshold) if truth is not None else {}
    if "sparseness" in metrics:
        out[KEYS["sparseness"]] = sparseness(maps)
    if "complexity" in metrics:
        out[KEYS["complexity"]] = complexity(maps)
    if "random-logit" in metrics:
        out[KEYS["random-logit"]] = random_logit(maps, maps if other is None else other)
    return out


def localisation_scores(
    maps: torch.Tensor, truth: BatchTruth, metrics: Sequence[str], tolerance: float, threshold: float
) -> dict[str, torch.Tensor]:
    """Each localisation metric of ``metrics`` for the maps (N, h, w) of the rows: NaN for the rows without ground
    truth (the record says None)."""
    masks, boxes = truth.masks.to(maps.device), truth.boxes.to(maps.device)
    known = truth.known.to(maps.device)
    compute = {
        "pointing": lambda: pointing(maps, masks, tolerance),
        "energy-pointing": lambda: energy_pointing(maps, boxes),
        "relevance-mass": lambda: relevance_mass(maps, masks),
        "relevance-rank": lambda: relevance_rank(maps, masks),
        "iou": lambda: iou(maps, masks, threshold),
    }
    out = {}
    for name in LOCALISATION:
        if name in metrics:
            value = compute[name]().float()
            out[KEYS[name]] = torch.where(known, value, torch.full_like(value, float("nan")))
    return out


def check_truth_options(options: EvalOptions) -> None:
    """What cannot go with --annotations (before any image is read)."""
    if options.sanity:
        raise UsageError("--sanity runs the randomisation check, which has no use for --annotations; drop one")


def truth_picture(
    picture: Image.Image, cam: torch.Tensor, regions: Sequence[Region], frame: tuple[int, int]
) -> Image.Image:
    """The map ``cam`` (h, w) over ``picture``, the outline of the ground truth ``regions`` (in ``frame``'s pixels)
    in white, and the map's maximum (what the pointing game checks) as a ring."""
    w, h = picture.size
    full = upsample_normalized(cam.float(), (h, w)).cpu().numpy()
    drawn = overlay(picture, full)
    sx, sy = w / frame[0], h / frame[1]
    thick = max(2, round(max(w, h) / 250))
    boxes = [r for r in regions if r.kind == "box"]
    shapes = [r for r in regions if r.kind != "box"]
    if shapes:
        mask = np.zeros((h, w), dtype=bool)
        for r in shapes:
            own = Image.fromarray(r.mask(frame)).resize((w, h), Image.Resampling.NEAREST)
            mask |= np.asarray(own, dtype=bool)
        for _ in range(thick // 2):  # a thicker line: the outline of the mask and of the mask grown by a pixel
            drawn = draw_outline(drawn, mask)
            grown = mask.copy()
            grown[1:, :] |= mask[:-1, :]
            grown[:-1, :] |= mask[1:, :]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            mask = grown
        drawn = draw_outline(drawn, mask)
    draw = ImageDraw.Draw(drawn)
    for r in boxes:
        x0, y0, x1, y1 = r.box
        draw.rectangle(
            (x0 * sx, y0 * sy, max(x0 * sx, x1 * sx - 1), max(y0 * sy, y1 * sy - 1)), outline="white", width=thick
        )
    y, x = divmod(int(np.argmax(full)), w)
    radius = 3 * thick
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline="black", width=thick + 2)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline="white", width=thick)
    return drawn
