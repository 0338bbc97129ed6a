"""Read and check any COCO release: one COCO file and its pictures, as CVAT (through Datumaro), Label
Studio or any other tool exports them.

What differs between the exporters, and is handled here:
- the COCO file: the only .json in the folder or one level down (CVAT: annotations/instances_<subset>.json;
  Label Studio: result.json), or --coco;
- where the pictures are: file_name is relative to the COCO file's folder, the release's, images/ or
  images/<subset>/ (CVAT); the base that finds them all is chosen (or --images);
- category ids from 0 or 1, with gaps: the labels are the categories with masks, in id order (or --categories);
- masks as polygons, uncompressed RLE (`counts` a list: CVAT) or compressed RLE (a string); a box-only
  annotation (`segmentation: []`) is no mask: its picture stays for the classifier only;
- every picture listed, annotated or not: one without an annotation is a negative;
- one picture listed once per annotator (Label Studio): the entries are merged, their masks unioned;
- Label Studio's local files (a task's image `/data/local-files/?d=...`) are named by a path from its export
  folder (`../../pictures/a.jpg`): with --images (its document root, or a folder above the pictures), the
  longest tail of that path found there is the picture, named by its path under --images.
Image-level labels come from the annotations of the --positive categories, or from a --labels CSV.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from pycocotools.coco import COCO

from shared.contract import IngestRequest
from shared.errors import InputError
from workers.imaging.dicom import read_identity
from workers.imaging.pseudonyms import patient_pseudonym, picture_pseudonym
from workers.ingest.coco import InputCaps, load_coco, mask_segment, picture_size
from workers.ingest.release import COCO_LAYOUT, ImageEntry, Release, inside_release, read_csv_columns

TRUE_LABELS, FALSE_LABELS = {"1", "true", "yes", "positive"}, {"0", "false", "no", "negative"}
RESERVED = "background"  # nnU-Net's label 0


def read_coco_release(root: Path, request: IngestRequest, caps: InputCaps, key: bytes | None) -> Release:
    coco_path = _coco_file(root, request)
    coco = load_coco(coco_path, caps, unique_file_names=False)
    categories = _categories(coco, coco_path)
    masked = _categories_with_masks(coco)
    if not masked:
        boxes = ", only boxes" if coco.dataset["annotations"] else ""
        raise InputError(
            f"{coco_path} has no mask annotation (polygon or RLE){boxes}: nnU-Net learns from masks; export the "
            "release with masks (docs/own-data.md)"
        )
    warnings: list[str] = []
    chosen = _chosen(categories, masked, request.categories, coco_path, warnings)
    label_of = {category_id: label for label, category_id in enumerate(chosen, start=1)}
    positive = set(_named(categories, request.positive, "--positive", coco_path)) if request.positive else set(chosen)
    entries = _merged_entries(coco, coco_path, warnings, outside_allowed=request.images is not None)
    base = Path(request.images).resolve() if request.images else _images_base(root, coco_path, list(entries))
    images = []
    for name, (info, annotation_list) in entries.items():
        where = f"{coco_path}: image id {info['id']}"
        if name.startswith("../"):  # Label Studio's local file: named from here on by its path under --images
            path = _local_file(base, name, where)
            name = path.relative_to(base).as_posix()
        else:
            path = _picture_path(base, name, where)
        image = ImageEntry(name, path, False)
        image.coco_id, image.coco_size = info["id"], picture_size(info, coco_path)
        boxes = False
        for annotation in annotation_list:
            category = annotation["category_id"]
            image.fractured |= category in positive
            if category in label_of:
                segment = mask_segment(annotation, info, coco_path, label_of[category])
                if segment is None:
                    boxes = True
                else:
                    image.segments.append(segment)
        image.box_only = boxes and not image.segments
        images.append(image)
    if request.labels:
        _apply_labels(Path(request.labels), images, base, warnings)
    for image in images:
        _pseudonymise(image, key)
    _check_case_ids(images, coco_path)
    box_only = [image.shown for image in images if image.box_only]
    for name in box_only[:10]:
        warnings.append(f"{name} has boxes but no mask of the chosen categories: left out of nnU-Net's dataset "
                        "(kept for the classifier)")  # fmt: skip
    if len(box_only) > 10:
        warnings.append(f"and {len(box_only) - 10} more pictures with boxes only (the manifest names them)")
    labels = [categories[category_id] for category_id in chosen]
    described = f"COCO release: {_shown(coco_path, root)}, pictures under {_shown(base, root)}; labels " + ", ".join(
        f"{label}={index}" for index, label in enumerate(labels, start=1)
    )
    return Release(root, COCO_LAYOUT, described, labels, images, warnings)


def _shown(path: Path, root: Path) -> str:
    """A path as the plan job says it: relative to the release where it lies inside it."""
    if path == root:
        return "the release's folder"
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _coco_file(root: Path, request: IngestRequest) -> Path:
    if request.coco:
        path = Path(request.coco).resolve()
        return inside_release(path.parent, path)
    found = sorted(
        path
        for path in [*root.glob("*.json"), *root.glob("*/*.json")]
        if not path.name.startswith(".") and path.is_file()
    )
    if not found:
        raise InputError(
            f"{root} holds no COCO file (a .json in the folder or one level down); export the annotations as "
            "COCO (docs/own-data.md), or pass --coco FILE"
        )
    if len(found) > 1:
        names = ", ".join(str(path.relative_to(root)) for path in found[:5])
        raise InputError(f"{root} holds several .json files ({names}); pass --coco FILE to say which is the COCO file")
    return inside_release(root, found[0])


def _categories(coco: COCO, coco_path: Path) -> dict[int, str]:
    """category id -> name, in id order; names unique, none of them nnU-Net's 'background'."""
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    for category in sorted(coco.dataset["categories"], key=lambda category: category["id"]):
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{coco_path}: category id {category['id']} has no name; name it in the COCO file")
        name = name.strip()
        if name.casefold() in seen:
            raise InputError(
                f"{coco_path}: categories {seen[name.casefold()]} and {category['id']} are both named {name!r}; "
                "rename one of them (each category becomes an nnU-Net label by its name)"
            )
        if name.casefold() == RESERVED:
            raise InputError(
                f"{coco_path}: category id {category['id']} is named {name!r}, nnU-Net's name for label 0; "
                "rename it or leave it out with --categories"
            )
        seen[name.casefold()] = category["id"]
        names[category["id"]] = name
    for annotation in coco.dataset["annotations"]:
        if annotation.get("category_id") not in names:
            raise InputError(
                f"{coco_path}: annotation id {annotation['id']} names category id "
                f"{annotation.get('category_id')!r}, which the file's 'categories' list does not define; "
                "fix or remove the annotation"
            )
    return names


