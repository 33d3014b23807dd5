"""Ground-truth annotations for ``camcli evaluate --annotations PATH``: which regions of an input the model
should look at.

:func:`read_annotations` tells the format from the path (a COCO instances ``.json``, a ``.csv`` of boxes, a folder
of Pascal VOC ``.xml`` files or of mask images) and indexes it; :meth:`Annotations.for_input` finds an input's
entry by its path relative to its input folder, then by that path without extension, then by file name, then by
stem (so ``photos/cat.jpg`` finds ``cat.png``'s mask); two entries that an input could equally be are an error,
not a guess. Nothing is rasterised until a region's mask or grid is asked for (:mod:`camcli.io.regions`).
"""

from __future__ import annotations

import csv
import os
import unicodedata
from pathlib import Path, PurePosixPath

from ..checks import first_words, json_value, one_line, regular_file
from ..errors import InputError, UsageError
from .coco import read_coco
from .inputs import IMAGE_EXTENSIONS
from .masks import list_masks
from .outputs import is_regular
from .regions import ImageAnnotations, Listing, Region
from .voc import read_csv, read_voc

__all__ = ["Annotations", "ImageAnnotations", "Region", "read_annotations"]

FORMATS = "a COCO instances .json, a .csv of boxes (input,class,x0,y0,x1,y1), or a folder of VOC .xml files or masks"
_HOW = ("path", "path without extension", "file name", "stem")  # the keys of an input, most precise first
_SHOWN_CLASSES = 12  # describe() names this many classes, then says how many there are


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _posix(name: str) -> PurePosixPath:
    """An entry's or input's name as a relative POSIX path (Windows separators read as ``/``, ``./`` dropped;
    Unicode in its composed form, NFC: macOS writes names decomposed, most tools composed)."""
    return PurePosixPath(unicodedata.normalize("NFC", name.replace("\\", "/")))


def _keys(p: PurePosixPath) -> tuple[str, str, str, str]:
    """A name's keys, most precise first: path, path without extension, file name, stem."""
    return (str(p), str(p.with_suffix("")) if p.name else str(p), p.name, p.stem)


class Annotations:
    """An annotation file (or folder), indexed by the names it gives its images."""

    def __init__(self, path: Path, source: str, listing: Listing) -> None:
        self.path = path
        self.source = source  # "COCO JSON" | "Pascal VOC" | "mask folder" | "CSV boxes"
        self._listing = listing
        # how an input finds its entry, most precise first: path, path without extension, file name, stem
        self._indexes: list[dict[str, list[int]]] = [{}, {}, {}, {}]
        for i, name in enumerate(listing.names):
            for index, key in zip(self._indexes, _keys(_posix(name)), strict=True):
                index.setdefault(key, []).append(i)

    def for_input(self, path: Path, rel: str) -> ImageAnnotations | None:
        """The annotations of the input at ``path`` (``rel``: its path relative to the folder it was found in,
        POSIX), or None when nothing names it; InputError when two entries could equally be it."""
        r = _posix(rel) if rel else _posix(path.name)
        for index, key, how in zip(self._indexes, _keys(r), _HOW, strict=True):
            hits = index.get(key, [])
            if len(hits) == 1:
                return self._listing.load(hits[0])
            if len(hits) > 1:
                listed = [self._entry(i) for i in hits]
                shown = " and ".join(listed) if len(listed) == 2 else f"{', '.join(listed[:3])}, … ({len(listed)})"
                raise InputError(
                    f"{one_line(rel or path.name)}: {one_line(self.path.name)} has {len(hits)} images of that {how}, "
                    f"{shown}; make the annotations' names tell them apart, or give the inputs by the paths "
                    "the annotations name them by"
                )
        return None

    def _entry(self, i: int) -> str:
        name, where = one_line(self._listing.names[i]), self._listing.wheres[i]
        return name if where == name else f"{name} ({where})"

    def labels(self) -> list[str]:
        """Every class name the annotations use, sorted."""
        return list(self._listing.labels)

    def __len__(self) -> int:
        return len(self._listing.names)

    def describe(self) -> str:
        """One line: the format, the path, how many images and objects, which classes."""
        head = f"{self.source} {one_line(str(self.path))}: {_plural(len(self), 'image')}"
        listing = self._listing
        if self.source == "mask folder":
            return f"{head}, one mask each, without class (each is about the class explained)"
        if listing.objects is not None:
            head += f", {_plural(listing.objects, 'object')}"
        labels = [one_line(label) for label in listing.labels]
        if labels:
            shown = ", ".join(labels[:_SHOWN_CLASSES])
            more = f", … ({len(labels)} classes)" if len(labels) > _SHOWN_CLASSES else ""
            head += f", {'class' if len(labels) == 1 else 'classes'} {shown}{more}"
        if listing.unlabelled:
            head += f", {listing.unlabelled:,} without class (about the class explained)"
        return head


def _walk(folder: Path) -> list[Path]:
    """The files under ``folder``, sorted, hidden ones (and folders) left out, symbolic links to folders not
    followed."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # only regular files: a FIFO or a device in the folder would block or never end when read
        found.extend(p for f in files if not f.startswith(".") and is_regular(p := Path(parent) / f))
    return sorted(found)


def read_annotations(path: Path) -> Annotations:
    """Read and index annotations; the format from the path. UsageError (one line: the file, what is wrong, the
    fix) for a missing path, an unknown format or a malformed file."""
    path = Path(path)
    shown = one_line(str(path))
    if not path.exists():
        raise UsageError(f"--annotations {shown}: no such file or folder; give {FORMATS}")
    if path.is_dir():
        files = _walk(path)
        xml = [f for f in files if f.suffix.lower() == ".xml"]
        if xml:
            return Annotations(path, "Pascal VOC", read_voc(path, xml))
        masks = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        if masks:
            return Annotations(path, "mask folder", list_masks(path, masks))
        raise UsageError(f"--annotations {shown}: a folder without .xml files or mask images; give {FORMATS}")
    regular_file("--annotations", str(path))
    suffix = path.suffix.lower()
    if suffix == ".xml":
        raise UsageError(f"--annotations {shown}: one Pascal VOC file; give the folder that holds the .xml files")
    if suffix not in (".json", ".csv"):
        raise UsageError(
            f"--annotations {shown}: {suffix or 'a file without extension'} is no annotation format camcli reads; "
            f"give {FORMATS}"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise UsageError(f"--annotations {shown} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--annotations {shown} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if suffix == ".csv":
        try:
            return Annotations(path, "CSV boxes", read_csv(path, text))
        except (csv.Error, ValueError, OverflowError) as e:  # (a field over the csv module's limit, …)
            raise UsageError(f"--annotations {shown}: not a CSV of boxes camcli can read ({first_words(e)})") from None
    try:
        data = json_value(text)
    except ValueError as e:
        raise UsageError(f"--annotations {shown} is not valid JSON ({first_words(e)}); fix it") from None
    try:
        return Annotations(path, "COCO JSON", read_coco(path, data))
    except (TypeError, ValueError, OverflowError, KeyError) as e:  # a value of a type no check foresaw
        raise UsageError(
            f"--annotations {shown}: a value of an unexpected type or size ({first_words(e)}); give COCO's "
            "types (ids and sizes integers, bbox four numbers)"
        ) from None
