"""Storm control and delivery bookkeeping in Redis (the broker every worker already shares).

Per destination and per window (``HEADWIND_NOTIFY_STORM_WINDOW`` seconds, 60 by default,
aligned on Redis's clock so every worker agrees), the first ``HEADWIND_NOTIFY_STORM_THRESHOLD``
distinct notices (5) are sent as usual; the later ones are *held*: counted, and the first
:data:`MAX_ITEMS` kept in a list. The delivery that holds the first one schedules one summary
task for the end of the window, which sends "N more notifications: …" once.

Every step is one Lua script, so it is atomic however many workers run:

- :meth:`Store.gate` records the decision per notice key; a redelivered task gets the same
  decision back (never counted twice, never both sent and held).
- :meth:`Store.claim` closes the window (a straggler is then sent on its own rather than
  folded into a summary that is already out) and hands the summary to one task at a time,
  for :data:`CLAIM_SECONDS`; the same task, redelivered after its worker died, takes it back
  at once, another waits, and takes over only when the claim lapses unfinished.
- :meth:`Store.finish` records that the summary (or a single delivery) is done, so a
  duplicate summary task, or a task redelivered after the fact, sends nothing.

What remains: a worker killed after the receiver accepted a message but before ``finish``
ran sends that message again when its task is redelivered (at-least-once; the JSON webhook's
``id`` lets a receiver drop the repeat).
"""

from __future__ import annotations

import json
import os
import threading

import redis
from django.conf import settings

PREFIX = "headwind:notify"
MAX_ITEMS = 20  # held notices kept for a summary's list (the count covers all of them)
CLAIM_SECONDS = 90  # above the longest countdown (45 s) plus a request (15 s)
KEEP_SECONDS = 3600  # bookkeeping outlives its window by this much
DONE_SECONDS = 600  # a notice delivered is not delivered again for this long (its key repeats)
DOWN_SECONDS = 30  # after a time-out, a destination is left alone this long

_GATE = """
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if prior then return prior end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'late' end
local decision = 'send'
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  if redis.call('INCR', KEYS[3]) == 1 then decision = 'first' else decision = 'held' end
  if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[4]) then redis.call('RPUSH', KEYS[2], ARGV[3]) end
end
redis.call('HSET', KEYS[1], ARGV[1], decision)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return decision
"""

_CLAIM = """
local done = redis.call('GET', KEYS[3])
if done then return {'done', done} end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return {'busy', redis.call('PTTL', KEYS[2])} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {'go', tonumber(redis.call('GET', KEYS[4]) or '0'), redis.call('LRANGE', KEYS[5], 0, -1)}
"""

_FINISH = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

_BEGIN = """
local state = redis.call('GET', KEYS[1])
if state and state ~= ARGV[1] then return state end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 'go'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class Store:
    """The Redis side of notifications; one per process (``Store.shared()``)."""

    _lock = threading.Lock()
    _shared: tuple[int, str, Store] | None = None

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._gate = client.register_script(_GATE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._begin = client.register_script(_BEGIN)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def shared(cls) -> Store:
        url = settings.REDIS_URL
        with cls._lock:
            cached = cls._shared
            if cached is None or cached[0] != os.getpid() or cached[1] != url:
                client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5,
                                              health_check_interval=25)
                cls._shared = cached = (os.getpid(), url, cls(client))
            return cached[2]

    def now(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1e6

    @staticmethod
    def _window_keys(dest_key: str, start: int) -> list[str]:
        base = f"{PREFIX}:storm:{dest_key}:{start}"
        return [f"{base}:seen", f"{base}:items", f"{base}:held", f"{base}:closed",
                f"{base}:claim", f"{base}:done"]

    # --- storm window ----------------------------------------------------------------------

    def gate(self, dest_key: str, notice_key: str, item: dict, *, threshold: int,
             window: int) -> tuple[str, int]:
        """('send' | 'first' | 'held' | 'late', window start). ``first``: this notice is the
        first held in its window, and its delivery schedules the summary."""
        start = int(self.now() // window * window)
        seen, items, held, closed, _, _ = self._window_keys(dest_key, start)
        decision = self._gate(keys=[seen, items, held, closed],
                              args=[notice_key, threshold, json.dumps(item), MAX_ITEMS,
                                    window + KEEP_SECONDS])
        return decision.decode() if isinstance(decision, bytes) else decision, start

    def claim(self, dest_key: str, start: int, token: str, *,
              claim_seconds: int = CLAIM_SECONDS) -> tuple[str, int, list[dict]]:
        """('go', held count, items) for the owner; ('busy', ms left on the other's claim,
        []); ('done', 0, []) when the summary was already sent or given up."""
        _, items, held, closed, claim, done = self._window_keys(dest_key, start)
        answer = self._claim(keys=[closed, claim, done, held, items],
                             args=[token, claim_seconds, KEEP_SECONDS])
        state = answer[0].decode()
        if state == "go":
            return state, int(answer[1]), [json.loads(raw) for raw in answer[2]]
        if state == "busy":
            return state, max(0, int(answer[1])), []
        return state, 0, []

    def finish(self, dest_key: str, start: int, token: str, outcome: str) -> None:
        *_, claim, done = self._window_keys(dest_key, start)
        self._finish(keys=[claim, done], args=[token, outcome, KEEP_SECONDS])

    # --- one delivery ----------------------------------------------------------------------

    def _delivery_key(self, dest_key: str, notice_key: str) -> str:
        return f"{PREFIX}:delivery:{dest_key}:{notice_key}"

    def begin(self, dest_key: str, notice_key: str, owner: str) -> str:
        """'go' when this task may send (nobody else is, and it was not delivered lately);
        otherwise the state found ('sent', 'failed' or another task's mark)."""
        state = self._begin(keys=[self._delivery_key(dest_key, notice_key)],
                            args=[f"sending:{owner}", CLAIM_SECONDS])
        return state.decode() if isinstance(state, bytes) else state

    def release(self, dest_key: str, notice_key: str, owner: str) -> None:
        """Give the delivery up for now (it will be retried)."""
        self._release(keys=[self._delivery_key(dest_key, notice_key)], args=[f"sending:{owner}"])

    def done(self, dest_key: str, notice_key: str, outcome: str) -> None:
        self.client.set(self._delivery_key(dest_key, notice_key), outcome, ex=DONE_SECONDS)

    # --- circuit breaker -------------------------------------------------------------------

    def trip(self, dest_key: str, seconds: int = DOWN_SECONDS) -> None:
        self.client.set(f"{PREFIX}:down:{dest_key}", "1", ex=seconds)

    def down_for(self, dest_key: str) -> float:
        """Seconds left during which ``dest_key`` is left alone (0: go ahead)."""
        left = self.client.pttl(f"{PREFIX}:down:{dest_key}")
        return max(0.0, left / 1000) if left and left > 0 else 0.0
