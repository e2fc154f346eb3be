"""A redis-py asyncio client from `--redis-url`.

Accepted, as redis-py reads them: `redis://[[user]:password@]host:port/db`, `rediss://…` (TLS; query
options such as `ssl_cert_reqs=none`, `ssl_ca_certs=PATH`), `unix:///path.sock?db=0`. redis-py has
no URL form for Sentinel, so this one is mapped onto its `Sentinel` class:
`redis+sentinel://[[user]:password@]host1:26379,host2:26379/SERVICE[/db]` (`rediss+sentinel://` for
TLS to the master; the password is the master's, the sentinels are reached without one).

Timeouts are short and retries few, so an operation during an outage fails within a few seconds
(`StoreUnavailable`) rather than blocking a request; the pool reconnects by itself afterwards.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 3.0


def connection_options() -> dict[str, Any]:
    return {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": COMMAND_TIMEOUT_S,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2), "health_check_interval": 15,
            "decode_responses": True}


def check_redis_url(url: str) -> None:
    """Raise ValueError, saying what is accepted, unless `url` is a form `redis_client` can use."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in SENTINEL_SCHEMES:
        _sentinel_parts(url)
    elif scheme in ("redis", "rediss", "unix"):
        parse_url(url)
    else:
        raise ValueError(f"--redis-url must start with redis://, rediss://, unix:// or redis+sentinel://, "
                         f"not {scheme + '://' if scheme else repr(url)}")


def redis_client(url: str) -> Redis:
    """A client for `url` (see the module doc); raises ValueError for a URL it cannot use. It connects
    when first used."""
    check_redis_url(url)
    if urlsplit(url).scheme.lower() not in SENTINEL_SCHEMES:
        return Redis.from_url(url, **connection_options())
    sentinels, service, options = _sentinel_parts(url)
    options = {**connection_options(), **options}
    sentinel_options = {k: options[k] for k in ("socket_connect_timeout", "socket_timeout")}
    return Sentinel(sentinels, sentinel_kwargs=sentinel_options, **options).master_for(service)


def _sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """(sentinel addresses, service name, the master's connection options) of a Sentinel URL."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    sentinels = []
    for hostport in filter(None, netloc.split(",")):
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            host, port = hostport, "26379"
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel --redis-url is redis+sentinel://[user:password@]host:port[,host:port...]"
                         "/SERVICE[/db]")
    options: dict[str, Any] = {}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    if len(path) == 2:
        options["db"] = int(path[1])
    if parts.scheme.lower().startswith("rediss"):
        options["ssl"] = True
    return sentinels, unquote(path[0]), options
