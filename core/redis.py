from redis.asyncio import Redis

from core.config import Settings


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_dsn,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
    )
