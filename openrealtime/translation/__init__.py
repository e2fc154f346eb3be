"""Realtime translation sessions on the model stack: speech in one language, text and speech out in another.

`session.py` coordinates one session (events in and out, 200 ms input frames, close and flush);
`segmenter.py` cuts the input into utterances with the VAD; `translator.py` asks the language model
for a faithful translation of each; `voices.py` says which target languages a voice speaks. The wire
types are in protocol/translation.py, the routes in api/translations.py.
"""
