"""Image sizing and the image-token formula behind `usage.input_token_details.image_tokens`.

OpenAI does not document how gpt-realtime counts image input. This server uses the rule OpenAI
publishes for GPT-4o image input (vision guide, "Calculating costs"), so that the number is
transparent and can be checked by hand:

* ``detail="low"``: a flat **85 tokens**, whatever the size. The image is sent at most 512×512.
* ``detail="high"`` (and ``"auto"``, which the Realtime API treats as high):

  1. scale the image to fit within a 2048 × 2048 square (aspect ratio kept, never enlarged);
  2. then scale it so that its **shortest side is 768 px** (only if it is longer);
  3. count the 512 px tiles that cover the result: ``ceil(w / 512) × ceil(h / 512)``;
  4. tokens = **85 + 170 × tiles**.

Worked examples (high): 1920×1080 → 1365×768 → 3×2 = 6 tiles → 1105 tokens;
1024×1024 → 768×768 → 4 tiles → 765 tokens; 640×360 → unchanged → 2×1 = 2 tiles → 425 tokens;
2048×4096 → 1024×2048 → 768×1536 → 2×3 = 6 tiles → 1105 tokens.

``fit_size`` is the same scaling, used by the video sampler to size the JPEG it sends, so the
image the model receives and the tokens reported describe the same pixels.
"""

from __future__ import annotations

import math

BASE_TOKENS = 85
TILE_TOKENS = 170
TILE_PX = 512
LOW_MAX_PX = 512
HIGH_MAX_LONG_PX = 2048
HIGH_MAX_SHORT_PX = 768
DETAILS = ("auto", "low", "high")


def _check(width: int, height: int, detail: str) -> None:
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {DETAILS}, not {detail!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, not {width}x{height}")


def _shrink(width: int, height: int, side: int, target: int) -> tuple[int, int]:
    """Scale so that ``side`` (the current long or short side) becomes exactly ``target``.

    Integer arithmetic: the other side is floored (as in the published 2048×4096 → 768×1536
    example), never below 1 px, so there is no float round-off (1080 → 767.99…).
    """
    if width == side:
        return target, max(1, height * target // side)
    return max(1, width * target // side), target


def fit_size(width: int, height: int, detail: str = "auto") -> tuple[int, int]:
    """The size an image of ``width × height`` is sent at for ``detail`` (never enlarged).

    low → fit within 512×512; high/auto → fit within 2048×2048, then shortest side ≤ 768.
    Idempotent: ``fit_size(*fit_size(w, h, d), d) == fit_size(w, h, d)``.
    """
    _check(width, height, detail)
    limit = LOW_MAX_PX if detail == "low" else HIGH_MAX_LONG_PX
    long_side = max(width, height)
    if long_side > limit:
        width, height = _shrink(width, height, long_side, limit)
    if detail != "low":
        short_side = min(width, height)
        if short_side > HIGH_MAX_SHORT_PX:
            width, height = _shrink(width, height, short_side, HIGH_MAX_SHORT_PX)
    return width, height


def image_tiles(width: int, height: int, detail: str = "auto") -> int:
    """Number of 512 px tiles counted for the image (0 for low detail)."""
    if detail == "low":
        _check(width, height, detail)
        return 0
    w, h = fit_size(width, height, detail)
    return math.ceil(w / TILE_PX) * math.ceil(h / TILE_PX)


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """Image input tokens for one image of ``width × height`` pixels at ``detail``.

    low: 85. high/auto: 85 + 170 × tiles, the tiles counted after the high-detail scaling
    (fit 2048×2048, shortest side 768). ``width``/``height`` may be the original or the
    already-scaled size: the scaling is idempotent, so both give the same count.
    """
    _check(width, height, detail)
    if detail == "low":
        return BASE_TOKENS
    return BASE_TOKENS + TILE_TOKENS * image_tiles(width, height, detail)


def image_size_from_data_url(data_url: str) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, WebP or GIF data URL, read from its header (no decoding)."""
    import base64

    from .image_header import read_header

    try:
        head = data_url.split(",", 1)[1][:88_000]
        raw = base64.b64decode(head[: len(head) - len(head) % 4])
    except (IndexError, ValueError):
        return None
    header = read_header(raw)
    return (header.width, header.height) if header is not None else None


def image_tokens_for_data_url(data_url: str, detail: str = "auto") -> int:
    """Tokens for an `input_image` data URL by the documented rule; 85 when the size can't be read."""
    size = image_size_from_data_url(data_url)
    if size is None or min(size) <= 0:
        return 85
    return image_tokens(size[0], size[1], detail)
