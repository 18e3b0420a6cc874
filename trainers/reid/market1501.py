"""Market-1501 (and DukeMTMC-reID) file names and folders.

Market-1501 names an image ``PPPP_cCsS_FFFFFF_NN.jpg``: person id, camera, sequence, frame, box index.
Two values of the person id are special and public parsers often get them wrong:

* ``-1`` (written ``-1_c1s1_...``) marks *junk* boxes (bad detections, fragments): evaluation ignores
  them entirely, as if they were not in the gallery;
* ``0000`` marks *distractors*: real gallery entries that match no query, so they stay in the gallery
  and can only push true matches down the ranking.

Camera ids are parsed as integers of any width (``c12`` is camera 12), never as one digit.
DukeMTMC-reID names (``0001_c2_f0046182.jpg``) are read too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from automl.errors import AutomlError

log = logging.getLogger("automl.trainers.reid")

JUNK_PID = -1
DISTRACTOR_PID = 0
UNKNOWN = -2  # inference inputs whose names are not Market-1501 names
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_MARKET = re.compile(r"^(?P<pid>-1|\d+)_c(?P<cam>\d+)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<box>\d+)$")
_DUKE = re.compile(r"^(?P<pid>-1|\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)$")


@dataclass(frozen=True)
class ReidImage:
    path: Path
    pid: int
    camid: int

    @property
    def is_junk(self) -> bool:
        return self.pid == JUNK_PID

    @property
    def is_distractor(self) -> bool:
        return self.pid == DISTRACTOR_PID


def parse_name(name: str) -> tuple[int, int]:
    """Return ``(pid, camid)`` for a Market-1501 or DukeMTMC-reID file name.

    Raises :class:`AutomlError` for a name in neither format.
    """
    stem = Path(name).stem
    match = _MARKET.match(stem) or _DUKE.match(stem)
    if match is None:
        raise AutomlError(
            f"{name}: not a Market-1501 image name; expected PPPP_cCsS_FFFFFF_NN.jpg "
            "(e.g. 0002_c1s1_000451_03.jpg; -1 = junk, 0000 = distractor)"
        )
    return int(match["pid"]), int(match["cam"])


def resolve_folder(folder: str | Path, key: str) -> Path:
    """A Market-1501 folder for a spec value: a folder, or a .tar/.tar.gz extracted once (safely, by
    automl.data), descending into a lone top-level folder such as ``sample_train/``."""
    from automl.data.archives import resolve_dataset

    root = resolve_dataset(folder, key)
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        root = entries[0]
    return root


def scan_folder(folder: str | Path, key: str, strict: bool = True) -> list[ReidImage]:
    """All images of a Market-1501 folder, sorted by name. ``key`` names the spec key in errors.

    ``strict=False`` (inference on arbitrary crops) keeps images whose names do not parse, with
    person id and camera ``-2`` meaning unknown.
    """
    if folder in ("", None):
        raise AutomlError(f"{key} is not set; point it at a Market-1501 image folder")
    root = resolve_folder(folder, key)
    images = []
    for path in sorted(root.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue  # Thumbs.db, .DS_Store and readme files ship inside the public archives
        try:
            pid, camid = parse_name(path.name)
        except AutomlError as exc:
            if strict:
                raise AutomlError(f"{key}: {exc}") from None
            pid, camid = UNKNOWN, UNKNOWN
        images.append(ReidImage(path, pid, camid))
    if not images:
        raise AutomlError(f"{key}: no Market-1501 images (*.jpg, *.png) in '{root}'")
    return images


@dataclass
class TrainSet:
    images: list[ReidImage]
    labels: list[int]  # contiguous class index per image
    pids: list[int]  # class index -> original person id

    @property
    def num_classes(self) -> int:
        return len(self.pids)


def load_train_set(folder: str | Path, num_classes: int | None, key: str = "dataset.train_dataset_dir") -> TrainSet:
    """The training identities, relabelled 0..N-1. Junk and distractor images carry no identity and
    are left out. The classifier gets N outputs whatever ``num_classes`` (``dataset.num_classes``)
    says: TAO specs keep Market-1501's 751, so a different value is corrected and named, not refused."""
    images = [im for im in scan_folder(folder, key) if im.pid > 0]
    pids = sorted({im.pid for im in images})
    if num_classes is not None and int(num_classes) != len(pids):
        log.warning("reid: dataset.num_classes is %s but %s ('%s') holds %d identities; using %d",
                    num_classes, key, folder, len(pids), len(pids))
    index = {pid: i for i, pid in enumerate(pids)}
    return TrainSet(images, [index[im.pid] for im in images], pids)
