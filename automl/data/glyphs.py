"""A fine-grained retrieval dataset rendered from the DejaVu fonts: each class is one character.

Images vary face (sans/serif/mono, condensed, bold, oblique: up to 20 faces), size, rotation, offset,
colour and background (flat, gradient, noise), so a class is "this character in any style". The
character pool mixes Latin, accented Latin, Greek and Cyrillic letters and digits, so near-identical
classes exist (``e é è ê ë ё``, ``O 0 Q Ø θ``, ``l 1 I ǀ``, ``B β в``...). Exact homoglyphs that the
fonts draw identically (Latin ``A`` and Cyrillic ``А``) are removed: a class that no pixel can tell
apart would only cap the reachable Precision@1.

Fonts come from ``/usr/share/fonts/truetype/dejavu`` (Debian ``fonts-dejavu-core``) or, as a fallback,
the copy matplotlib ships in ``mpl-data/fonts/ttf``.
"""

from __future__ import annotations

import colorsys
import functools
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from automl.errors import AutomlError

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts/dejavu")

# Ordered so that the first classes already contain many look-alike groups.
CHARACTER_POOL = (
    "eéèêëēėęě" "ёеєэ"
    "oòóôõöøōő" "0OQØΘθ" "оОσ"
    "aàáâãäåāą" "αа"
    "uùúûüūůű" "μυ"
    "cçćčĉ" "сС"
    "nñńňη" "пπи"
    "l1Iiíìîïǀĺļľ" "іїΙ"
    "bβвьъ6" "BВЬ8"
    "pρрþ" "PРΡ"
    "kκкќ" "KКΚ"
    "xχх×" "XХΧ"
    "yýÿγу" "YΥУ"
    "rгѓ" "tτт+"
    "hħћ" "HНΗ"
    "EЕΕÈÉΣ" "ЗЭ3"
    "MМΜ" "NИЙΝ"
    "zžźż2" "ZŽΖ"
    "sśšş5" "SŠ$"
    "dđ" "DÐ"
    "gğ9q" "fƒ" "jĵ"
    "vνѵ" "wωш" "TТΤ" "AΑÄÅΛДЛ" "CÇ" "GĞ" "UÜ" "RЯ" "FГ" "JJ" "L£" "VѴ" "WШЩ" "ЖФЮЦЧ" "47" "ξζψφλδ"
)

EXCLUDED_FACES = ("MathTeXGyre", "ExtraLight", "Display")  # other design / hairline strokes / few glyphs


def font_files() -> list[Path]:
    """DejaVu font files found on this machine (system first, matplotlib's copy as fallback)."""
    found: dict[str, Path] = {}
    dirs = [Path(d) for d in FONT_DIRS]
    try:
        import matplotlib

        dirs.append(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:
        pass
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.glob("DejaVu*.ttf")):
                if not any(x in p.name for x in EXCLUDED_FACES):
                    found.setdefault(p.name, p)
    if not found:
        raise AutomlError("no DejaVu fonts found: install them (apt-get install -y fonts-dejavu-core) or matplotlib")
    return [found[k] for k in sorted(found)]


def _covers(path: Path) -> set[int]:
    try:
        from matplotlib import ft2font

        return set(ft2font.FT2Font(str(path)).get_charmap())
    except Exception:  # without matplotlib, trust the font (DejaVu covers the whole pool)
        return {ord(c) for c in CHARACTER_POOL}


@functools.lru_cache(maxsize=1)
def _fonts_and_coverage() -> tuple[tuple[Path, ...], tuple[frozenset, ...]]:
    files = font_files()
    return tuple(files), tuple(frozenset(_covers(p)) for p in files)


def _reference_bitmap(ch: str, font_path: Path) -> bytes:
    font = ImageFont.truetype(str(font_path), 48)
    img = Image.new("L", (72, 72), 0)
    ImageDraw.Draw(img).text((36, 36), ch, fill=255, font=font, anchor="mm")
    return img.tobytes()


@functools.lru_cache(maxsize=4)
def character_classes(limit: int | None = None) -> tuple[str, ...]:
    """The usable classes: characters every face covers, with draw-identical homoglyphs removed."""
    files, coverage = _fonts_and_coverage()
    common = frozenset.intersection(*coverage)
    reference_font = next((p for p in files if p.name == "DejaVuSans.ttf"), files[0])
    seen_chars, seen_bitmaps, out = set(), set(), []
    for ch in CHARACTER_POOL:
        if ch in seen_chars or ch.isspace() or ord(ch) not in common:
            continue
        seen_chars.add(ch)
        bitmap = _reference_bitmap(ch, reference_font)
        if bitmap in seen_bitmaps:
            continue
        seen_bitmaps.add(bitmap)
        out.append(ch)
        if limit and len(out) >= limit:
            break
    return tuple(out)


