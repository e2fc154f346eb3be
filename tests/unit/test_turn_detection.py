"""The turn detector's state machine on scripted VAD probabilities, end-of-turn scores and transcripts
(semantic_vad without a model; the real model is tested in tests/models/test_local_turn.py)."""

from openrealtime.protocol.session import SemanticVad, ServerVad
from openrealtime.session.turn_detection import (
    EAGERNESS,
    SEMANTIC_SILENCE_MS,
    ScoreTurn,
    SilenceBegan,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnComplete,
    TurnDetector,
    VadParams,
)
from openrealtime.session.turn_text import continuing_alternative, ends_mid_sentence, last_word_confidence

FRAME = 32
AUTO = EAGERNESS["auto"]
FIRST_SCORE = -(-AUTO.score_at_ms[0] // FRAME) * FRAME  # the silence at which the first score is asked for


class Script:
    """Feeds a detector frame by frame and keeps every event with the audio time it happened at."""

    def __init__(self, eagerness: str = "auto") -> None:
        self.turn = TurnDetector(VadParams.from_config(SemanticVad(eagerness=eagerness), end_of_turn_model=True))
        self.t = 0.0
        self.events: list[tuple[float, object]] = []

    def frames(self, prob: float, ms: int) -> None:
        for _ in range(ms // FRAME):
            self.t += FRAME
            self.events += [(self.t, e) for e in self.turn.feed(prob, self.t, FRAME)]

    def speak(self, ms: int = 800) -> None:
        self.frames(0.9, ms)

    def quiet(self, ms: int) -> None:
        self.frames(0.05, ms)

    def score(self, p: float) -> None:
        self.events += [(self.t, e) for e in self.turn.scored(self.asked()[-1].speech_end_ms, p, self.t)]

    def hear(self, text: str, confidence: float | None = None, continuing: float = 0.0) -> None:
        pause = self.turn.pause
        assert pause is not None
        self.events += [(self.t, e) for e in self.turn.heard(pause.speech_end_ms, text, self.t, confidence,
                                                              continuing)]

    def of(self, kind: type) -> list:
        return [e for _t, e in self.events if isinstance(e, kind)]

    def at(self, kind: type) -> list[float]:
        return [t for t, e in self.events if isinstance(e, kind)]

    def asked(self) -> list[ScoreTurn]:
        return self.of(ScoreTurn)


def test_a_confident_model_ends_the_turn_after_the_minimum_silence():
    s = Script()
    s.quiet(320)
    s.speak(800)
    speech_end = s.t
    s.quiet(FIRST_SCORE)
    assert len(s.asked()) == 1 and s.asked()[0].speech_end_ms == speech_end, "scored at the first pause"
    assert s.of(SilenceBegan), "the transcription starts before the score"
    assert FIRST_SCORE < AUTO.min_silence_ms
    s.score(0.93)
    assert len(s.of(TurnComplete)) == 1 and not s.of(SpeechStopped), "the answer may start; no commit yet"
    s.quiet(AUTO.min_silence_ms)
    (stopped,) = s.of(SpeechStopped)
    assert 0 <= s.at(SpeechStopped)[0] - speech_end - AUTO.min_silence_ms < FRAME
    assert stopped.speech_end_ms == speech_end and stopped.audio_end_ms == s.at(SpeechStopped)[0]
    assert stopped.audio_start_ms == s.of(SpeechStarted)[0].audio_start_ms
    assert not s.turn.speaking


def test_a_late_score_commits_at_once():
    s = Script()
    s.speak()
    s.quiet(320)  # the model took its time: the minimum silence has passed
    s.score(0.95)
    assert [type(e) for e in s.turn.scored(0, 0.1, s.t)] == [], "an answer for another pause is ignored"
    assert s.at(SpeechStopped) == [s.t] and s.of(TurnComplete)


def test_an_unsure_model_waits_for_the_words():
    s = Script()
    s.speak()
    s.quiet(FIRST_SCORE)
    s.score(0.4)
    s.quiet(200)
    assert not s.of(TurnComplete) and not s.of(SpeechStopped), "undecided: keep listening"
    s.hear("What is the capital of France?")
    assert s.of(TurnComplete) and s.at(SpeechStopped) == [s.t], "finished words, and the model does not object"


def test_words_that_stop_mid_sentence_keep_the_turn_open_until_the_maximum_wait():
    s = Script()
    s.speak()
    speech_end = s.t
    s.quiet(FIRST_SCORE)
    s.score(0.95)  # fooled by a pause after a function word
    s.hear("I'd like to order a large pizza with.")  # arrives before the minimum silence
    s.quiet(320)
    s.score(0.97)
    s.quiet(3000)
    assert not s.of(SpeechStopped), "incomplete: no commit at the minimum silence"
    assert len(s.asked()) == len(AUTO.score_at_ms), "one score per scoring point"
    s.quiet(1100)
    assert s.at(SpeechStopped)[0] - speech_end >= EAGERNESS["auto"].max_wait_ms
    assert s.at(SpeechStopped)[0] - speech_end < EAGERNESS["auto"].max_wait_ms + FRAME


def confident_with_words_coming() -> Script:
    """A pause the model is sure ends the turn, while its transcript is still on its way."""
    s = Script()
    s.speak()
    s.quiet(64)
    s.turn.expect_text(s.of(SilenceBegan)[0].speech_end_ms)
    s.quiet(FIRST_SCORE - 64)
    s.score(0.99)
    return s


def test_a_transcript_on_its_way_outranks_a_confident_model():
    s = confident_with_words_coming()
    s.quiet(400)
    assert not s.of(TurnComplete) and not s.of(SpeechStopped), "waits for the words"
    s.hear("My favourite colour is")
    s.quiet(400)
    assert not s.of(SpeechStopped)
    failed = confident_with_words_coming()
    failed.events += [(failed.t, e) for e in failed.turn.heard(failed.turn.pause.speech_end_ms, None, failed.t)]
    failed.quiet(AUTO.min_silence_ms)
    assert failed.of(TurnComplete) and failed.of(SpeechStopped), "no transcript after all: the model decides alone"


def test_finished_words_the_transcriber_doubted_wait_for_the_longer_silence():
    s = Script()
    s.speak()
    speech_end = s.t
    s.quiet(64)
    s.turn.expect_text(speech_end)  # the speculative transcription started at SilenceBegan
    s.quiet(FIRST_SCORE - 64)
    s.score(0.97)  # Smart Turn fooled by "My favourite colour is," ...
    s.hear("My favorite colors.", confidence=AUTO.sure_from - 0.15)  # ... and Whisper finishing the sentence
    s.quiet(AUTO.score_at_ms[-1])
    s.score(0.99)
    s.quiet(AUTO.unsure_silence_ms - AUTO.score_at_ms[-1] - FIRST_SCORE - FRAME)
    assert not s.of(TurnComplete) and not s.of(SpeechStopped), "neither the words nor the model end it"
    s.quiet(2 * FRAME)
    assert not s.of(TurnComplete), "no answer was started on a guess"
    assert 0 <= s.at(SpeechStopped)[0] - speech_end - AUTO.unsure_silence_ms < FRAME
    assert AUTO.unsure_silence_ms < AUTO.max_wait_ms

    sure = Script()
    sure.speak()
    sure.quiet(FIRST_SCORE)
    sure.score(0.4)
    sure.hear("What is the capital of France?", confidence=AUTO.sure_from + 0.1)
    sure.quiet(AUTO.min_silence_ms)
    assert sure.of(TurnComplete) and sure.of(SpeechStopped), "words it was sure of end the turn"

    other = Script()
    other.speak()
    other.quiet(FIRST_SCORE)
    other.score(0.4)
    other.hear("I want to go to them.", confidence=0.74, continuing=AUTO.cut_from + 0.1)  # it also heard "the"
    other.quiet(AUTO.min_silence_ms + 200)
    assert not other.of(SpeechStopped), "a function word in the last word's place: maybe cut off"

    ruled_out = Script()
    ruled_out.speak()
    ruled_out.quiet(FIRST_SCORE)
    ruled_out.score(AUTO.text_floor / 2)
    ruled_out.hear("My favorite colors.", confidence=0.3)
    ruled_out.quiet(AUTO.unsure_silence_ms + 100)
    assert not ruled_out.of(SpeechStopped), "doubted words and a model that rules the end out: keep listening"


def test_the_confidence_of_the_last_word_and_its_punctuation():
    def lp(*pairs):
        import math
        return [{"token": t, "logprob": math.log(p)} for t, p in pairs]

    # Whisper base on "My favourite colour is," (bench/turn_taking.py's paused set)
    doubted = lp((" My", 0.64), (" favorite", 0.92), (" colors", 0.78), (".", 0.59))
    assert abs(last_word_confidence(doubted) - 0.59) < 1e-6
    made_up = lp((" pizza", 0.97), (" with", 0.96), (" it", 0.31), (".", 0.85))
    assert abs(last_word_confidence(made_up) - 0.31) < 1e-6
    heard = lp((" of", 0.99), (" flour", 0.96), ("?", 0.96))
    assert abs(last_word_confidence(heard) - 0.96) < 1e-6
    pieces = lp((" Romeo", 0.9), (" and", 0.98), (" Jul", 0.95), ("iet", 0.5), (".", 0.9))  # a word in pieces
    assert abs(last_word_confidence(pieces) - 0.5) < 1e-6
    assert abs(last_word_confidence(lp(("Yes", 0.7))) - 0.7) < 1e-6, "the first word has no leading space"
    assert last_word_confidence(None) is None and last_word_confidence([]) is None


def test_speech_resuming_drops_the_pause_and_its_late_verdicts():
    s = Script()
    s.speak()
    s.quiet(192)
    ask = s.asked()[0]
    s.speak(400)
    assert s.of(SpeechResumed)
    assert s.turn.scored(ask.speech_end_ms, 0.99, s.t) == [], "the verdict on an old pause is stale"
    assert s.turn.heard(ask.speech_end_ms, "Done.", s.t) == []
    s.quiet(FIRST_SCORE)
    assert len(s.asked()) == 2 and s.asked()[1].speech_end_ms > ask.speech_end_ms
    s.score(0.99)
    s.quiet(64)
    assert len(s.of(SpeechStopped)) == 1 and s.of(SpeechStopped)[0].speech_end_ms == s.asked()[1].speech_end_ms


def test_scores_are_asked_one_at_a_time():
    s = Script()
    s.speak()
    s.quiet(AUTO.score_at_ms[-1] + FRAME)  # every scoring point passed while the first score was computed
    assert len(s.asked()) == 1
    s.score(0.3)
    s.quiet(FRAME)
    assert len(s.asked()) == 2, "the next one once the first is back"
    s2 = Script()
    s2.speak()
    s2.turn.feed(0.05, s2.t + 400, 400)  # a late batch: one long frame passes both points at once
    assert len([e for e in s2.turn.feed(0.05, s2.t + 432, 32) if isinstance(e, ScoreTurn)]) == 0


def test_eagerness_sets_the_maximum_wait_and_auto_is_medium():
    waits = {}
    for eagerness in ("low", "medium", "high", "auto"):
        s = Script(eagerness)
        s.speak()
        end = s.t
        s.quiet(9000)
        waits[eagerness] = s.at(SpeechStopped)[0] - end
    assert waits["low"] >= 8000 and 4000 <= waits["medium"] < 4100 and 2000 <= waits["high"] < 2100
    assert waits["auto"] == waits["medium"]
    assert EAGERNESS["low"].complete_at > EAGERNESS["medium"].complete_at > EAGERNESS["high"].complete_at


def test_semantic_vad_without_a_model_is_a_silence_timer():
    params = VadParams.from_config(SemanticVad(eagerness="high"))
    assert params.semantic is None and params.silence_duration_ms == SEMANTIC_SILENCE_MS["high"]
    server = VadParams.from_config(ServerVad(silence_duration_ms=420), end_of_turn_model=True)
    assert server.semantic is None and server.silence_duration_ms == 420, "server_vad never uses the model"


def test_words_that_cannot_end_a_sentence():
    for text in ("I'd like to order a large pizza with.", "Can you tell me the weather in?", "so maybe we could.",
                 "My favourite colour is", "I want to go to the...", "Well, um,", "and then -"):
        assert ends_mid_sentence(text), text
    for text in ("What is the capital of France?", "Thank you.", "Turn it off.", "Book a table for two.", "",
                 "Tell me"):
        assert not ends_mid_sentence(text), text


def test_short_utterances_that_take_the_turn():
    from openrealtime.session.turn_text import takes_the_turn

    for text in ("Wait.", "Stop!", "Sorry, no", "Hold on", "Actually", "Can you say that again",
                 "What about Tuesday then?"):
        assert takes_the_turn(text), text
    for text in ("Mm-hmm.", "Yeah.", "Okay, okay.", "Uh-huh.", "Right.", "[coughing]", "(cough)", "", "Thank you.",
                 "In my mom.", "Ow!", "What's your name?"):
        assert not takes_the_turn(text), text


def test_the_function_words_heard_in_place_of_the_last_word():
    import math

    def step(token, p, *alternatives):
        return {"token": token, "logprob": math.log(p),
                "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in ((token, p), *alternatives)]}

    # Whisper base on "I want to go to the, uh," (bench/turn_taking.py's paused set)
    them = [step(" to", 0.97), step(" them", 0.52, (" the", 0.4), (" that", 0.05)), step(".", 0.7)]
    assert abs(continuing_alternative(them) - 0.45) < 1e-6
    france = [step(" of", 0.99), step(" France", 0.93, (" friends", 0.05)), step("?", 0.95)]
    assert continuing_alternative(france) == 0.0
    assert continuing_alternative(None) == 0.0
    assert continuing_alternative([{"token": " them", "logprob": -0.6}]) == 0.0, "no alternatives known"
