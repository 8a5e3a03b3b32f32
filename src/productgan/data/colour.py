"""Colours as a person names them and as an eye compares them: names and hex codes read to sRGB,
sRGB to CIELAB (D65), and the CIEDE2000 difference between two colours.

CIEDE2000 (Sharma, Wu and Dalal 2005) is the standard measure of how different two colours look: a
difference near 1 is just noticeable, below 10 a small difference of shade, above 20 another colour.
The steering benchmark (docs/explore.md) scores colourways with it.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from productgan.errors import UsageError

# Common colour names with their CSS values (CSS Color Module Level 4), plus a few of the
# clothing trade that CSS lacks (burgundy, charcoal, cream, camel, mustard, rust, denim, stone).
COLOUR_NAMES: dict[str, str] = {
    "black": "#000000",
    "white": "#ffffff",
    "grey": "#808080",
    "gray": "#808080",
    "silver": "#c0c0c0",
    "charcoal": "#36454f",
    "red": "#ff0000",
    "crimson": "#dc143c",
    "maroon": "#800000",
    "burgundy": "#800020",
    "rust": "#b7410e",
    "orange": "#ffa500",
    "coral": "#ff7f50",
    "salmon": "#fa8072",
    "gold": "#ffd700",
    "mustard": "#e1ad01",
    "yellow": "#ffff00",
    "olive": "#808000",
    "khaki": "#f0e68c",
    "lime": "#00ff00",
    "green": "#008000",
    "forest": "#228b22",
    "teal": "#008080",
    "turquoise": "#40e0d0",
    "cyan": "#00ffff",
    "aqua": "#00ffff",
    "sky": "#87ceeb",
    "blue": "#0000ff",
    "denim": "#1560bd",
    "navy": "#000080",
    "indigo": "#4b0082",
    "purple": "#800080",
    "violet": "#ee82ee",
    "lavender": "#e6e6fa",
    "magenta": "#ff00ff",
    "fuchsia": "#ff00ff",
    "pink": "#ffc0cb",
    "brown": "#a52a2a",
    "chocolate": "#d2691e",
    "camel": "#c19a6b",
    "tan": "#d2b48c",
    "beige": "#f5f5dc",
    "cream": "#fffdd0",
    "ivory": "#fffff0",
    "stone": "#928e85",
}

_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")

MAX_COLOURS = 32  # colours in one request: a strip of 32 is already wider than a screen


def parse_colour(text: str) -> tuple[int, int, int]:
    """A colour name (``navy``, any case), ``#RRGGBB`` or ``#RGB`` -> its sRGB values, 0..255."""
    value = str(text).strip()
    named = COLOUR_NAMES.get(value.lower())
    if named is not None:
        value = named
    match = _HEX.fullmatch(value) if value.startswith("#") or named else None
    if match is None:
        shown = value if len(value) <= 30 else value[:30] + "..."
        raise UsageError(
            f"{shown!r} is not a colour; write #RRGGBB (#1f3a93) or a colour name such as navy, olive or "
            f"burgundy (the list is in docs/explore.md)."
        )
    digits = match[1]
    if len(digits) == 3:
        digits = "".join(2 * d for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def parse_colours(text: str | list[str]) -> list[tuple[int, int, int]]:
    """A comma-separated list (or a list) of colours -> their sRGB values, in order."""
    parts = text if isinstance(text, list | tuple) else str(text).split(",")
    parts = [str(part).strip() for part in parts if str(part).strip()]
    if not parts:
        raise UsageError("No colour was given; write one or more, comma-separated: navy,#c0392b,olive.")
    if len(parts) > MAX_COLOURS:
        raise UsageError(f"{len(parts)} colours were given; at most {MAX_COLOURS} are made at a time.")
    return [parse_colour(part) for part in parts]


def hex_code(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """(R, G, B) 0..255 -> ``#rrggbb``."""
    return "#" + "".join(f"{int(round(float(c))):02x}" for c in np.clip(np.asarray(rgb, dtype=float), 0, 255))


# sRGB's linear RGB to CIE XYZ and back (IEC 61966-2-1), the D65 white, and CIELAB's constants.
SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
XYZ_TO_SRGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)
D65_WHITE = (0.95047, 1.0, 1.08883)
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values 0..255 (any shape ending in 3) -> CIELAB L*, a*, b* (D65 white)."""
    return srgb_to_lab_tensor(torch.as_tensor(np.asarray(rgb, dtype=np.float64))).numpy()


def srgb_to_lab_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """``srgb_to_lab`` on a tensor (on its device, in its dtype), differentiable: what colourways
    steer by (explore/colourways.py)."""
    c = rgb / 255.0
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    white = torch.tensor(D65_WHITE, dtype=rgb.dtype, device=rgb.device)
    xyz = linear @ torch.tensor(SRGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device).T / white
    # The cube root of the clamped value: the branch not taken stays finite, and so do its gradients.
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_EPSILON) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (shape ending in 3; or L* alone, shape ending in 1) -> sRGB 0..255, clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1] == 1:
        lab = np.concatenate([lab, np.zeros(lab.shape[:-1] + (2,))], axis=-1)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * np.array(D65_WHITE)
    linear = np.clip(xyz @ np.array(XYZ_TO_SRGB).T, 0, 1)
    return 255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def grey_to_lab(grey: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 (any shape) -> CIELAB (a* = b* = 0)."""
    grey = np.asarray(grey, dtype=np.float64)
    return srgb_to_lab(np.stack([grey, grey, grey], axis=-1))


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """The CIEDE2000 colour difference between CIELAB colours (shapes ending in 3, broadcast)."""
    lab1, lab2 = np.broadcast_arrays(np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64))
    l1, a1, b1 = np.moveaxis(lab1, -1, 0)
    l2, a2, b2 = np.moveaxis(lab2, -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_mean = np.where(c1p * c2p == 0, h_sum, h_mean)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    d_theta = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    terms = (dl / s_l, dc / s_c, dhh / s_h)
    return np.sqrt(terms[0] ** 2 + terms[1] ** 2 + terms[2] ** 2 + r_t * terms[1] * terms[2])
