"""Snapshot what a Redis broker and result backend hold, for the checker (see :mod:`chaoslab.broker_state`).

Kombu's Redis transport keeps a queue as a list of JSON messages (one list per queue and priority step) and every
message delivered to a consumer and not yet acknowledged in the hash ``unacked`` (delivery tag -> ``[message,
exchange, routing key]``), with its delivery time in the sorted set ``unacked_index``. A message moves from the list
to ``unacked`` when a worker takes it, back to the list when it is restored, and out of ``unacked`` when it is
acknowledged. One Lua script reads all of them in one atomic step, so no message is seen twice or missed while the
snapshot is taken, and it returns only the task ids: a million messages cost one round trip and a few MB.

Celery's Redis result backend stores ``celery-task-meta-<id>`` (state, exception type, ``date_done``, and the
worker's name with ``result_extended``); those of the ids the caller names are read with MGET in batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import redis

from chaoslab.broker_state import BrokerState, TaskMeta

UNACKED: Final = "unacked"
UNACKED_INDEX: Final = "unacked_index"
BINDING_PREFIX: Final = "_kombu.binding."
PRIORITY_SEP: Final = "\x06\x16"
PRIORITY_STEPS: Final = (3, 6, 9)
RESULT_PREFIX: Final = "celery-task-meta-"
MGET_BATCH: Final = 2000
DEFAULT_QUEUE: Final = "celery"

# KEYS: the unacked hash, its index, then every queue list. Returns {{queue key, ids}..., reserved ids, since}, each
# list of ids one string joined by newlines (a million ids in one reply element); "" for a message whose id cannot be
# read (not a Celery task message). The id is found as kombu writes it (its first "id" key is the headers' one: the
# body before it is base64, and any quote inside a header's text is escaped), else by decoding the JSON.
_SNAPSHOT_LUA: Final = """
local function id_of(message)
  if type(message) ~= 'table' then return '' end
  local headers = message['headers']
  if type(headers) == 'table' and type(headers['id']) == 'string' then return headers['id'] end
  local properties = message['properties']
  if type(properties) == 'table' and type(properties['correlation_id']) == 'string' then
    return properties['correlation_id']
  end
  return ''
end
local function task_id(text, unwrap)
  local at = string.find(text, '"id": "', 1, true)
  if at then
    if string.byte(text, at + 43) == 34 then
      local id = string.sub(text, at + 7, at + 42)
      if not string.find(id, '"', 1, true) then return id end
    end
    local stop = string.find(text, '"', at + 7, true)
    if stop then return string.sub(text, at + 7, stop - 1) end
  end
  local ok, message = pcall(cjson.decode, text)
  if not ok then return '' end
  if unwrap then
    if type(message) ~= 'table' then return '' end
    message = message[1]
  end
  return id_of(message)
