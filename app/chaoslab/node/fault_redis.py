"""Redis's memory limit lowered at run time, with an eviction policy: the way a Celery broker runs out of memory.

``CONFIG SET maxmemory`` and ``maxmemory-policy`` on the node's Redis (the lab's broker and result backend), the
previous values kept in the fault's record and put back at its end. With an ``allkeys-*`` policy Redis evicts any
key to stay under the limit, Celery's queue lists and kombu's bindings included: queued tasks vanish (a known way
Celery loses tasks on Redis). ``volatile-*`` evicts only keys with a TTL (the results). ``noeviction`` makes Redis
refuse writes once it is full: publishes fail. A Redis restarted meanwhile has its configured values again
(``CONFIG SET`` lasts until a restart), so reverting then finds nothing to do.
"""

from __future__ import annotations

from typing import Any

from chaoslab.node.fault_record import Detail, Fault, Node

KEYS = ("maxmemory", "maxmemory-policy")


def client(timeout: float = 5.0) -> Any:
    """The node's Redis, as the node's lab configuration names it (CHAOSLAB_CONFIG): the result backend's URL, which
    is the same server as a Redis broker's and the only Redis of a RabbitMQ lab."""
    import redis

    from chaoslab.node import config

    return redis.Redis.from_url(config.load().result_backend, socket_timeout=timeout, socket_connect_timeout=timeout)


def redis_maxmemory(values: dict[str, Any], node: Node) -> Fault:
    import redis

    maxmemory, policy = int(values["maxmemory"]), str(values["policy"])
    conn = client()
    try:
        previous = {key: value for key, value in conn.config_get("maxmemory*").items() if key in KEYS}
        used = int(conn.info("memory")["used_memory"])
    except redis.RedisError as error:
        raise ValueError(f"redis-maxmemory: the Redis of {node.name} does not answer ({error})") from None

    def apply() -> Detail:
        conn.config_set("maxmemory-policy", policy)
        conn.config_set("maxmemory", maxmemory)
        return {"previous": previous, "maxmemory": maxmemory, "policy": policy, "used_memory": used}

    return Fault("redis-maxmemory", {"maxmemory": maxmemory, "policy": policy}, apply, revert_redis_maxmemory)


def revert_redis_maxmemory(detail: Detail) -> None:
    import redis

    previous = detail.get("previous") or {}
    try:
        conn = client()
        conn.config_set("maxmemory", previous.get("maxmemory", "0"))
        conn.config_set("maxmemory-policy", previous.get("maxmemory-policy", "noeviction"))
    except redis.ConnectionError:  # Redis restarted or stopped since: it has its configured values again
        return
