"""`openrealtime` command line: serve, inspect-sdp, models, doctor."""

from __future__ import annotations

import argparse
import os

# llama.cpp / CTranslate2 worker threads spin-wait by default, starving the media event loop on a
# small box (measured: 1 tok/s instead of 6-9 on 2 busy cores). Set before they are imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import sys  # noqa: E402

from .config import Settings  # noqa: E402

_ENV = "OPENREALTIME_"


def _env(name: str, default=None):
    return os.environ.get(_ENV + name, default)


def _env_list(name: str) -> list[str]:
    value = _env(name, "")
    return [v.strip() for v in value.split(",") if v.strip()]


def _env_float(name: str) -> float | None:
    value = _env(name)
    return float(value) if value not in (None, "") else None


def _env_int(name: str) -> int | None:
    value = _env(name)
    return int(value) if value not in (None, "") else None


def _env_bool(name: str) -> bool:
    return str(_env(name, "")).lower() in ("1", "true", "yes", "on")


def _workers(value: str) -> int:
    """--workers: a count, or `auto` for the cores this process may run on."""
    if value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', not {value!r}") from None


def _conversations(value: str) -> int | None:
    """--max-conversations: a number (0: no limit), or `auto` (None: what the local models hold, api/admission.py)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return max(0, int(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of conversations or 'auto', not {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openrealtime", description="OpenAI Realtime API compatible voice server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="HTTP bind address (OPENREALTIME_HOST)")
    serve.add_argument("--port", type=int, default=int(_env("PORT", "8000")), help="HTTP port (OPENREALTIME_PORT)")
    serve.add_argument("--api-key", dest="api_keys", action="append", default=None,
                       help="accepted bearer key, repeatable (OPENREALTIME_API_KEYS=k1,k2)")
    serve.add_argument("--advertise-ip", dest="advertise_ips", action="append", default=None,
                       help="IP put in ICE candidates, repeatable (OPENREALTIME_ADVERTISE_IPS); "
                            "default: 127.0.0.1 on a loopback bind, else this host's addresses")
    serve.add_argument("--bind-ip", dest="bind_ips", action="append", default=None,
                       help="local IP the ICE ports listen on, repeatable: one for all advertised IPs or one "
                            "per --advertise-ip, e.g. a private IP behind 1:1 NAT (OPENREALTIME_BIND_IPS); "
                            "default: each advertised IP if local, else 0.0.0.0")
    serve.add_argument("--udp-port", type=int, default=int(_env("UDP_PORT", "3478")),
                       help="the single ICE UDP port shared by all calls (OPENREALTIME_UDP_PORT)")
    serve.add_argument("--tcp-port", type=int, default=int(_env("TCP_PORT", "443")),
                       help="the single ICE-TCP port shared by all calls; 0 disables ICE-TCP (OPENREALTIME_TCP_PORT)")
    serve.add_argument("--engine", choices=["local", "echo"], default=_env("ENGINE", "local"),
                       help="local: offline models; echo: plays the caller's audio back (OPENREALTIME_ENGINE)")
    serve.add_argument("--profile", choices=["default", "fast", "test"], default=_env("PROFILE", "default"),
                       help="local model profile (OPENREALTIME_PROFILE)")
    for stage, what in (("llm", "chat completions"), ("stt", "audio transcriptions"), ("tts", "audio speech")):
        env = stage.upper()
        serve.add_argument(f"--{stage}-url", default=_env(f"{env}_URL"),
                           help=f"OpenAI-compatible server for {what}, e.g. http://host:8080/v1 "
                                f"(OPENREALTIME_{env}_URL); default: the local model")
        serve.add_argument(f"--{stage}-key", default=_env(f"{env}_KEY"), help=f"its API key (OPENREALTIME_{env}_KEY)")
        if stage == "tts":
            serve.add_argument("--tts-model", default=_env("TTS_MODEL"),
                               help="its model name (OPENREALTIME_TTS_MODEL); default: the one it serves")
        else:
            local = "a GGUF chat model file" if stage == "llm" else "a CTranslate2 Whisper model directory"
            serve.add_argument(f"--{stage}-model", default=_env(f"{env}_MODEL"),
                               help=f"with --{stage}-url: its model name (default: the one it serves); without: "
                                    f"a local model instead of the profile's, {local} (PATH) or a packaged name "
                                    f"(OPENREALTIME_{env}_MODEL)")
    serve.add_argument("--tts-voice", default=_env("TTS_VOICE"),
                       help="with --tts-url: its voice name; without: a local Piper voice file (PATH.onnx, with "
                            "PATH.onnx.json beside it) instead of the profile's (OPENREALTIME_TTS_VOICE)")
    serve.add_argument("--llm-gpu-layers", type=int, default=int(_env("LLM_GPU_LAYERS", "0")),
                       help="local LLM: layers offloaded to the GPU (a CUDA/Metal build of llama-cpp-python; "
                            "-1: all) (OPENREALTIME_LLM_GPU_LAYERS)")
    serve.add_argument("--llm-parallel", type=int, default=int(_env("LLM_PARALLEL", "4")),
                       help="local LLM: replies decoded at once in one batch; with --max-conversations auto also "
                            "the conversations admitted (OPENREALTIME_LLM_PARALLEL)")
    serve.add_argument("--stt-device", default=_env("STT_DEVICE", "cpu"), choices=["cpu", "cuda", "auto"],
                       help="local Whisper: where CTranslate2 runs (OPENREALTIME_STT_DEVICE)")
    serve.add_argument("--llm-no-images", action="store_true", default=_env_bool("LLM_NO_IMAGES"),
                       help="the --llm-url model cannot take images (OPENREALTIME_LLM_NO_IMAGES=1)")
    serve.add_argument("--mcp-allow", dest="mcp_allow", action="append", default=None, metavar="HOST|CIDR",
                       help="an MCP server on an internal address that sessions may use: a host name (exact) or "
                            "an IP/CIDR of the addresses it resolves to, repeatable; loopback, private, "
                            "link-local and other internal addresses are refused otherwise "
                            "(OPENREALTIME_MCP_ALLOW=h1,10.0.0.0/8)")
    serve.add_argument("--insecure-no-auth", action="store_true", default=_env_bool("INSECURE_NO_AUTH"),
                       help="allow a public bind without API keys (OPENREALTIME_INSECURE_NO_AUTH=1)")
    serve.add_argument("--connect-timeout", type=float, default=float(_env("CONNECT_TIMEOUT", "15")),
                       help="seconds a call may take to connect (OPENREALTIME_CONNECT_TIMEOUT)")
    serve.add_argument("--max-call-duration", type=float, default=float(_env("MAX_CALL_DURATION", "3600")),
                       help="seconds before a call is ended (OPENREALTIME_MAX_CALL_DURATION)")
    serve.add_argument("--drain-timeout", type=float, default=_env_float("DRAIN_TIMEOUT"),
                       help="seconds live sessions may go on after SIGTERM/SIGINT before they are closed; "
                            "default: --max-call-duration (OPENREALTIME_DRAIN_TIMEOUT)")
    serve.add_argument("--backend-first-token-timeout", type=float,
                       default=float(_env("BACKEND_FIRST_TOKEN_TIMEOUT", "30")),
                       help="seconds a remote model server may take to start answering before the response "
                            "fails (OPENREALTIME_BACKEND_FIRST_TOKEN_TIMEOUT)")
    serve.add_argument("--backend-stall-timeout", type=float, default=float(_env("BACKEND_STALL_TIMEOUT", "15")),
                       help="seconds a remote model server may stop sending in the middle of an answer before "
                            "the response fails (OPENREALTIME_BACKEND_STALL_TIMEOUT)")
    serve.add_argument("--max-calls", type=int, default=int(_env("MAX_CALLS", "64")),
                       help="concurrent calls (OPENREALTIME_MAX_CALLS)")
    serve.add_argument("--max-conversations", type=_conversations, default=_env("MAX_CONVERSATIONS", "auto"),
                       help="conversations (calls and WebSocket sessions) at once before new ones get 429; auto: "
                            "what the in-process language model decodes at once, none with a remote one; 0: no "
                            "limit (OPENREALTIME_MAX_CONVERSATIONS)")
    for stage, what in (("llm", "language model"), ("stt", "speech-to-text"), ("tts", "text-to-speech")):
        env = stage.upper()
        serve.add_argument(f"--{stage}-max-sessions", type=int, default=_env_int(f"{env}_MAX_SESSIONS"),
                           help=f"sessions using the {what} at once on every node of the cluster together; new "
                                f"ones beyond it get 429 model_capacity_exceeded. For a shared --{stage}-url "
                                f"(OPENREALTIME_{env}_MAX_SESSIONS); default: no limit")
    serve.add_argument("--opus-complexity", type=int, default=int(_env("OPUS_COMPLEXITY", "5")),
                       help="libopus complexity of the audio sent, 0-10; 1 halves the encoder's CPU per call "
                            "and codes wideband (OPENREALTIME_OPUS_COMPLEXITY)")
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"], help="(OPENREALTIME_LOG_LEVEL)")
    serve.add_argument("--log-format", default=_env("LOG_FORMAT", "text"), choices=["text", "json"],
                       help="(OPENREALTIME_LOG_FORMAT)")
    serve.add_argument("--workers", type=_workers, default=_env("WORKERS", "1"),
                       help="worker processes serving this host's HTTP port; auto: one per core "
                            "(OPENREALTIME_WORKERS)")
    # no default shown for the URL and the secret: --help must not print them from the environment
    serve.add_argument("--redis-url", default=None,
                       help="join the cluster of nodes sharing this Redis: redis://[:password@]host:port/db, "
                            "rediss://, unix://, redis+sentinel://host:port[,host:port]/SERVICE[/db] "
                            "(OPENREALTIME_REDIS_URL)")
    serve.add_argument("--node-id", default=_env("NODE_ID"),
                       help="this node's name in the cluster (OPENREALTIME_NODE_ID); default: hostname-pid")
    serve.add_argument("--internal-url", default=_env("INTERNAL_URL"),
                       help="how other nodes reach this one, e.g. http://10.0.0.5:8000 (OPENREALTIME_INTERNAL_URL); "
                            "default: the first advertised IP and --port")
    serve.add_argument("--cluster-secret", default=None,
                       help="shared secret authenticating node-to-node requests; required with --redis-url. Prefer "
                            "the environment (OPENREALTIME_CLUSTER_SECRET): a flag is visible to `ps`")
    serve.add_argument("--sip-port", type=int, default=_env_int("SIP_PORT"),
                       help="answer phone calls over SIP on this UDP and TCP port, e.g. 5060 (OPENREALTIME_SIP_PORT); "
                            "default: off. Needs --webhook-url and a webhook secret")
    serve.add_argument("--sip-tls-port", type=int, default=_env_int("SIP_TLS_PORT"),
                       help="SIP over TLS on this port, e.g. 5061, with --sip-tls-cert/--sip-tls-key "
                            "(OPENREALTIME_SIP_TLS_PORT)")
    serve.add_argument("--sip-tls-cert", default=_env("SIP_TLS_CERT"), help="PEM certificate (OPENREALTIME_SIP_TLS_CERT)")
    serve.add_argument("--sip-tls-key", default=_env("SIP_TLS_KEY"), help="PEM private key (OPENREALTIME_SIP_TLS_KEY)")
    serve.add_argument("--sip-advertise-ip", default=_env("SIP_ADVERTISE_IP"),
                       help="IP put in SIP Via/Contact and the SDP answer (OPENREALTIME_SIP_ADVERTISE_IP); default: "
                            "the first --advertise-ip")
    serve.add_argument("--sip-allow", dest="sip_allow", action="append", default=None, metavar="IP|CIDR",
                       help="a trunk address allowed to send INVITEs, repeatable; others get 403 "
                            "(OPENREALTIME_SIP_ALLOW=ip1,10.0.0.0/8); default: any")
    serve.add_argument("--sip-auth", dest="sip_auth", action="append", default=None, metavar="USER:PASSWORD",
                       help="a trunk's digest account, repeatable: INVITEs must authenticate as one of them "
                            "(401 challenge, MD5, qop=auth) (OPENREALTIME_SIP_AUTH=user1:pw1,user2:pw2); "
                            "default: no authentication")
    serve.add_argument("--sip-ring-timeout", type=float, default=float(_env("SIP_RING_TIMEOUT", "30")),
                       help="seconds a call rings before it is declined (603) when the app neither accepts nor "
                            "rejects it (OPENREALTIME_SIP_RING_TIMEOUT)")
    serve.add_argument("--sip-api", choices=["realtime", "live"], default=_env("SIP_API", "realtime"),
                       help="the API incoming SIP calls are announced for: realtime (realtime.call.incoming, "
                            "rtc_ ids, /v1/realtime/calls/{id}/accept) or live (live.transport.incoming, live_ ids, "
                            "/v1/live/sessions/{id}/accept) (OPENREALTIME_SIP_API)")
    serve.add_argument("--webhook-url", default=_env("WEBHOOK_URL"),
                       help="where realtime.call.incoming is POSTed for each incoming SIP call "
                            "(OPENREALTIME_WEBHOOK_URL)")
    serve.add_argument("--webhook-secret", default=None,
                       help="whsec_… secret signing the webhook, as openai-python's webhooks.unwrap() verifies. "
                            "Prefer the environment (OPENREALTIME_WEBHOOK_SECRET): a flag is visible to `ps`")
    inspect = sub.add_parser("inspect-sdp", help="the seed review's WebRTC tables for an SDP offer or answer")
    inspect.add_argument("file", help="SDP file, or - for stdin (raw SDP or RTCSessionDescription JSON)")
    inspect.add_argument("--json", action="store_true", help="print the full report as JSON")
    models = sub.add_parser("models", help="list, verify or warm the local models")
    models.add_argument("action", choices=["list", "verify", "warm"],
                        help="list: state of each model; verify: assemble + re-hash; warm: load once")
    models.add_argument("--profile", choices=["default", "fast", "test"], default=None,
                        help="one profile (list/verify default: all; warm default: default)")
    models.add_argument("--json", action="store_true", help="list: machine-readable output")
    models.add_argument("--llm-model", help="list/warm: a local GGUF (or packaged name) instead of the profile's")
    models.add_argument("--stt-model", help="list/warm: a CTranslate2 Whisper directory (or packaged name)")
    models.add_argument("--tts-voice", help="list/warm: a Piper voice file (PATH.onnx)")
    doctor = sub.add_parser("doctor", help="check ports, addresses, models and codecs; exit 1 on problems",
                            description="Checks this host for `serve`; accepts every serve option "
                                        "(--host, --udp-port, --advertise-ip, --profile, ...).")
    doctor.add_argument("--verify-models", action="store_true", help="also re-hash every model file")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    remote = {f"{stage}_{field}": getattr(args, f"{stage}_{field}", None)
              for stage in ("llm", "stt", "tts") for field in ("url", "key", "model")}
    return Settings(
        **remote,
        tts_voice=getattr(args, "tts_voice", None),
        llm_gpu_layers=getattr(args, "llm_gpu_layers", 0),
        llm_parallel=max(1, getattr(args, "llm_parallel", 4)),
        stt_device=getattr(args, "stt_device", "cpu"),
        llm_images=not getattr(args, "llm_no_images", False),
        host=args.host,
        port=args.port,
        api_keys=args.api_keys if args.api_keys is not None else _env_list("API_KEYS"),
        advertise_ips=args.advertise_ips if args.advertise_ips is not None else _env_list("ADVERTISE_IPS"),
        bind_ips=args.bind_ips if args.bind_ips is not None else _env_list("BIND_IPS"),
        mcp_allow=args.mcp_allow if args.mcp_allow is not None else _env_list("MCP_ALLOW"),
        udp_port=args.udp_port,
        tcp_port=args.tcp_port,
        engine=args.engine,
        profile=args.profile,
        insecure_no_auth=args.insecure_no_auth,
        log_level=args.log_level,
        log_format=args.log_format,
        connect_timeout_s=args.connect_timeout,
        max_call_duration_s=args.max_call_duration,
        max_calls=args.max_calls,
        max_conversations=getattr(args, "max_conversations", None),
        **{f"{stage}_max_sessions": getattr(args, f"{stage}_max_sessions", None) for stage in ("llm", "stt", "tts")},
        drain_timeout_s=getattr(args, "drain_timeout", None),
        backend_first_token_timeout_s=getattr(args, "backend_first_token_timeout", 30.0),
        backend_stall_timeout_s=getattr(args, "backend_stall_timeout", 15.0),
        opus_complexity=getattr(args, "opus_complexity", 5),
        workers=getattr(args, "workers", 1),
        redis_url=getattr(args, "redis_url", None) or _env("REDIS_URL") or None,
        node_id=getattr(args, "node_id", None) or None,
        internal_url=getattr(args, "internal_url", None) or None,
        cluster_secret=getattr(args, "cluster_secret", None) or _env("CLUSTER_SECRET") or None,
        sip_port=getattr(args, "sip_port", None),
        sip_tls_port=getattr(args, "sip_tls_port", None),
        sip_tls_cert=getattr(args, "sip_tls_cert", None),
        sip_tls_key=getattr(args, "sip_tls_key", None),
        sip_advertise_ip=getattr(args, "sip_advertise_ip", None),
        sip_allow=(args.sip_allow if getattr(args, "sip_allow", None) is not None else _env_list("SIP_ALLOW")),
        sip_auth=(args.sip_auth if getattr(args, "sip_auth", None) is not None else _env_list("SIP_AUTH")),
        sip_ring_timeout_s=getattr(args, "sip_ring_timeout", 30.0),
        sip_api=getattr(args, "sip_api", "realtime"),
        webhook_url=getattr(args, "webhook_url", None),
        webhook_secret=getattr(args, "webhook_secret", None) or _env("WEBHOOK_SECRET") or None,
    )


def serve(settings: Settings) -> None:
    settings.check()
    if settings.workers > 1:  # a supervisor and N worker processes (supervisor.py)
        from .supervisor import supervise

        sys.exit(supervise(settings))
    from .serving import run_node

    sys.exit(run_node(settings))


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "doctor":
        parser.error("unrecognized arguments: " + " ".join(extra))
    if args.command == "serve":
        serve(settings_from_args(args))
    elif args.command == "inspect-sdp":
        from .media.sdp_inspect import main_inspect

        sys.exit(main_inspect(args.file, args.json))
    elif args.command == "models":
        from .models_cli import main_models

        sys.exit(main_models(args.action, args.profile, args.json, llm=args.llm_model, asr=args.stt_model,
                             tts=args.tts_voice))
    elif args.command == "doctor":
        from .doctor import main_doctor

        serve_args = parser.parse_args(["serve", *extra])  # doctor checks what `serve` would run with
        sys.exit(main_doctor(settings_from_args(serve_args), verify_models=args.verify_models))


if __name__ == "__main__":
    main()
