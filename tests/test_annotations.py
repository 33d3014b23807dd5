"""Ground-truth annotations (issue 28): COCO JSON, Pascal VOC, CSV boxes and mask folders as regions, their masks
and grids (hand-computed cases; COCO's shapes against pycocotools), matching inputs to entries, the errors, and
matching annotation classes to a model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camcli.errors import InputError, UsageError
from camcli.io.annotations import Region, read_annotations
from camcli.io.class_match import class_match_note, match_classes, read_class_mapping
from camcli.models.labels import imagenet_categories

from .conftest import SAMPLES

# pycocotools (the reference) on numpy 2: its decode passes copy=False to __array__
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def coco(tmp_path: Path, images, annotations, categories=None, name="ann.json") -> Path:
    path = tmp_path / name
    cats = categories if categories is not None else [{"id": 1, "name": "cat"}, {"id": 2, "name": "cup"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path


def image(i: int, name: str, width: int | None = 8, height: int | None = 6) -> dict:
    out: dict = {"id": i, "file_name": name}
    if width is not None:
        out |= {"width": width, "height": height}
    return out


def box(x0, y0, x1, y1) -> Region:
    return Region("cat", (x0, y0, x1, y1), "box")


def cells(*rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


# ------------------------------------------------------------------------------------------- boxes, by hand
def test_a_one_pixel_box_is_that_pixel_and_its_cell():
    r = box(3, 2, 4, 3)
    mask = r.mask((8, 6))
    assert mask.shape == (6, 8) and mask.sum() == 1 and mask[2, 3]
    # 4×3 cells of 2×2 pixels: the pixel covers a quarter of cell (1, 1), the most any cell is covered
    assert np.array_equal(r.grid((8, 6), (3, 4)), cells("....", ".#..", "...."))


def test_box_pixels_are_those_whose_centres_lie_in_it():
    # centres x 0.5, 1.5 in [0.5, 2.5); 2.5 is not; y: 0.5 in [0.5, 1.5), 1.5 is not
    assert np.array_equal(box(0.5, 0.5, 2.5, 1.5).mask((4, 3)), cells("##..", "....", "...."))
    # a box between centres, smaller than a pixel: the pixel holding its centre (2.75, 1.75)
    assert np.array_equal(box(2.6, 1.6, 2.9, 1.9).mask((4, 3)), cells("....", "..#.", "...."))
    # thinner than a pixel in y only: its centres in x (1.5, 2.5), in the row holding its centre (y 1.2)
    assert np.array_equal(box(0.6, 1.1, 3.4, 1.3).mask((4, 3)), cells("....", ".##.", "...."))
    # partly outside: clipped
    assert np.array_equal(box(-5, -5, 1, 1).mask((3, 2)), cells("#..", "..."))


def test_a_box_outside_the_picture_is_an_input_error():
    with pytest.raises(InputError, match="outside the picture"):
        box(10, 10, 12, 12).mask((8, 6))


def test_a_cell_covered_exactly_half_is_in():
    # 4×4 picture, 2×2 cells: the box covers column 1 of row 0 half (x 2..3 of 2..4)
    assert np.array_equal(box(0, 0, 3, 2).grid((4, 4), (2, 2)), cells("##", ".."))
    assert np.array_equal(box(0, 0, 2.999, 2).grid((4, 4), (2, 2)), cells("#.", ".."))
    # cells 7/3 pixels wide (not a binary fraction): x1 = 7/3 + 7/6 = 3.5 covers the middle cell exactly half
    assert np.array_equal(box(0, 0, 3.5, 1).grid((7, 1), (1, 3)), cells("##."))
    assert np.array_equal(box(0, 0, 3.4999, 1).grid((7, 1), (1, 3)), cells("#.."))
    # half of a half is a quarter: out (two cells at a half in one direction, a half in the other)
    assert np.array_equal(box(1, 1, 3, 3).grid((4, 4), (2, 2)), cells("##", "##"))  # all tied at 1/4: the most
    assert np.array_equal(box(0, 1, 3, 3).grid((4, 4), (2, 2)), cells("#.", "#."))


def test_a_small_box_between_two_cells_keeps_both():
    assert np.array_equal(box(1.5, 0, 2.5, 1).grid((4, 2), (1, 2)), cells("##"))
    # no area at all (a point): the cell holding it; a line: the cells it spans at least half of, in its row
    assert np.array_equal(box(3, 1, 3, 1).grid((4, 2), (2, 2)), cells("..", ".#"))
    assert np.array_equal(box(0, 1, 8, 1).grid((8, 2), (2, 4)), cells("....", "####"))
    assert np.array_equal(box(1.2, 0.2, 5, 0.2).grid((8, 2), (2, 4)), cells(".##.", "...."))


def test_shape_grids_are_by_area():
    # a 3×3 mask on 2×2 cells of 1.5 pixels: pixel (0, 0) covers 1/2.25 of cell (0, 0), the most: in
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = True
    r = Region(None, (0, 0, 1, 1), "mask", _shape=mask)
    assert np.array_equal(r.grid((3, 3), (2, 2)), cells("#.", ".."))
    mask[0, 1] = True  # cell (0, 0): 1 + ½ of 2.25 = ⅔, in; cell (0, 1): ½ of 2.25, out
    r = Region(None, (0, 0, 2, 1), "mask", _shape=mask)
    assert np.array_equal(r.grid((3, 3), (2, 2)), cells("#.", ".."))
    # 4×2 picture, cells of 2×2: the right cell covered exactly half (2 of 4 pixels) is in, by 1 pixel it is not
    half = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    assert np.array_equal(Region(None, (0, 0, 4, 2), "mask", _shape=half).grid((4, 2), (1, 2)), cells("##"))
    quarter = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    assert np.array_equal(Region(None, (0, 0, 3, 2), "mask", _shape=quarter).grid((4, 2), (1, 2)), cells("#."))
    # the box grid of a shape is its bounding box's
    assert np.array_equal(Region(None, (0, 0, 3, 2), "mask", _shape=quarter).box_grid((4, 2), (1, 2)), cells("##"))


def test_a_mask_of_another_size_is_an_input_error():
    r = Region(None, (0, 0, 1, 1), "mask", _shape=np.ones((3, 3), bool), _what="mask m.png")
    with pytest.raises(InputError, match=r"mask m.png is 3×3 but the picture is 4×3"):
        r.mask((4, 3))


# ------------------------------------------------------------------------------------------ COCO vs pycocotools
POLYGONS = [
    [[2, 2, 17, 3, 9, 14]],  # a triangle
    [[1.3, 1.7, 18.2, 1.1, 18.9, 12.6, 10.4, 5.5, 2.2, 13.9]],  # concave, fractional
    [[-4, -3, 9.5, 2.5, 25, 20, 3, 11.25]],  # partly outside
    [[3, 3, 7, 3, 7, 7, 3, 7], [10, 2, 16, 2.5, 13, 9]],  # two parts
    [[5, 5, 6, 5.2, 5.5, 6]],  # smaller than a pixel or two
]


@pytest.mark.parametrize("polygons", POLYGONS)
def test_polygons_are_pycocotools_masks(tmp_path, polygons):
    mu = pytest.importorskip("pycocotools.mask")
    height, width = 15, 20
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": polygons}
    region = read_annotations(coco(tmp_path, [image(1, "a.png", width, height)], [ann])).for_input(
        Path("a.png"), "a.png"
    )
    assert region is not None and region.regions[0].kind == "polygon"
    expected = mu.decode(mu.merge(mu.frPyObjects(polygons, height, width))).astype(bool)
    assert expected.any()
    assert np.array_equal(region.regions[0].mask((width, height)), expected)


def test_rles_are_pycocotools_masks(tmp_path):
    mu = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(28)
    height, width = 13, 17
    anns, expected = [], []
    for k in range(6):
        # uncompressed: random runs covering the picture; compressed: pycocotools' encoding of a random blob
        runs = rng.integers(0, 25, 30)
        runs = list(runs[np.cumsum(runs) <= height * width])
        runs.append(height * width - sum(runs))
        counts: object = [int(v) for v in runs]
        if k % 2:
            blob = rng.random((height, width)) < 0.3 + 0.1 * k
            counts = mu.encode(np.asfortranarray(blob.astype(np.uint8)))["counts"].decode()
        rle = {"counts": counts, "size": [height, width]}
        anns.append({"id": k + 1, "image_id": 1, "category_id": 2, "iscrowd": 1, "segmentation": rle})
        ref = rle if isinstance(counts, str) else mu.frPyObjects(rle, height, width)
        expected.append(mu.decode(ref).astype(bool))
    found = read_annotations(coco(tmp_path, [image(1, "a.png", width, height)], anns)).for_input(Path("a"), "a.png")
    assert found is not None and [r.kind for r in found.regions] == ["rle"] * 6
    assert all(r.crowd for r in found.regions)
    for region, ref in zip(found.regions, expected, strict=True):
        assert np.array_equal(region.mask((width, height)), ref)
        rows, cols = np.flatnonzero(ref.any(1)), np.flatnonzero(ref.any(0))  # no bbox given: the pixels' bounds
        assert region.box == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def test_integer_boxes_are_pycocotools_boxes_and_voc_boxes_are_the_same(tmp_path):
    mu = pytest.importorskip("pycocotools.mask")
    path = coco(tmp_path, [image(1, "a.png", 40, 50)], [{"image_id": 1, "category_id": 1, "bbox": [10, 20, 20, 15]}])
    from_coco = read_annotations(path).for_input(Path("a.png"), "a.png")
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>40</width><height>50</height></size>"
        "<object><name>cat</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>30</xmax><ymax>35</ymax></bndbox>"
        "</object></annotation>"
    )
    from_voc = read_annotations(tmp_path / "voc").for_input(Path("a.png"), "a.png")
    assert from_coco is not None and from_voc is not None
    assert from_voc.regions[0].box == from_coco.regions[0].box == (10, 20, 30, 35)
    assert (
        read_annotations(tmp_path / "voc").describe() == f"Pascal VOC {tmp_path / 'voc'}: 1 image, 1 object, class cat"
    )
    expected = mu.decode(mu.frPyObjects(np.array([[10.0, 20, 20, 15]]), 50, 40))[:, :, 0].astype(bool)
    assert np.array_equal(from_coco.regions[0].mask((40, 50)), expected)
    assert np.array_equal(from_voc.regions[0].mask((40, 50)), expected)


def test_voc_pixels_are_one_based_and_inclusive(tmp_path):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>dog</name>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"
    )
    found = read_annotations(tmp_path).for_input(Path("a.png"), "a.png")
    assert found is not None and found.size is None
    assert np.array_equal(found.regions[0].mask((3, 3)), cells("...", "##.", "..."))  # pixels 1..2 of row 2


def test_csv_boxes(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("input,class,x0,y0,x1,y1\na.png,cat,0,0,2,1\na.png,,1,1,3,2\nb.png,,,,,\n")
    found = read_annotations(path)
    assert len(found) == 2 and found.labels() == ["cat"]
    a, b = found.for_input(Path("a.png"), "a.png"), found.for_input(Path("b.png"), "b.png")
    assert a is not None and [(r.label, r.box) for r in a.regions] == [("cat", (0, 0, 2, 1)), (None, (1, 1, 3, 2))]
    assert b is not None and b.regions == () and b.size is None
    assert (
        found.describe()
        == f"CSV boxes {path}: 2 images, 2 objects, class cat, 1 without class (about the class explained)"
    )


def test_mask_folders_palette_void_and_grey(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    index = np.zeros((4, 5), np.uint8)
    index[1, 1:3] = 15  # a class
    index[2, 1:4] = 255  # void: not the object
    palette = Image.new("P", (5, 4))
    palette.putdata(index.ravel().tolist())
    palette.putpalette([0, 0, 0] * 256)
    palette.save(folder / "a.png")
    grey = np.zeros((4, 5), np.uint8)
    grey[0, 4] = 255
    Image.fromarray(grey).save(folder / "b.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(folder / "c.png")
    found = read_annotations(folder)
    assert found.source == "mask folder" and len(found) == 3 and found.labels() == []
    a = found.for_input(Path("x/a.jpg"), "a.jpg")  # by stem: any extension
    assert a is not None and a.size == (5, 4) and a.regions[0].label is None and a.regions[0].box == (1, 1, 3, 2)
    assert np.array_equal(a.regions[0].mask((5, 4)), index == 15)
    b = found.for_input(Path("b.png"), "b.png")
    assert b is not None and np.array_equal(b.regions[0].mask((5, 4)), grey > 0)
    c = found.for_input(Path("c.png"), "c.png")
    assert c is not None and c.regions == ()  # annotated, no object
    with pytest.raises(InputError, match=r"^mask .*a.png is 5×4 but the picture is 10×8: annotations of another"):
        a.check_size(10, 8)


# ------------------------------------------------------------------------------------------ matching inputs
def test_inputs_match_by_path_then_name_then_stem(tmp_path):
    names = ["a/cat.png", "b/cat.png", "dog.png", "bird.png", "bird.jpg"]
    path = coco(tmp_path, [image(i, n) for i, n in enumerate(names)], [])
    found = read_annotations(path)

    def name_of(rel: str) -> str | None:
        hit = found.for_input(Path("/data") / rel, rel)
        return None if hit is None else hit.name

    assert name_of("a/cat.png") == "a/cat.png" and name_of("b/cat.png") == "b/cat.png"
    assert name_of("a/cat.jpg") == "a/cat.png"  # the path without extension
    assert name_of("x/dog.png") == "dog.png"  # the file name
    assert name_of("dog.webp") == "dog.png"  # the stem
    assert name_of("bird.jpg") == "bird.jpg"  # the path settles what the stem would not
    assert name_of("fish.png") is None
    with pytest.raises(InputError) as err:
        name_of("cat.png")
    message = str(err.value)
    assert "a/cat.png (image 0)" in message and "b/cat.png (image 1)" in message and "\n" not in message
    with pytest.raises(InputError, match=r"bird\.png \(image 3\) and bird\.jpg \(image 4\)"):
        name_of("bird.gif")


def test_the_size_check(tmp_path):
    path = coco(tmp_path, [image(1, "chelsea.png", 640, 480), image(2, "b.png", None)], [], name="annotations.json")
    found = read_annotations(path)
    chelsea = found.for_input(Path("chelsea.png"), "chelsea.png")
    assert chelsea is not None and chelsea.size == (640, 480)
    chelsea.check_size(640, 480)
    with pytest.raises(InputError) as err:
        chelsea.check_size(451, 300)
    assert str(err.value) == (
        "annotations.json gives chelsea.png as 640×480 but the picture is 451×300: "
        "annotations of another version of the image?"
    )
    b = found.for_input(Path("b.png"), "b.png")
    assert b is not None and b.size is None
    b.check_size(1, 1)  # no size stated: nothing to check


def test_the_sample_annotations():
    found = read_annotations(SAMPLES / "annotations.json")
    assert found.describe() == (
        f"COCO JSON {SAMPLES / 'annotations.json'}: 3 images, 3 objects, classes cat, cup, person"
    )
    for name, label in (("chelsea.png", "cat"), ("coffee.png", "cup"), ("astronaut.png", "person")):
        entry = found.for_input(SAMPLES / name, name)
        with Image.open(SAMPLES / name) as picture:
            size = picture.size
        assert entry is not None and [r.label for r in entry.regions] == [label]
        entry.check_size(*size)
        mask = entry.regions[0].mask(size)
        assert 0.1 < mask.mean() < 0.95  # an object, not the whole picture
    mapping = read_class_mapping(SAMPLES / "annotation_classes.json")
    matched = match_classes(found.labels(), imagenet_categories(), mapping)
    assert matched["person"] == [] and len(matched["cat"]) == 5 and imagenet_categories()[matched["cup"][0]] == "cup"


# ------------------------------------------------------------------------------------------ malformed files
I1 = image(1, "a.png")
A1 = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}
BAD_COCO = [
    ("[]", "a JSON list"),
    ('{"images": []}', "no list 'annotations'"),
    ({"images": [I1], "annotations": [{**A1, "image_id": 9}]}, "annotation 5 names image_id 9"),
    ({"images": [I1], "annotations": [{**A1, "category_id": 7}]}, "annotation 5 names category_id 7"),
    ({"images": [I1], "annotations": [{**A1, "bbox": [0, 0, -1, 2]}]}, "annotation 5 has bbox"),
    ({"images": [I1], "annotations": [{**A1, "segmentation": [[1, 2, 3, 4, 5]]}]}, "polygon of 5 numbers"),
    ({"images": [I1], "annotations": [{**A1, "segmentation": [[1, 2, "3", 4, 5, 6]]}]}, "neither polygons"),
    ({"images": [I1], "annotations": [{**A1, "segmentation": [[1, 2, 3, 4, 5, 1e9]]}]}, "100,000 pixels away"),
    ({"images": [I1], "annotations": [{**A1, "bbox": [0, 0, float("nan"), 2]}]}, "annotation 5 has bbox"),
    ({"images": [I1], "annotations": [{**A1, "segmentation": {"counts": [48], "size": [6]}}]}, "RLE whose size"),
    ({"images": [I1], "annotations": [{**A1, "segmentation": {"counts": [12], "size": [3, 4]}}]}, "RLE of 4×3"),
    ({"images": [I1], "annotations": [{"image_id": 1, "category_id": 1}]}, "annotations[0] has neither"),
    ({"images": [I1, I1], "annotations": []}, "two images have id 1"),
    ({"images": [{"id": 1}], "annotations": []}, "image 1 has no file_name"),
    ({"images": [{**I1, "width": 0}], "annotations": []}, "image 1 has width 0"),
]


@pytest.mark.parametrize(("content", "said"), BAD_COCO)
def test_malformed_coco_files_are_one_line_usage_errors(tmp_path, content, said):
    path = tmp_path / "bad.json"
    if isinstance(content, dict):
        content = json.dumps({"categories": [{"id": 1, "name": "cat"}], **content})
    path.write_text(content)
    with pytest.raises(UsageError) as err:
        read_annotations(path)
    assert said in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.csv", "a.png,cat,1,2,3\n", "line 1: 5 fields"),
        ("bad.csv", "input,class,x0,y0,x1,y1\na.png,cat,0,0,1,1\na.png,cat,0,x,1,1\n", "line 3: a coordinate"),
        ("bad.csv", "a.png,cat,5,0,1,1\n", "line 1: x1 < x0"),
        ("bad.csv", "a.png,cat,,,,\n", "class 'cat' without a box"),
        ("bad.csv", "\n\n", "no rows"),
        ("bad.txt", "a.png,cat,0,0,1,1\n", ".txt is no annotation format"),
        ("a.xml", "<annotation/>", "one Pascal VOC file; give the folder"),
        ("voc/a.xml", "<annotation><object>", "not valid XML"),
        ("voc/a.xml", "<root/>", "the root element is <root>"),
        ("voc/a.xml", "<annotation><object><name>cat</name></object></annotation>", "object 1 (cat) has no <bndbox>"),
        ("voc/a.xml", "<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
        (
            "voc/a.xml",
            "<annotation><object><name>c</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
            "<bndbox> needs numbers",
        ),
        ("empty/", None, "a folder without .xml files or mask images"),
        ("missing.json", None, "no such file or folder"),
    ],
)
def test_malformed_files_are_one_line_usage_errors(tmp_path, name, content, said):
    path = tmp_path / name
    if content is not None:
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
    elif name.endswith("/"):
        path.mkdir()
    target = path.parent if name.startswith("voc/") else path
    with pytest.raises(UsageError) as err:
        read_annotations(target)
    message = str(err.value)
    assert said in message and "\n" not in message, message
    assert str(path if name.startswith("voc/") else target) in message


# ------------------------------------------------------------------------------------------ class matching
def test_classes_match_by_name_ignoring_case_and_separators():
    names = ["tabby", "coffee mug", "crane", "cup", "crane"]
    matched = match_classes(["Coffee_Mug", "cup", "CRANE", "cat"], names)
    assert matched == {"Coffee_Mug": [1], "cup": [3], "CRANE": [2, 4], "cat": []}
    assert class_match_note(match_classes(["cup", "cat", "person"], names), names) == (
        "annotation classes: cup → cup; cat, person: no class of the model by that name "
        "(map them with --annotation-classes FILE)"
    )


def test_class_mappings(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"cat": ["tabby", "tiger-cat"], "cup": "coffee mug"}))
    mapping = read_class_mapping(path)
    assert mapping == {"cat": ["tabby", "tiger-cat"], "cup": ["coffee mug"]}
    names = ["tabby", "tiger cat", "coffee mug", "cup"]
    assert match_classes(["cat", "cup", "person"], names, mapping) == {"cat": [0, 1], "cup": [2], "person": []}
    assert class_match_note({"cat": [0, 1]}, names) == "annotation classes: cat → tabby, tiger cat"
    with pytest.raises(UsageError) as err:
        match_classes(["cat"], names, {"cat": ["tabbby"]})
    assert "'tabbby'" in str(err.value) and "the closest is 'tabby'" in str(err.value)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[1]", "must hold a JSON object"),
        ('{"cat": 3}', "'cat' maps to 3"),
        ('{"cat": []}', "maps to []"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_class_mappings_are_one_line_usage_errors(tmp_path, content, said):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(UsageError) as err:
        read_class_mapping(path)
    assert said in str(err.value) and "\n" not in str(err.value)
