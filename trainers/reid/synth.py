"""Procedurally drawn pedestrians for ``automl data make --task reid``.

Each identity is a fixed set of clothing attributes (shirt and trouser colours, shirt pattern, hair,
bag, height, build); each camera has its own look (colour cast, brightness, scale, viewpoint,
background). An identity is filmed by several cameras, so matching has to see through the camera's
look, which is what re-identification learns. Output follows Market-1501 exactly::

    <out>/bounding_box_train/0001_c1s1_000017_01.jpg   train identities
    <out>/query/...                                    one image per (test identity, camera)
    <out>/bounding_box_test/...                        gallery: other images of the test identities,
                                                       distractors (0000_*) and junk (-1_*)

Train identities are disjoint from query/gallery identities, as in the real benchmark.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Drawing canvas; images are resized to the requested size afterwards.
_H, _W = 128, 64


@dataclass
class Person:
    shirt: tuple[int, int, int]
    shirt2: tuple[int, int, int]
    pattern: str  # plain | hstripes | vstripes | checks
    trousers: tuple[int, int, int]
    shorts: bool
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    bag: str  # none | backpack | left | right
    bag_colour: tuple[int, int, int]
    shoes: tuple[int, int, int]
    height: float  # fraction of the canvas
    build: float  # width factor


@dataclass
class Camera:
    gains: np.ndarray  # per-channel colour cast
    brightness: float
    scale: float
    view: str  # front | back | side
    background: tuple[int, int, int]
    floor: tuple[int, int, int]
    texture: str  # plain | gradient | tiles
    blur: float


def _colour(rng: np.random.Generator, sat: tuple[float, float] = (0.35, 1.0), val: tuple[float, float] = (0.25, 1.0)):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


def random_person(rng: np.random.Generator) -> Person:
    skin_v = rng.uniform(0.35, 0.95)
    return Person(
        shirt=_colour(rng), shirt2=_colour(rng),
        pattern=str(rng.choice(["plain", "hstripes", "vstripes", "checks"])),
        trousers=_colour(rng, sat=(0.1, 0.9), val=(0.1, 0.85)), shorts=bool(rng.random() < 0.3),
        skin=tuple(int(c * 255) for c in colorsys.hsv_to_rgb(0.07, 0.45, skin_v)),
        hair=_colour(rng, sat=(0.2, 0.8), val=(0.05, 0.6)), long_hair=bool(rng.random() < 0.4),
        bag=str(rng.choice(["none", "backpack", "left", "right"])), bag_colour=_colour(rng),
        shoes=_colour(rng, val=(0.05, 0.7)),
        height=float(rng.uniform(0.78, 0.97)), build=float(rng.uniform(0.8, 1.15)),
    )


def random_camera(rng: np.random.Generator) -> Camera:
    return Camera(
        gains=rng.uniform(0.7, 1.3, size=3), brightness=float(rng.uniform(0.75, 1.2)),
        scale=float(rng.uniform(0.75, 1.0)), view=str(rng.choice(["front", "back", "side"])),
        background=_colour(rng, sat=(0.0, 0.4), val=(0.3, 0.9)), floor=_colour(rng, sat=(0.0, 0.3), val=(0.2, 0.7)),
        texture=str(rng.choice(["plain", "gradient", "tiles"])), blur=float(rng.uniform(0.0, 1.0)),
    )


def _background(draw: ImageDraw.ImageDraw, cam: Camera, rng: np.random.Generator) -> None:
    horizon = int(_H * rng.uniform(0.6, 0.75))
    if cam.texture == "gradient":
        for y in range(horizon):
            t = y / horizon
            draw.line([(0, y), (_W, y)], fill=tuple(int(c * (0.6 + 0.4 * t)) for c in cam.background))
    else:
        draw.rectangle([0, 0, _W, horizon], fill=cam.background)
        if cam.texture == "tiles":
            for x in range(0, _W, 12):
                draw.line([(x, 0), (x, horizon)], fill=tuple(int(c * 0.8) for c in cam.background))
    draw.rectangle([0, horizon, _W, _H], fill=cam.floor)


def _draw_person(draw: ImageDraw.ImageDraw, p: Person, cam: Camera, rng: np.random.Generator) -> None:
    h = _H * p.height * cam.scale * rng.uniform(0.95, 1.05)
    w = 26 * p.build * cam.scale * (0.7 if cam.view == "side" else 1.0)
    cx = _W / 2 + rng.uniform(-5, 5)
    top = _H - h - rng.uniform(1, 6)
    head_h, torso_h = 0.14 * h, 0.36 * h
    leg_top = top + head_h + torso_h
    # head and hair
    hw = 0.45 * w
    draw.ellipse([cx - hw / 2, top, cx + hw / 2, top + head_h], fill=p.skin if cam.view != "back" else p.hair)
    draw.chord([cx - hw / 2, top - 2, cx + hw / 2, top + head_h * 0.6], 180, 360, fill=p.hair)
    if p.long_hair:
        draw.rectangle([cx - hw / 2, top + head_h * 0.3, cx + hw / 2, top + head_h * 1.5], fill=p.hair)
    # torso with its pattern
    t0, t1 = top + head_h, leg_top
    box = [cx - w / 2, t0, cx + w / 2, t1]
    draw.rectangle(box, fill=p.shirt)
    if p.pattern == "hstripes":
        for y in np.arange(t0, t1, max(3.0, torso_h / 6)):
            draw.rectangle([box[0], y, box[2], y + torso_h / 14], fill=p.shirt2)
    elif p.pattern == "vstripes":
        for x in np.arange(box[0], box[2], max(3.0, w / 5)):
            draw.rectangle([x, t0, x + w / 12, t1], fill=p.shirt2)
    elif p.pattern == "checks":
        step = max(4.0, w / 4)
        for i, y in enumerate(np.arange(t0, t1, step)):
            for j, x in enumerate(np.arange(box[0], box[2], step)):
                if (i + j) % 2:
                    draw.rectangle([x, y, min(x + step, box[2]), min(y + step, t1)], fill=p.shirt2)
    # arms
    arm_w = 0.16 * w
    for side in (-1, 1):
        x0 = cx + side * (w / 2 + arm_w / 2)
        draw.rectangle([x0 - arm_w / 2, t0 + 2, x0 + arm_w / 2, t1 - 2], fill=p.shirt)
        draw.rectangle([x0 - arm_w / 2, t1 - 2, x0 + arm_w / 2, t1 + 0.05 * h], fill=p.skin)
    # legs
    leg_h = _H - (_H - top - h) - leg_top
    for side in (-1, 1):
        lx = cx + side * w / 4
        lw = 0.38 * w
        cut = leg_top + (0.4 * leg_h if p.shorts else leg_h * 0.92)
        draw.rectangle([lx - lw / 2, leg_top, lx + lw / 2, cut], fill=p.trousers)
        if p.shorts:
            draw.rectangle([lx - lw / 2 + 1, cut, lx + lw / 2 - 1, leg_top + 0.92 * leg_h], fill=p.skin)
        draw.rectangle([lx - lw / 2, leg_top + 0.92 * leg_h, lx + lw / 2 + 2, leg_top + leg_h], fill=p.shoes)
    # bag: a backpack shows from behind (a strap from the front); side bags swap with the viewpoint
    if p.bag == "backpack":
        if cam.view == "back":
            draw.rounded_rectangle([cx - w / 3, t0 + 3, cx + w / 3, t0 + torso_h * 0.8], 3, fill=p.bag_colour)
        else:
            draw.line([(cx - w / 3, t0), (cx - w / 3, t1 - 4)], fill=p.bag_colour, width=3)
    elif p.bag in ("left", "right"):
        side = -1 if (p.bag == "left") != (cam.view == "back") else 1
        bx = cx + side * (w / 2 + arm_w + 3)
        draw.rectangle([bx - 5, t1 - 6, bx + 5, t1 + 10], fill=p.bag_colour)


def render(person: Person, cam: Camera, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """One image of ``person`` seen by ``cam``, ``size`` = (height, width)."""
    img = Image.new("RGB", (_W, _H))
    draw = ImageDraw.Draw(img)
    _background(draw, cam, rng)
    _draw_person(draw, person, cam, rng)
    if cam.blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * cam.gains[None, None, :] * cam.brightness * rng.uniform(0.9, 1.1)
    arr += rng.normal(0, 6, size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.resize((size[1], size[0]), Image.BILINEAR)


def _junk(rng: np.random.Generator, cam: Camera, person: Person, size: tuple[int, int]) -> Image.Image:
    """A bad detection: a fragment of a person or a patch of background, like Market-1501's -1 files."""
    full = render(person, cam, rng, (_H, _W))
    h = int(_H * rng.uniform(0.25, 0.5))
    y = int(rng.uniform(0, _H - h))
    return full.crop((0, y, _W, y + h)).resize((size[1], size[0]), Image.BILINEAR)


