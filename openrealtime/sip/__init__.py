"""Phone calls over SIP into the same realtime sessions as WebRTC, with OpenAI's call-control flow.

A small RFC 3261 user agent server (no GPL code): the parser (message.py), UDP/TCP/TLS transports
(transport.py), transactions and their retransmission timers (transactions.py), dialogs (dialog.py),
SDP offer/answer (sdp.py), the RTP leg (rtp.py: G.711, RFC 4733 DTMF, latching, SDES-SRTP, with
jitter.py and dtmf.py), the signed `realtime.call.incoming` webhook (webhook.py), one call bridged
into a SessionEngine (call.py) and the server that ties them together (server.py). The HTTP routes
(`/v1/realtime/calls/{id}/accept|reject|refer`) are in api/sip_calls.py.
"""