def _categories_with_masks(coco: COCO) -> set[int]:
    return {annotation["category_id"] for annotation in coco.dataset["annotations"] if annotation.get("segmentation")}


def _named(categories: dict[int, str], names: list[str], option: str, coco_path: Path) -> list[int]:
    """The category ids of `names`, in that order (exact, else case-insensitive); refused by name."""
    by_name = {name: category_id for category_id, name in categories.items()}
    folded = {name.casefold(): category_id for name, category_id in by_name.items()}
    ids = []
    for name in names:
        category_id = by_name.get(name, folded.get(name.casefold()))
        if category_id is None:
            raise InputError(
                f"{option} names {name!r}, which {coco_path.name} does not define (it has: "
                f"{', '.join(repr(n) for n in by_name) or 'none'})"
            )
        ids.append(category_id)
    return ids


def _chosen(
    categories: dict[int, str], masked: set[int], wanted: list[str] | None, coco_path: Path, warnings: list[str]
) -> list[int]:
    """The category ids that become labels 1..K: --categories in its order, else every one with a mask."""
    if wanted:
        chosen = _named(categories, wanted, "--categories", coco_path)
        without = [categories[category_id] for category_id in chosen if category_id not in masked]
        if without:
            raise InputError(
                f"--categories names {without[0]!r}, which has no mask annotation in {coco_path.name}; "
                "leave it out of --categories"
            )
        return chosen
    unused = [name for category_id, name in categories.items() if category_id not in masked]
    if unused:
        warnings.append(f"categories without any mask are not labels: {', '.join(unused)}")
    return [category_id for category_id in categories if category_id in masked]


def _merged_entries(
    coco: COCO, coco_path: Path, warnings: list[str], outside_allowed: bool = False
) -> dict[str, tuple[dict[str, Any], list]]:
    """file_name -> (its first image entry, the annotations of every entry naming it). `outside_allowed`
    (--images given): a name that starts by leaving the export (Label Studio's local files) is kept."""
    entries: dict[str, tuple[dict[str, Any], list]] = {}
    repeated = []
    for image_id, info in coco.imgs.items():
        name = _checked_name(info.get("file_name"), f"{coco_path}: image id {image_id}", outside_allowed)
        annotations = coco.imgToAnns.get(image_id, [])
        if name not in entries:
            entries[name] = (info, list(annotations))
            continue
        first = entries[name][0]
        if picture_size(first, coco_path) != picture_size(info, coco_path):
            raise InputError(
                f"{coco_path}: image ids {first['id']} and {image_id} both name {name} but give it different "
                "sizes; a file_name must name one picture: fix the COCO file"
            )
        entries[name][1].extend(annotations)
        repeated.append(name)
    if repeated:
        warnings.append(
            f"{len(repeated)} image entries name a picture listed before (several annotators; first: "
            f"{repeated[0]}): their masks are unioned"
        )
    return entries


