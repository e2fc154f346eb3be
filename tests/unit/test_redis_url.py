"""--redis-url forms: redis://, rediss:// and unix:// as redis-py reads them; Sentinel mapped onto its class."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from openrealtime.cluster.redis_url import redis_client


def test_plain_and_tls_urls_go_to_redis_py():
    assert redis_client("redis://127.0.0.1:6390/3").connection_pool.connection_kwargs["db"] == 3
    tls = redis_client("rediss://:pw@cache.internal:6380/1?ssl_cert_reqs=none").connection_pool
    assert tls.connection_class is SSLConnection and tls.connection_kwargs["password"] == "pw"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db():
    pool = redis_client("redis+sentinel://:pw@s1:26379,s2:26380,s3/mymaster/2").connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    sentinels = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                 for s in pool.sentinel_manager.sentinels]
    assert sentinels == [("s1", 26379), ("s2", 26380), ("s3", 26379)]
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"


@pytest.mark.parametrize("url", ["http://host:6379", "redis+sentinel://s1:26379", "redis+sentinel://s1/a/b/c",
                                 "host:6379"])
def test_unusable_urls_are_refused_with_the_accepted_forms(url):
    with pytest.raises(ValueError, match="redis"):
        redis_client(url)
