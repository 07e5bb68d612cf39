"""One rolling send-history counter: record sends as they happen, count them over any time span.

The orchestrator (frequency caps), the replay (each replayed trigger's
``sends_7d``) and the decision context of a trigger all ask the same
question of a customer's past sends: how many fell in ``[start, end)``?
:class:`SendHistory` answers it online, for a stream of decisions taken in
time order per customer; :func:`cadence.features.decision_context.decision_context`
answers it in batch, on DuckDB or Spark, for a log whose sends are all
known. The two agree (``tests/features/test_one_feature_layer.py``).

Each customer keeps its last ``memory`` sends (a ring), so a count is exact
while fewer than ``memory`` sends were recorded for the customer after the
oldest one the span needs; the default, 32, is far above any frequency cap.

Examples
--------
>>> import numpy as np
>>> h = SendHistory()
>>> h.record(np.array([0, 1]), np.array([100, 100]), channel=np.array([0, 2]))
>>> h.record(np.array([0]), np.array([200]), channel=np.array([1]))
>>> h.sends_before(np.array([0, 0, 1]), np.array([200, 201, 101]), window_s=150).tolist()
[1, 2, 1]
>>> h.count(np.array([0]), np.array([0]), np.array([1000]), channel=np.array([1])).tolist()
[1]
"""

from __future__ import annotations

import numpy as np

#: A time no span reaches: the value of an empty slot.
NEVER = np.iinfo(np.int64).min // 2
#: Sends remembered per customer by default.
MEMORY = 32


class SendHistory:
    """Each customer's last ``memory`` sends (epoch seconds and channel code), counted over spans.

    Customers are integer codes ``0..n-1``; the arrays grow to the largest
    code seen. Channel codes are the caller's (the index into
    :data:`cadence.contract.tables.CHANNELS`); ``-1`` means none.

    Parameters
    ----------
    memory
        Sends remembered per customer (the oldest is forgotten first).
    """

    def __init__(self, memory: int = MEMORY) -> None:
        self.memory = memory
        self.times = np.full((0, memory), NEVER, np.int64)
        self.channels = np.full((0, memory), -1, np.int64)
        self.recorded = np.zeros(0, np.int64)  # sends ever recorded per customer (the ring's write position)
        self._mark = np.zeros(0, np.int64)  # scratch for spotting a customer twice in one call

    def _grow(self, who: np.ndarray) -> None:
        n = int(who.max()) + 1 if len(who) else 0
        grow = n - len(self.recorded)
        if grow > 0:
            self.times = np.vstack([self.times, np.full((grow, self.memory), NEVER, np.int64)])
            self.channels = np.vstack([self.channels, np.full((grow, self.memory), -1, np.int64)])
            self.recorded = np.concatenate([self.recorded, np.zeros(grow, np.int64)])
            self._mark = np.concatenate([self._mark, np.zeros(grow, np.int64)])

    def record(self, who: np.ndarray, at: np.ndarray, channel: np.ndarray | None = None) -> None:
        """Remember sends: customer ``who[i]`` was sent a message at ``at[i]`` (on ``channel[i]``).

        A customer may appear more than once; its sends are remembered in
        the order given.
        """
        who = np.asarray(who, np.int64)
        at = np.asarray(at, np.int64)
        ch = np.full(len(who), -1, np.int64) if channel is None else np.asarray(channel, np.int64)
        self._grow(who)
        # Usually each customer appears once (a replay round, an orchestrator batch): one vectorised write.
        self._mark[who] = np.arange(len(who))
        if np.array_equal(self._mark[who], np.arange(len(who))):
            k = self.recorded[who] % self.memory
            self.times[who, k], self.channels[who, k] = at, ch
            self.recorded[who] += 1
            return
        for i in range(len(who)):  # repeats: one at a time, in order
            c = who[i]
            k = self.recorded[c] % self.memory
            self.times[c, k], self.channels[c, k] = at[i], ch[i]
            self.recorded[c] += 1

    def count(self, who: np.ndarray, start: np.ndarray, end: np.ndarray,
              channel: np.ndarray | None = None) -> np.ndarray:
        """Sends of customer ``who[i]`` in ``[start[i], end[i])`` (only on ``channel[i]`` when given), int64.

        Customers never recorded have none.
        """
        who = np.asarray(who, np.int64)
        self._grow(who)
        times = self.times[who]
        hit = (times >= np.asarray(start, np.int64)[:, None]) & (times < np.asarray(end, np.int64)[:, None])
        if channel is not None:
            hit &= self.channels[who] == np.asarray(channel, np.int64)[:, None]
        return hit.sum(axis=1).astype(np.int64)

    def sends_before(self, who: np.ndarray, at: np.ndarray, window_s: int) -> np.ndarray:
        """Sends of customer ``who[i]`` in ``[at[i] - window_s, at[i])``: the context's ``sends_7d`` at 7 days."""
        at = np.asarray(at, np.int64)
        return self.count(who, at - window_s, at)


__all__ = ["SendHistory", "NEVER", "MEMORY"]