def _checked_name(name: Any, where: str, outside_allowed: bool = False) -> str:
    """A file_name as a clean relative path; refused where it is empty or would leave the images folder, but
    for leading `..`s where `outside_allowed` (resolved by _local_file, under --images only)."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    inner = parts
    while outside_allowed and inner[:1] == ("..",):
        inner = inner[1:]
    if not inner or "\\" in name or name.startswith("/") or ".." in inner or ":" in inner[0]:
        hint = "" if outside_allowed else " (a Label Studio export of its local files: pass --images its document root)"
        raise InputError(
            f"{where} has file_name {name!r}, which leaves the release (or is empty); a file_name is a path "
            f"under the images folder: fix it{hint}"
        )
    return str(PurePosixPath(*parts))


def _local_file(base: Path, name: str, where: str) -> Path:
    """A Label Studio local file, named from its export folder: the longest tail of `name` under `base`."""
    parts = [part for part in PurePosixPath(name).parts if part != ".."]
    for start in range(len(parts)):
        path = base.joinpath(*parts[start:])
        if os.path.lexists(path):
            return inside_release(base, path)
    raise InputError(
        f"{where} names {name}, a file outside the export; no tail of that path exists under {base}: pass "
        "--images the folder Label Studio serves its local files from (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
    )


def _images_base(root: Path, coco_path: Path, names: list[str]) -> Path:
    """The folder that the file_names are relative to: the candidate that finds the most of them."""
    images = root / "images"
    candidates = [coco_path.parent, root, coco_path.parent.parent, images]
    if images.is_dir():
        candidates += sorted(path for path in images.iterdir() if path.is_dir())
    candidates = [path for index, path in enumerate(candidates) if path.is_dir() and path not in candidates[:index]]
    candidates = [path for path in candidates if path.is_relative_to(root)]
    found = [sum(1 for name in names if os.path.lexists(base / name)) for base in candidates]
    return candidates[found.index(max(found))]


def _picture_path(base: Path, name: str, where: str) -> Path:
    path = base / name
    if not os.path.lexists(path):
        raise InputError(
            f"{where} names {name}, but no such file exists under {base}; export the "
            "pictures with the annotations, or pass --images the folder the file_names are relative to"
        )
    return inside_release(base, path)


def _apply_labels(path: Path, images: list[ImageEntry], base: Path, warnings: list[str]) -> None:
    """--labels: file_name, label (1/0, true/false, yes/no, positive/negative) for every picture it lists; a
    picture the COCO file does not list is added as one without annotations."""
    by_name = {image.file_name: image for image in images}
    rows = read_csv_columns(path, ("file_name", "label"), "file_name,label (1 or 0 per picture)")
    for line, (listed, text) in rows:
        name = _checked_name(listed, f"{path}, line {line},")
        value = text.lower()
        if value not in TRUE_LABELS | FALSE_LABELS:
            raise InputError(f"{path}, line {line}: label {text!r} of {name} is not 1 or 0 (or true/false, yes/no)")
        image = by_name.get(name)
        if image is None:
            image = ImageEntry(name, _picture_path(base, name, f"{path}, line {line},"), False)
            images.append(image)
            by_name[name] = image
        image.fractured = value in TRUE_LABELS
    unlisted = len(by_name) - len(rows)
    if unlisted:
        warnings.append(f"{unlisted} pictures are not in {path.name}: their labels come from their annotations")


def _pseudonymise(image: ImageEntry, key: bytes | None) -> None:
    """A DICOM picture's pseudonym, and its patient's as its group (workers/imaging/pseudonyms.py)."""
    identity = read_identity(image.path)
    if identity is None:
        return
    if key is None:
        raise InputError(f"{image.path} is DICOM, and this ingest has no pseudonym key to hide who it shows")
    image.pseudonym = picture_pseudonym(key, identity.sop_instance_uid or image.file_name)
    image.uids = (identity.sop_instance_uid, identity.study_uid, identity.series_uid)
    if identity.patient_id:
        image.group = patient_pseudonym(key, identity.patient_id)


def _check_case_ids(images: list[ImageEntry], coco_path: Path) -> None:
    seen: dict[str, str] = {}
    for image in images:
        if image.case_id in seen:
            raise InputError(
                f"{coco_path}: {seen[image.case_id]} and {image.shown} would be one nnU-Net case "
                f"({image.case_id}); rename one of the pictures (or remove a DICOM file listed twice)"
            )
        seen[image.case_id] = image.shown