end
local result = {}
for k = 3, #KEYS do
  local parts, count = {}, 0
  local length = redis.call('LLEN', KEYS[k])
  while count < length do
    local ids = {}
    for _, text in ipairs(redis.call('LRANGE', KEYS[k], count, count + 999)) do ids[#ids + 1] = task_id(text, false) end
    parts[#parts + 1] = table.concat(ids, '\\n')
    count = count + #ids
    if #ids == 0 then break end
  end
  result[#result + 1] = {KEYS[k], table.concat(parts, '\\n'), count}
end
local reserved, since, count = {}, {}, 0
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 1000)
  cursor = page[1]
  local entries, ids, times = page[2], {}, {}
  for i = 1, #entries, 2 do
    ids[#ids + 1] = task_id(entries[i + 1], true)
    times[#times + 1] = redis.call('ZSCORE', KEYS[2], entries[i]) or ''
  end
  if #ids > 0 then
    reserved[#reserved + 1] = table.concat(ids, '\\n')
    since[#since + 1] = table.concat(times, '\\n')
    count = count + #ids
  end
until cursor == '0'
result[#result + 1] = {table.concat(reserved, '\\n'), table.concat(since, '\\n'), count}
return result
"""


def queue_names(client: redis.Redis) -> list[str]:
    """The queues kombu has bound in this database (``_kombu.binding.<exchange>`` members), the default one first;
    remote-control and event queues left out (they are not task queues)."""
    names = {DEFAULT_QUEUE}
    for key in client.scan_iter(match=f"{BINDING_PREFIX}*", count=1000):
        exchange = _text(key).removeprefix(BINDING_PREFIX)
        if exchange.endswith("pidbox") or exchange.startswith("celeryev"):
            continue
        for member in client.smembers(key):
            queue = _text(member).split(PRIORITY_SEP)[-1]
            if queue and not queue.endswith("pidbox"):
                names.add(queue)
    return [DEFAULT_QUEUE, *sorted(names - {DEFAULT_QUEUE})]


def queue_keys(queues: Iterable[str]) -> list[str]:
    """Each queue's list and its priority lists (kombu's default priority steps)."""
    return [key for queue in queues for key in (queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS))]


def backlog(client: redis.Redis, queues: Sequence[str]) -> tuple[int, int]:
    """(messages waiting in the queues, messages delivered and not acknowledged), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queues):
        pipe.llen(key)
    pipe.hlen(UNACKED)
    *lengths, unacked = pipe.execute()
    return sum(lengths), int(unacked)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split(joined: bytes, count: int) -> list[str]:
    """The *count* newline-joined values of one reply element."""
    return joined.decode().split("\n") if count else []


def broker_messages(client: redis.Redis, queues: Sequence[str]) -> tuple[dict[str, int], dict[str, str],
                                                                        dict[str, float | None]]:
    """(messages per queue, id -> queue of every queued message, id -> delivery time of every unacked one)."""
    keys = queue_keys(queues)
    *lists, (reserved_joined, since_joined, reserved_count) = client.eval(
        _SNAPSHOT_LUA, 2 + len(keys), UNACKED, UNACKED_INDEX, *keys)
    counts: dict[str, int] = {}
    queued: dict[str, str] = {}
    for key, joined, count in lists:
        queue = _text(key).split(PRIORITY_SEP)[0]
        counts[queue] = counts.get(queue, 0) + count
        queued.update(dict.fromkeys(filter(None, _split(joined, count)), queue))
    reserved_ids, since = _split(reserved_joined, reserved_count), _split(since_joined, reserved_count)
    reserved = {task_id: float(at) if at else None for task_id, at in zip(reserved_ids, since, strict=True) if task_id}
    return counts, queued, reserved


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def parse_meta(raw: bytes | str) -> TaskMeta | None:
    """One ``celery-task-meta-<id>`` value, None when it is not Celery's JSON."""
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("status"), str):
        return None
    result = meta.get("result")
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    worker = meta.get("worker")
    return TaskMeta(meta["status"], exc_type if isinstance(exc_type, str) else None,
                    worker if isinstance(worker, str) else None, _epoch(meta.get("date_done")))


def task_results(client: redis.Redis, ids: Iterable[str]) -> tuple[dict[str, TaskMeta], int]:
    """The result backend's record of each of *ids* that has one, and how many ids were looked up."""
    found: dict[str, TaskMeta] = {}
    batch: list[str] = []
    looked_up = 0

    def flush() -> None:
        for task_id, raw in zip(batch, client.mget([RESULT_PREFIX + task_id for task_id in batch]), strict=True):
            if raw is not None and (meta := parse_meta(raw)) is not None:
                found[task_id] = meta
        batch.clear()

    for task_id in ids:
        batch.append(task_id)
        looked_up += 1
        if len(batch) >= MGET_BATCH:
            flush()
    if batch:
        flush()
    return found, looked_up


class BrokerInfo:
    """The broker server's identity and counters: a restart changes its run id, maxmemory eviction its counter."""

    def __init__(self, run_id: str, started: float, evicted_keys: int) -> None:
        self.run_id = run_id
        self.started = started
        self.evicted_keys = evicted_keys

    @classmethod
    def read(cls, client: redis.Redis) -> BrokerInfo:
        server_time = client.time()
        now = server_time[0] + server_time[1] / 1e6
        info = client.info("server")
        stats = client.info("stats")
        return cls(str(info["run_id"]), now - float(info["uptime_in_seconds"]), int(stats.get("evicted_keys", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started": self.started, "evicted_keys": self.evicted_keys}


def take(broker: redis.Redis, queues: Sequence[str], taken: float,
         before: BrokerInfo | None = None) -> BrokerState:
    """The broker's messages now (the checker adds the result backend's records once the ledgers say which)."""
    counts, queued, reserved = broker_messages(broker, queues)
    now = BrokerInfo.read(broker)
    restarted = before is not None and now.run_id != before.run_id
    evicted = now.evicted_keys - before.evicted_keys if before is not None and not restarted else now.evicted_keys
    return BrokerState(taken=taken, queues=counts, queued=queued, reserved=reserved,
                       broker_started=now.started if restarted else None, evicted_keys=max(evicted, 0))
