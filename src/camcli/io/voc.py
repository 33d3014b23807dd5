"""Boxes from Pascal VOC XML files and from CSV files, as camcli's regions.

VOC numbers pixels from 1 and its boxes include both ends (``xmin=1, xmax=10`` are the first ten pixels), so a
box becomes (xmin − 1, ymin − 1, xmax, ymax) in continuous coordinates. A CSV gives them continuous already:
``input,class,x0,y0,x1,y1`` (a header line is optional; an empty class is a box without class, about whatever
class is explained; a row with an input and nothing else says the image has no object).
"""

from __future__ import annotations

import csv
import io
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from ..checks import first_words, one_line
from ..errors import UsageError
from .regions import Box, ImageAnnotations, Listing, Region, check_box

CSV_COLUMNS = "input,class,x0,y0,x1,y1"


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_voc(folder: Path, files: list[Path]) -> Listing:
    """The images of a folder's VOC XML files (``files``, sorted); UsageError naming the file for a malformed
    one. An XML without ``<filename>`` names the image by its own stem (any extension)."""
    names: list[str] = []
    wheres: list[str] = []
    annotated: list[ImageAnnotations] = []
    used: set[str] = set()
    objects = 0
    for file in files:
        where = one_line(file.relative_to(folder).as_posix())
        shown = one_line(str(file))

        def fail(message: str, shown: str = shown) -> UsageError:
            return UsageError(f"{shown}: {message}")

        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as e:
            raise fail(f"not valid XML ({first_words(e)}); fix or remove it") from None
        except OSError as e:
            raise fail(f"cannot be read ({e.strerror or e})") from None
        if root.tag != "annotation":
            raise fail(f"the root element is <{one_line(root.tag)[:40]}>, not <annotation>; give Pascal VOC files")
        name = (root.findtext("filename") or "").strip() or file.stem
        size = None
        width, height = _number(root.findtext("size/width")), _number(root.findtext("size/height"))
        if width or height:  # VOC files with <width>0</width> exist: they state no size
            if not width or not height or not width.is_integer() or not height.is_integer() or width < 0 or height < 0:
                raise fail(f"<size> gives width {width} and height {height}; give whole numbers of pixels")
            size = (int(width), int(height))
        regions = []
        for k, obj in enumerate(root.iter("object"), 1):
            label = (obj.findtext("name") or "").strip()
            if not label:
                raise fail(f"object {k} has no <name>; give its class")
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise fail(f"object {k} ({one_line(label)}) has no <bndbox>; give xmin, ymin, xmax, ymax")
            values = [_number(bndbox.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]
            if any(v is None for v in values):
                raise fail(f"object {k} ({one_line(label)}): <bndbox> needs numbers xmin, ymin, xmax, ymax")
            xmin, ymin, xmax, ymax = (float(v) for v in values)  # type: ignore[arg-type]
            box: Box = (xmin - 1, ymin - 1, xmax, ymax)  # 1-based, both ends included → continuous
            problem = check_box(box)
            if problem:
                raise fail(f"object {k} ({one_line(label)}): xmax < xmin or ymax < ymin; fix its <bndbox>")
            regions.append(Region(label, box, "box", _what=f"{where}: object {k} ({one_line(label)})"))
            used.add(label)
        objects += len(regions)
        names.append(name)
        wheres.append(where)
        annotated.append(ImageAnnotations(name, tuple(regions), size, said=f"{where} gives {one_line(name)} as"))
    return Listing(names, wheres, lambda i: annotated[i], sorted(used), objects)


def read_csv(path: Path, text: str) -> Listing:
    """The images of a CSV of boxes (``input,class,x0,y0,x1,y1``); UsageError naming the line of a bad row.
    Rows of one input make one image; the order is the file's."""
    shown = one_line(str(path))
    rows: dict[str, list[Region]] = {}
    lines: dict[str, int] = {}
    unlabelled = 0
    used: set[str] = set()
    reader = csv.reader(io.StringIO(text))
    first = True
    for row in reader:
        line = reader.line_num
        fields = [f.strip() for f in row]
        if not any(fields):
            continue
        if first and len(fields) == 6 and all(v and _number(v) is None for v in fields[2:]):
            first = False  # a header line
            continue
        first = False

        def fail(message: str, line: int = line) -> UsageError:
            return UsageError(f"{shown} line {line}: {message}; give {CSV_COLUMNS} (coordinates in pixels from 0)")

        if len(fields) == 1 and fields[0].count(";") >= 5:
            raise fail("fields separated by ';'; separate them with commas")
        if len(fields) > 6 or (len(fields) < 6 and any(fields[1:])):
            raise fail(f"{len(fields)} fields")
        fields += [""] * (6 - len(fields))
        name, label = fields[0], fields[1] or None
        if not name:
            raise fail("no input")
        regions = rows.setdefault(name, [])
        lines.setdefault(name, line)
        if not any(fields[2:]):
            if label is not None:
                raise fail(f"class {one_line(label)!r} without a box")
            continue  # the image is annotated, with no object
        values = [_number(v) for v in fields[2:]]
        if any(v is None for v in values):
            raise fail("a coordinate is not a number")
        box: Box = tuple(float(v) for v in values)  # type: ignore[arg-type,assignment]
        problem = check_box(box)
        if problem:
            raise fail(problem)
        what = f"{one_line(path.name)} line {line} ({one_line(label) if label else 'no class'})"
        regions.append(Region(label, box, "box", _what=what))
        if label is None:
            unlabelled += 1
        else:
            used.add(label)
    if not rows:
        raise UsageError(f"{shown}: no rows; give one line per box: {CSV_COLUMNS}")
    names = list(rows)
    annotated = [ImageAnnotations(n, tuple(rows[n]), None) for n in names]
    wheres = [f"line {lines[n]}" for n in names]
    return Listing(names, wheres, lambda i: annotated[i], sorted(used), sum(len(r) for r in rows.values()), unlabelled)
