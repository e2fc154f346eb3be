"""OpenAI's Live API (`client.live`): a Live session coordinator over the Realtime session engine
(session.py), its audio edges (audio.py), Responses delegation on the local model (backend.py) and the
data-channel permissions of WebRTC sessions (permissions.py). Wire types: protocol/live.py."""
