"""A fairness scheduler that preempts by swap (issue 15 section 2; FastSwitch's setting).

Virtual Token Counter (VTC; Sheng et al., "Fairness in Serving Large Language Models", OSDI'24):
every client has a counter of the service it received, ``w_in x prompt tokens + w_out x output
tokens`` (VTC's weights: 1 and 2); the client with the smallest counter is served first, and a
client that comes back after being idle is lifted to the smallest counter of the active clients
(it cannot bank service it did not ask for).

FastSwitch runs such a policy with priorities that change while requests run: every
``update_every`` iterations (the priority update frequency) the requests are re-ranked, and a
running request whose client now has a larger counter than a waiting or swapped one is
preempted by swap to host memory to make room for it. Frequent updates are fairer and cause more
context switches; the swap engine (``swap.SwapKVManager``) decides what a switch costs.

Clients: ``RequestTable.columns["client"]`` (e.g. the conversation id); without it every request
is its own client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from infragym.envs.serving.policies import ReplicaScheduler, register_scheduler

if TYPE_CHECKING:
    from infragym.envs.serving.simulator import Replica

# VTC's service weights (OSDI'24): output tokens cost twice input tokens.
VTC_INPUT_WEIGHT = 1.0
VTC_OUTPUT_WEIGHT = 2.0


@register_scheduler
class VTCFairScheduler(ReplicaScheduler):
    """VTC fair scheduling with periodic priority updates and swap preemption.

    Args:
        update_every: iterations between priority updates (FastSwitch's priority update
            frequency is its inverse); at an update, lower-priority running requests are
            swapped out for higher-priority waiting or swapped ones.
        input_weight, output_weight: VTC's service weights.
        max_switches: at most this many preemptions per update (bounds a burst of switches).
    """

    name = "vtc_fair"

    def __init__(
        self,
        update_every: int = 10,
        *,
        input_weight: float = VTC_INPUT_WEIGHT,
        output_weight: float = VTC_OUTPUT_WEIGHT,
        max_switches: int = 16,
    ) -> None:
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be a whole number of iterations >= 1, got {update_every!r}")
        if not (input_weight >= 0 and output_weight > 0):
            raise ValueError("VTC weights: input_weight >= 0 and output_weight > 0")
        if max_switches < 1:
            raise ValueError(f"max_switches must be >= 1, got {max_switches!r}")
        self.update_every = update_every
        self.input_weight = float(input_weight)
        self.output_weight = float(output_weight)
        self.max_switches = int(max_switches)
        self._bound = False

    def bind(self, replica: Replica) -> VTCFairScheduler:
        s = type(self)(
            self.update_every,
            input_weight=self.input_weight,
            output_weight=self.output_weight,
            max_switches=self.max_switches,
        )
        table = replica.table
        client = table.columns.get("client")
        s.client = np.arange(table.n, dtype=np.int64) if client is None else np.asarray(client, dtype=np.int64)
        if s.client.size and s.client.min() < 0:
            raise ValueError("columns['client']: client ids must be >= 0")
        n_clients = int(s.client.max()) + 1 if s.client.size else 0
        s.counter = np.zeros(n_clients)
        s.active = np.zeros(n_clients, dtype=np.int64)  # requests of each client on this replica
        s.charged = np.zeros(table.n, dtype=np.int64)  # output tokens already counted per request
        s.input_charged = np.zeros(table.n, dtype=bool)  # prompt counted (once, at first admission)
        s.last_update = 0
        s.updates = 0
        s.switches = 0
        s.spread_sum = 0.0  # sum over updates of the counter gap between active clients
        s._bound = True
        return s

    # ------------------------------------------------------------------ service accounting
    def _charge_running(self, replica: Replica) -> None:
        ids = replica.run_ids
        if not ids.size:
            return
        generated = replica.generated_running
        delta = generated - self.charged[ids]
        if np.any(delta):
            np.add.at(self.counter, self.client[ids], self.output_weight * delta)
            self.charged[ids] = generated

    def _charge_input(self, replica: Replica, rid: int) -> None:
        """VTC charges a request's prompt when it is first admitted (a re-admission after a
        preemption is not new service)."""
        if not self.input_charged[rid]:
            self.input_charged[rid] = True
            self.counter[self.client[rid]] += self.input_weight * int(replica.table.prompt[rid])

    def _priority(self, rids: np.ndarray) -> np.ndarray:
        return self.counter[self.client[rids]]

    def enqueue(self, replica: Replica, rid: int) -> None:
        c = self.client[rid]
        if self.active[c] == 0:
            live = self.active > 0
            if live.any():  # VTC's lift: no credit for time spent idle
                self.counter[c] = max(self.counter[c], float(self.counter[live].min()))
        self.active[c] += 1
        replica.waiting.append(rid)

    def on_finish(self, replica: Replica, rid: int) -> None:
        self.active[self.client[rid]] -= 1
        gen = int(replica.table.generated[rid])
        self.counter[self.client[rid]] += self.output_weight * (gen - self.charged[rid])
        self.charged[rid] = gen

    def decode_horizon(self, replica: Replica) -> int | None:
        return max(self.update_every - (replica.iterations - self.last_update), 1)

    def would_admit(self, replica: Replica) -> bool:
        waiting = replica.waiting
        if not waiting:
            return False
        if replica.iterations - self.last_update >= self.update_every:
            return True  # a priority update is due
        return replica.admissible(waiting[0])

    # ------------------------------------------------------------------ scheduling
    def _begin(self, replica: Replica) -> None:
        """Tell a swap engine when the next iteration starts and how long it computes."""
        begin = getattr(replica.kv, "begin", None)
        if begin is None:
            return
        n = replica.n
        decodes = int(np.count_nonzero(replica.prefill_left == 0)) if n else 0
        context = float(replica.ctx.sum()) if n else 0.0
        window = float(replica.cost.iteration_time(0.0, 0.0, max(decodes, 1), context)) * replica.time_scale
        begin(replica.clock, window)

    def _sort_queues(self, replica: Replica) -> None:
        for queue in (replica.waiting, replica.swapped):
            if len(queue) > 1:
                rids = np.fromiter(queue, dtype=np.int64, count=len(queue))
                order = np.argsort(self._priority(rids), kind="stable")
                queue.clear()
                queue.extend(rids[order].tolist())

    def _swap_in_one(self, replica: Replica, rid: int) -> bool:
        """Bring ``rid`` (swapped) back alone; whether it came back."""
        swapped = replica.swapped
        rest = [r for r in swapped if r != rid]
        swapped.clear()
        swapped.append(rid)
        replica.swap_in()
        back = not swapped
        swapped.clear()
        swapped.extend(rest if back else [rid, *rest])
        return back

    def _blocks_needed(self, replica: Replica, rid: int, swapped: bool) -> int:
        t = replica.table
        tokens = int(t.prompt[rid] + t.generated[rid])
        if swapped:
            return int(replica.kv.blocks_for(tokens + 1))
        return int(replica.kv.blocks_to_admit(rid, tokens, int(t.generated[rid])))

    def _update_priorities(self, replica: Replica) -> None:
        """Swap out lower-priority running requests for higher-priority waiting/swapped ones."""
        self.last_update = replica.iterations
        self.updates += 1
        live = self.active > 0
        if live.any():
            self.spread_sum += float(self.counter[live].max() - self.counter[live].min())
        candidates = [(r, True) for r in replica.swapped] + [(r, False) for r in replica.waiting]
        if not candidates or not replica.n:
            return
        self._begin(replica)
        candidates.sort(key=lambda item: self.counter[self.client[item[0]]])
        switches = 0
        for rid, is_swapped in candidates:
            if switches >= self.max_switches:
                break
            mine = self.counter[self.client[rid]]
            need = self._blocks_needed(replica, rid, is_swapped)
            if need > replica.kv.total_blocks:
                continue
            # Preempt the lowest-priority running requests while they rank below this one.
            while replica.kv.free_blocks < need and replica.n and switches < self.max_switches:
                prio = self._priority(replica.run_ids)
                worst = int(np.argmax(prio))
                if prio[worst] <= mine:
                    break
                replica.charge(replica.preempt(worst, "swap"))
                switches += 1
            if replica.kv.free_blocks < need:
                break  # nothing ranked below it is left: later candidates rank lower still
            if is_swapped:
                self._swap_in_one(replica, rid)
            elif replica.admissible(rid):
                replica.admit(rid)
                self._charge_input(replica, rid)
        self.switches += switches

    def schedule(self, replica: Replica) -> bool:
        replica.drop_timed_out()
        self._charge_running(replica)
        if replica.iterations - self.last_update >= self.update_every:
            # A priority update: re-rank the queues, switch, keep that order until the next one.
            self._sort_queues(replica)
            self._update_priorities(replica)
            self._sort_queues(replica)
        # Bring back swapped requests, then admit, in the last update's priority order, while
        # they fit (no preemption).
        if replica.swapped:
            self._begin(replica)
            replica.swap_in()
        waiting = replica.waiting
        while waiting and replica.admissible(waiting[0]):
            rid = waiting[0]
            replica.admit_head()
            self._charge_input(replica, rid)
        if waiting and not replica.n and not replica.swapped:
            head = waiting[0]
            if not replica.kv.reclaim_for(head, replica.clock):
                replica.fail(head)
                self.active[self.client[head]] -= 1
            return True
        replica.run_iteration()
        return True

    def make_room(self, replica: Replica) -> float:
        """A decode step lacks blocks: swap out the running request of the lowest priority."""
        if replica.kv.reclaim(replica.clock):
            return 0.0
        self._charge_running(replica)
        self._begin(replica)
        worst = int(np.argmax(self._priority(replica.run_ids)))
        self.switches += 1
        return replica.preempt(worst, "swap")

    def fairness(self) -> dict[str, float]:
        """Counters of this replica's scheduler: updates, switches, mean counter spread."""
        return {
            "priority_updates": float(self.updates),
            "fair_switches": float(self.switches),
            "service_spread": self.spread_sum / self.updates if self.updates else 0.0,
        }


__all__ = ["VTC_INPUT_WEIGHT", "VTC_OUTPUT_WEIGHT", "VTCFairScheduler"]
