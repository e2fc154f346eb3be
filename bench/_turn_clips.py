"""The generated clip set of bench/turn_taking.py: spoken turns, pauses, noise and the sounds a listener
makes while the agent talks. Everything is synthesized here, from the server's own Piper voice (several
speeds and a pitch shift stand in for several speakers) and numpy; all audio is float32 at 24 kHz.

- complete turns: questions and commands, said in one go;
- paused turns: a sentence broken after a function word or a hesitation ("…a large pizza with, | um, |
  mushrooms"), the first part said with the comma's continuing intonation, then 0.4-1.2 s of silence,
  then the rest: cutting the turn in that pause is a false cut-off;
- noise: steady (pink) and babble (six overlapping voices), mixed at a given SNR against the speech;
- barge-in sounds: coughs (voiced and unvoiced bursts), clicks, a door knock, backchannels ("mm-hmm",
  "yeah", "okay", "uh-huh", "right") and real interruptions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from openrealtime.audio.resample import resample

RATE = 24000

COMPLETE = [
    "What is the capital of France?",
    "Turn off the lights in the kitchen.",
    "How many tablespoons are there in a cup of flour?",
    "Please book a table for two at seven.",
    "What time does the pharmacy close today?",
    "Set a timer for ten minutes.",
    "Who wrote Romeo and Juliet?",
    "Can you recommend a good book about space?",
    "Send a message to John saying I will be late.",
    "How far is the moon from the earth?",
    "Play some relaxing music.",
    "What's the weather like in London tomorrow?",
]
PAUSED = [  # (said first, with its continuing intonation), (said after the pause)
    ("I'd like to order a large pizza with,", "mushrooms and olives."),
    ("Can you tell me the weather in,", "Paris tomorrow?"),
    ("I need to book a flight to, um,", "London for next Tuesday."),
    ("What time does the,", "pharmacy on the corner close?"),
    ("Could you remind me to call my,", "mother at six?"),
    ("I'm looking for a restaurant that,", "serves vegetarian food."),
    ("So I was thinking that maybe we could, um,", "go to the beach on Saturday."),
    ("Send a message to John saying that,", "I will be late."),
    ("My favourite colour is,", "blue."),
    ("I want to go to the, uh,", "museum this afternoon."),
    ("The meeting is about the,", "budget for next year."),
    ("Add eggs, milk and, um,", "some bread to the list."),
]
PAUSES_S = (0.4, 0.6, 0.8, 1.0, 1.2)
VOICES = {"joe": (1.0, 1.0), "joe-fast": (1.25, 1.0), "joe-slow": (0.85, 1.0), "joe-high": (1.05, 1.12)}
BACKCHANNELS = ["Mm-hmm.", "Yeah.", "Okay.", "Uh-huh.", "Right."]
INTERRUPTIONS = ["Wait, can you say that again please?", "Actually, I want to change my order.",
                 "Stop, that is not what I asked.", "Hold on, what about tomorrow instead?"]


@dataclass
class Clip:
    name: str
    audio: np.ndarray  # float32, 24 kHz
    text: str  # what is said
    speech_end_s: float  # end of the last word (the turn's end)
    pause: tuple[float, float] | None = None  # (start, end) of a mid-turn pause, seconds


def voiced_bounds(audio: np.ndarray, threshold: float = 0.01) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def trim(audio: np.ndarray) -> np.ndarray:
    start, end = voiced_bounds(audio)
    return audio[start:end]


class Speaker:
    """Piper at a speed and pitch (a resampling pitch shift, its tempo change undone by the speed)."""

    def __init__(self, tts) -> None:
        self.tts = tts

    def say(self, text: str, voice: str = "joe") -> np.ndarray:
        speed, pitch = VOICES[voice]
        audio = np.concatenate(list(self.tts.synthesize(text, speed=speed / pitch, cancel=threading.Event())))
        if pitch != 1.0:
            audio = resample(audio, round(RATE * pitch), RATE)
        return trim(audio).astype(np.float32)


def complete_clips(speaker: Speaker, voices: list[str], count: int) -> list[Clip]:
    clips = []
    for voice in voices:
        for text in COMPLETE[:count]:
            audio = speaker.say(text, voice)
            clips.append(Clip(f"{voice}: {text}", audio, text, len(audio) / RATE))
    return clips


def paused_clips(speaker: Speaker, voices: list[str], count: int) -> list[Clip]:
    clips = []
    for v, voice in enumerate(voices):
        for i, (first, rest) in enumerate(PAUSED[:count]):
            pause = PAUSES_S[(i + v) % len(PAUSES_S)]
            a, b = speaker.say(first, voice), speaker.say(rest, voice)
            audio = np.concatenate([a, np.zeros(int(pause * RATE), np.float32), b])
            text = f"{first} {rest}".replace(", um,", "").replace(", uh,", "").replace(",", "")
            clips.append(Clip(f"{voice}: {first} [{pause:.1f} s] {rest}", audio, text, len(audio) / RATE,
                              pause=(len(a) / RATE, len(a) / RATE + pause)))
    return clips


# ---- noise ------------------------------------------------------------------------------------
def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise ** 2))).astype(np.float32)


def babble(speaker: Speaker, n: int, rng: np.random.Generator) -> np.ndarray:
    """Six voices talking at once (sentences of the clip set, varied voices, looped with random offsets)."""
    out = np.zeros(n, np.float32)
    names = list(VOICES)
    for k in range(6):
        talk = np.concatenate([speaker.say(COMPLETE[(3 * k + j) % len(COMPLETE)], names[(k + j) % len(names)])
                               for j in range(3)])
        talk = np.roll(np.resize(talk, n), int(rng.integers(0, n)))
        out += talk / np.sqrt(np.mean(talk ** 2) + 1e-12)
    return (out / np.sqrt(np.mean(out ** 2))).astype(np.float32)


def speech_power(audio: np.ndarray) -> float:
    """Mean power over the voiced 20 ms frames (silence inside the clip does not count)."""
    frames = audio[: len(audio) // 480 * 480].reshape(-1, 480)
    power = np.mean(frames ** 2, axis=1)
    return float(np.mean(power[power > 0.1 * power.max()]))


def mix(audio: np.ndarray, noise: np.ndarray, snr_db: float, at: int = 0) -> np.ndarray:
    """`audio` with `noise` (unit power, at least as long) at `snr_db`; the noise starts `at` samples
    earlier than the audio (noise before and after is part of the scene)."""
    gain = np.sqrt(speech_power(audio) / 10 ** (snr_db / 10))
    out = noise[: len(audio) + at].copy() * gain
    out[at:at + len(audio)] += audio
    return out.astype(np.float32)


# ---- what a listener does while the agent talks -------------------------------------------------
def cough(rng: np.random.Generator, voiced: bool, length_s: float = 0.35) -> np.ndarray:
    """A burst: fast attack, exponential decay, low-passed noise (plus a 250 Hz voice buzz if voiced)."""
    n = int(length_s * RATE)
    t = np.arange(n) / RATE
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (length_s / 4))
    burst = np.convolve(rng.normal(0, 1, n), np.ones(6) / 6, mode="same")
    if voiced:
        burst += 1.5 * np.sign(np.sin(2 * np.pi * 250 * t)) * np.exp(-t / (length_s / 3))
    out = burst * envelope
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def click(length_s: float = 0.004) -> np.ndarray:
    n = int(length_s * RATE)
    out = np.zeros(n, np.float32)
    out[0], out[1:n] = 0.9, -0.5 * np.exp(-np.arange(1, n) / 8)
    return out


def knock() -> np.ndarray:
    """A door knock: three low thumps."""
    t = np.arange(int(0.05 * RATE)) / RATE
    thump = (np.sin(2 * np.pi * 120 * t) * np.exp(-t / 0.012)).astype(np.float32) * 0.8
    gap = np.zeros(int(0.15 * RATE), np.float32)
    return np.concatenate([thump, gap, thump, gap, thump])


def barge_in_sounds(speaker: Speaker, rng: np.random.Generator) -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, audio): kind "noise" (must not interrupt) or "speech" (must)."""
    sounds: list[tuple[str, str, np.ndarray]] = [
        ("noise", "cough (voiced)", cough(rng, True)), ("noise", "cough (voiced, long)", cough(rng, True, 0.5)),
        ("noise", "cough (dry)", cough(rng, False)), ("noise", "click", click()),
        ("noise", "double click", np.concatenate([click(), np.zeros(2400, np.float32), click()])),
        ("noise", "door knock", knock())]
    voices = list(VOICES)
    for i, text in enumerate(BACKCHANNELS * 2):
        voice = voices[i % len(voices)]
        sounds.append(("noise", f"backchannel {text!r} ({voice})", speaker.say(text, voice)))
    for i, text in enumerate(INTERRUPTIONS * 2):
        voice = voices[i % len(voices)]
        sounds.append(("speech", f"{text!r} ({voice})", speaker.say(text, voice)))
    return sounds
