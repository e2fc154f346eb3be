"""The engine's canonical audio format: PCM16 little-endian, mono, 24 kHz, 20 ms frames."""

SAMPLE_RATE = 24000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 480
FRAME_BYTES = FRAME_SAMPLES * 2  # 960
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 48


def pcm_ms(nbytes: int) -> int:
    """Duration in whole milliseconds of `nbytes` of canonical PCM."""
    return nbytes // BYTES_PER_MS