def _colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    h = rng.random()
    s = rng.uniform(0.0, 0.8)
    v = rng.uniform(0.75, 1.0) if light else rng.uniform(0.0, 0.35)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, size: int, base: tuple[int, int, int]) -> Image.Image:
    kind = rng.integers(3)
    arr = np.empty((size, size, 3), np.float32)
    arr[:] = base
    if kind == 1:  # linear gradient towards a shifted colour
        other = np.clip(np.array(base) + rng.normal(0, 40, 3), 0, 255)
        t = np.linspace(0, 1, size)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, size)[:, None, None]
        arr = arr * (1 - t) + other * t
    elif kind == 2:  # sensor-like noise
        arr = arr + rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render_glyph(ch: str, size: int, rng: np.random.Generator, fonts: tuple[Path, ...] | None = None) -> Image.Image:
    """One RGB ``size`` x ``size`` image of ``ch`` in a random style."""
    fonts = fonts or _fonts_and_coverage()[0]
    scale = 3  # draw large, then downsample: anti-aliased strokes at any size
    big = size * scale
    dark_on_light = rng.random() < 0.5
    fg = _colour(rng, light=not dark_on_light)
    bg = _colour(rng, light=dark_on_light)
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(big * rng.uniform(0.5, 0.8)))
    layer = Image.new("L", (big, big), 0)
    cx = big / 2 + rng.uniform(-0.08, 0.08) * big
    cy = big / 2 + rng.uniform(-0.08, 0.08) * big
    ImageDraw.Draw(layer).text((cx, cy), ch, fill=255, font=font, anchor="mm")
    layer = layer.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, center=(cx, cy))
    image = _background(rng, big, bg)
    image.paste(Image.new("RGB", (big, big), fg), (0, 0), layer)
    image = image.resize((size, size), Image.LANCZOS)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return image


def class_folder_name(ch: str) -> str:
    """A filesystem-safe, readable class folder name: ``U+00E9_é`` (case-insensitive filesystems
    would merge ``e`` and ``E`` otherwise)."""
    printable = ch if ch.isalnum() else ""
    return f"U+{ord(ch):04X}" + (f"_{printable}" if printable else "")


def write_split(root: Path, classes: list[tuple[str, Callable[[np.random.Generator], Image.Image]]],
                count: int, rng: np.random.Generator) -> int:
    """Write ``count`` images per class under ``root/<class>/``; return the number written."""
    written = 0
    for name, render in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            render(rng).save(folder / f"{i:05d}.png", optimize=False, compress_level=1)
            written += 1
    return written


MIN_QUERIES = 256  # per query split: one query moves Precision@1 by <= 0.004, well below seed noise


def split_sizes(per_class: int, known: int, unknown: int, min_queries: int = MIN_QUERIES) -> dict[str, int]:
    """Images per class in each split of the TAO retail layout: ``per_class`` training images, a
    quarter of that as references, and enough queries (``known/val``, ``unknown/test``) that each
    query split holds at least ``min_queries`` images, so the metric is not quantised coarser than
    the noise it is compared with."""
    ref = max(2, per_class // 4)
    return {"known_classes/train": per_class, "known_classes/reference": ref,
            "known_classes/val": max(ref, -(-min_queries // max(1, known))),
            "unknown_classes/reference": ref, "unknown_classes/test": max(ref, -(-min_queries // max(1, unknown)))}


def make_glyph_dataset(out_dir: str | Path, *, classes: int = 48, per_class: int = 32, size: int = 32,
                       seed: int = 0, unknown_fraction: float = 1 / 3) -> dict[str, Path]:
    """Write the TAO retail layout (``known_classes/{train,reference,val}``,
    ``unknown_classes/{reference,test}``) under ``out_dir``; return split name -> folder.

    ``classes`` is the total; ``unknown_fraction`` of them (at least 2) are held out for evaluation on
    classes never trained on. The known/unknown split is random, so look-alike groups straddle it.
    """
    pool = character_classes()
    if classes < 4 or classes > len(pool):
        raise AutomlError(f"--classes must be between 4 and {len(pool)} (characters available), got {classes}")
    if per_class < 2:
        raise AutomlError(f"--per-class must be >= 2, got {per_class}")
    if size < 16 or size > 512:
        raise AutomlError(f"--size must be between 16 and 512 pixels, got {size}")
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=classes, replace=False))]
    rng.shuffle(chosen)
    n_unknown = max(2, int(round(classes * unknown_fraction)))
    unknown, known = chosen[:n_unknown], chosen[n_unknown:]
    fonts = _fonts_and_coverage()[0]

    def renderers(chars):
        return [(class_folder_name(ch), functools.partial(lambda r, c: render_glyph(c, size, r, fonts), c=ch))
                for ch in chars]

    out = Path(out_dir)
    paths = {}
    for split, count in split_sizes(per_class, len(known), len(unknown)).items():
        chars = known if split.startswith("known") else unknown
        write_split(out / split, renderers(chars), count, np.random.default_rng([seed, zlib.crc32(split.encode())]))
        paths[split] = out / split
    return paths

