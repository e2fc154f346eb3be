"""WebRTC media edge: SDP policy, ICE, audio in/out, the `oai-events` data channel."""
