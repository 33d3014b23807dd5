"""COCO instances JSON (``images``, ``annotations``, ``categories``) as camcli's regions.

Everything is checked when the file is read (an unknown image or category id, a malformed box or shape is a
UsageError naming the annotation), but nothing is rasterised: polygons and RLEs stay as the file gives them until
a mask is asked for (:mod:`camcli.io.shapes`). A ``bbox`` is [x, y, w, h] in continuous pixel coordinates; an
annotation without segmentation is its box; ``iscrowd`` regions are kept (marked ``crowd``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ..checks import one_line
from ..errors import UsageError
from .regions import Box, ImageAnnotations, Listing, Region, check_box
from .shapes import counts_box, finite_numbers, points_box

FAR = 100_000  # a polygon point further than this from the origin (pixels): a broken file, not a picture
Fail = Callable[[str], NoReturn]
_FIX = "give a COCO instances file (images, annotations, categories)"


MAX_RLE_PIXELS = 2**28  # an RLE mask larger than any picture camcli reads by default (a 16k × 16k scan)


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _short(value: Any) -> str:
    return one_line(str(value))[:60]


def _size_of(image: dict[str, Any], where: str, fail: Fail) -> tuple[int, int] | None:
    width, height = image.get("width"), image.get("height")
    if width is None and height is None:
        return None
    sides = []
    for side in (width, height):
        if isinstance(side, float) and side.is_integer():
            side = int(side)
        if not isinstance(side, int) or isinstance(side, bool) or side <= 0:
            fail(f"{where} has width {_short(width)} and height {_short(height)}; give both as whole numbers > 0")
        sides.append(side)
    return (sides[0], sides[1])


def read_coco(path: Path, data: Any) -> Listing:
    """The images of a COCO instances file's parsed JSON ``data``; UsageError (one line, naming the file and the
    entry) for anything malformed."""
    file = one_line(str(path))

    def fail(message: str) -> NoReturn:
        raise UsageError(f"{file}: {message}")

    if isinstance(data, list):
        fail(f"a JSON list, not a COCO instances file (a detection results file?); {_FIX}")
    if not isinstance(data, dict):
        fail(f"not a JSON object; {_FIX}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            fail(f"no list {key!r}; {_FIX}" if key not in data else f"{key!r} is not a list; {_FIX}")
    categories: dict[Any, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            fail(f"categories[{i}] is not an object with an id and a name")
        if cat["id"] in categories:
            fail(f"two categories have id {_short(cat['id'])}; give each its own")
        categories[cat["id"]] = cat["name"]
    images: dict[Any, int] = {}
    names: list[str] = []
    wheres: list[str] = []
    sizes: list[tuple[int, int] | None] = []
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not _is_id(image.get("id")):
            fail(f"images[{i}] is not an object with an id")
        where = f"image {_short(image['id'])}"
        if image["id"] in images:
            fail(f"two images have id {_short(image['id'])}; give each its own")
        name = image.get("file_name")
        if not isinstance(name, str) or not name.strip():
            fail(f"{where} has no file_name; give the picture's file name")
        images[image["id"]] = len(names)
        names.append(name)
        wheres.append(where)
        sizes.append(_size_of(image, where, fail))
    regions: list[list[Region]] = [[] for _ in names]
    used: set[str] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            fail(f"annotations[{i}] is not an object")
        what = f"annotation {_short(ann['id'])}" if _is_id(ann.get("id")) else f"annotations[{i}]"
        if ann.get("image_id") not in images or not _is_id(ann.get("image_id")):
            fail(f"{what} names image_id {_short(ann.get('image_id'))}, which no entry of images has; fix the id")
        if ann.get("category_id") not in categories or not _is_id(ann.get("category_id")):
            fail(f"{what} names category_id {_short(ann.get('category_id'))}, which categories has not; fix the id")
        index = images[ann["image_id"]]
        label = categories[ann["category_id"]]
        region = _region(ann, label, sizes[index], f"{file}: {what} ({one_line(label)})", fail, what)
        regions[index].append(region)
        used.add(label)
    said = [f"{one_line(path.name)} gives {one_line(n)} as" for n in names]
    annotated = [
        ImageAnnotations(name, tuple(rs), size, said=s)
        for name, rs, size, s in zip(names, regions, sizes, said, strict=True)
    ]
    return Listing(names, wheres, lambda i: annotated[i], sorted(used), len(data["annotations"]))


def _region(
    ann: dict[str, Any], label: str, size: tuple[int, int] | None, described: str, fail: Fail, what: str
) -> Region:
    box: Box | None = None
    if ann.get("bbox") is not None:
        bbox = ann["bbox"]
        if not finite_numbers(bbox) or len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
            fail(f"{what} has bbox {_short(bbox)}; give [x, y, width, height] with width and height ≥ 0")
        box = (float(bbox[0]), float(bbox[1]), float(bbox[0] + bbox[2]), float(bbox[1] + bbox[3]))
    crowd = bool(ann.get("iscrowd"))
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        counts, rle_size = _rle(segmentation, size, fail, what)
        if box is None:
            try:
                box = counts_box(counts, rle_size)
            except ValueError as e:
                fail(f"{what}: its RLE counts are broken ({e}); fix the annotation")
        assert box is not None
        return Region(label, box, "rle", crowd, _shape=(counts, rle_size), _what=described)
    polygons = _polygons(segmentation, fail, what) if segmentation not in (None, []) else []
    if box is None:
        if not polygons:
            fail(f"{what} has neither a bbox nor a segmentation; give one")
        box = points_box(polygons)
    problem = check_box(box)
    if problem:
        fail(f"{what}: {problem}; fix its bbox")
    if polygons:
        return Region(label, box, "polygon", crowd, _shape=tuple(polygons), _what=described)
    return Region(label, box, "box", crowd, _what=described)


def _polygons(segmentation: Any, fail: Fail, what: str) -> list[tuple[float, ...]]:
    """The polygons of a segmentation (a list of flat [x1, y1, …] lists, or one flat list), without those of
    fewer than 3 points (they enclose nothing)."""
    if finite_numbers(segmentation):
        segmentation = [segmentation]
    if not isinstance(segmentation, list) or not all(finite_numbers(p) for p in segmentation):
        fail(f"{what} has a segmentation that is neither polygons ([[x1, y1, x2, y2, …], …]) nor an RLE; fix it")
    polygons = []
    for p in segmentation:
        if len(p) % 2:
            fail(f"{what} has a polygon of {len(p)} numbers; give x, y pairs")
        if p and (max(p) > FAR or min(p) < -FAR):
            fail(f"{what} has a polygon point more than {FAR:,} pixels away; fix its coordinates")
        if len(p) >= 6:
            polygons.append(tuple(map(float, p)))
    return polygons


def _rle(
    segmentation: dict[str, Any], size: tuple[int, int] | None, fail: Fail, what: str
) -> tuple[list[int] | str, tuple[int, int]]:
    counts, rle_size = segmentation.get("counts"), segmentation.get("size")
    if (
        not isinstance(rle_size, list)
        or len(rle_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rle_size)
    ):
        fail(f"{what} has an RLE whose size is {_short(rle_size)}; give [height, width]")
    height, width = rle_size
    if height * width > MAX_RLE_PIXELS:
        fail(f"{what} has an RLE of {width}×{height}, over {MAX_RLE_PIXELS:,} pixels; is its size right?")
    if size is not None and (width, height) != size:
        fail(f"{what} has an RLE of {width}×{height} on an image of {size[0]}×{size[1]}; fix one of them")
    if isinstance(counts, str):
        return counts, (height, width)
    if not isinstance(counts, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts
    ):
        fail(f"{what} has RLE counts that are neither a list of whole numbers ≥ 0 nor a compressed string; fix it")
    return list(counts), (height, width)
