"""Audio shared by every layer: the canonical format (format.py), the one band-limited resampler
(resample.py), and conversions to model rates and G.711 (convert.py). Depends on nothing else here."""