def generate(
    out_dir: Path,
    *,
    seed: int = 0,
    classes: int = 16,
    test_classes: int | None = None,
    per_class: int = 8,
    size: int = 64,
    cameras: int = 4,
    distractors: int | None = None,
    junk: int | None = None,
) -> dict[str, Path]:
    """Write the three Market-1501 folders; ``size`` is the image height (width = height / 2)."""
    rng = np.random.default_rng(seed)
    hw = (int(size), max(8, int(size) // 2))
    test_classes = test_classes if test_classes is not None else max(4, classes // 2)
    cams = [random_camera(rng) for _ in range(cameras)]
    out_dir = Path(out_dir)
    folders = {name: out_dir / name for name in ("bounding_box_train", "query", "bounding_box_test")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    frame = [0]

    def save(folder: str, pid: int, cam_index: int, img: Image.Image) -> None:
        frame[0] += int(rng.integers(1, 40))
        prefix = "-1" if pid == -1 else f"{pid:04d}"
        name = f"{prefix}_c{cam_index + 1}s1_{frame[0]:06d}_{int(rng.integers(1, 9)):02d}.jpg"
        img.save(folders[folder] / name, quality=92)

    def views(n: int) -> list[int]:
        """Cameras an identity walks past: at least two, so cross-camera matching is possible."""
        k = int(rng.integers(2, min(cameras, 4) + 1)) if cameras > 2 else cameras
        chosen = rng.choice(cameras, size=k, replace=False)
        return [int(chosen[i % k]) for i in range(n)]

    for pid in range(1, classes + 1):
        person = random_person(rng)
        for cam_index in views(per_class):
            save("bounding_box_train", pid, cam_index, render(person, cams[cam_index], rng, hw))
    test_people = []
    for pid in range(classes + 1, classes + test_classes + 1):
        person = random_person(rng)
        test_people.append(person)
        seen = views(per_class)
        queried = set()
        for cam_index in seen:
            img = render(person, cams[cam_index], rng, hw)
            if cam_index not in queried:  # one query per (identity, camera), the rest is gallery
                queried.add(cam_index)
                save("query", pid, cam_index, img)
            else:
                save("bounding_box_test", pid, cam_index, img)
        # every query needs a match from another camera: make sure each queried camera has a partner
        for cam_index in sorted(queried):
            others = [c for c in sorted(queried) if c != cam_index]
            if others:
                save("bounding_box_test", pid, others[0], render(person, cams[others[0]], rng, hw))
    for _ in range(distractors if distractors is not None else max(2, test_classes)):
        cam_index = int(rng.integers(cameras))
        save("bounding_box_test", 0, cam_index, render(random_person(rng), cams[cam_index], rng, hw))
    for _ in range(junk if junk is not None else max(2, test_classes // 2)):
        cam_index = int(rng.integers(cameras))
        person = test_people[int(rng.integers(len(test_people)))]
        save("bounding_box_test", -1, cam_index, _junk(rng, cams[cam_index], person, hw))
    return folders
