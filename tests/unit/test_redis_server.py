"""The private redis-server of the tests and the demo is durable: a SIGKILL loses nothing acknowledged."""

from __future__ import annotations

import redis

from devkit.redis_server import redis_server


def test_a_key_survives_a_sigkill_and_a_restart_on_the_same_url() -> None:
    # Given a private Redis holding a job's key
    with redis_server() as server:
        url = server.url
        client = redis.Redis.from_url(url)
        client.set("job:1", "queued")
        client.close()

        # When the server is SIGKILLed, as a crashed host would be, and started again
        server.kill()
        assert server.proc is not None and server.proc.returncode == -9
        server.restart()

        # Then the key is back, at the same URL
        assert server.url == url
        client = redis.Redis.from_url(url)
        assert client.get("job:1") == b"queued"
        client.close()
