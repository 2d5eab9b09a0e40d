"""Unhealthy-node simulator: events, latent root causes, potential outcomes, the legacy policy.

Causal structure (a DAG; every arrow is implemented below, nothing else is)::

    node context (SKU, age, region, spare capacity, VM mix, utilisation, hour)
        |            \
        |             v
        |         latent frailty --> prior incidents (observed)
        v             |
    fault signal -----+--> latent root cause --> heartbeat, error counts (observed)
    (observed)                   |
                                 v
    potential outcomes  <--  root cause, context, action
    action  <--  legacy policy (rules on fault signal, heartbeat, error counts, VM mix
                                + random deviations)

- The root cause is never observed. It is one of ``ROOT_CAUSES``: a transient glitch that
  heals by itself, a host software fault that a reboot fixes, a hung device (firmware) that a
  power-cycle fixes, or a persistent hardware fault that needs a repair. Its probabilities are
  a softmax of the fault signal (the monitor's category), the latent frailty (old nodes of old
  SKUs relapse), prior incidents, utilisation and the hour; the heartbeat and the error counts
  are then drawn given the root cause, so they are evidence about it.
- The oracle acts on ``EventBatch.cause_probs``: the posterior of the root cause given the
  observed signals *and the latent frailty*, so it knows slightly more than any learner.
- Confounding: the legacy policy acts on the same signals (fault category, heartbeat, error
  counts) that predict the root cause and hence the outcomes, so a naive comparison of logged
  outcomes by action is biased. Every action keeps a positive propensity (``exploration``).
- Potential outcomes, per event and action: mean VM downtime (minutes per VM on the node),
  whether any VM was interrupted (restarted, redeployed or crashed), and resource cost
  (node-hours of capacity out of service). All actions of one event share one draw of the
  root cause and of the durations (common random numbers), so they are coherent.

Sources of constants (one comment each, where used):
- Azure service healing moves VMs to a healthy host "usually within ~15 min"
  (Deoxys, SoCC'24, arXiv 2410.17709, background section; ../shared/PAPERS.md).
- Live migration pauses a VM for seconds (Azure maintenance documentation: "typically no
  more than 5 seconds"); we use 5 s.
- Repair durations: automatic repair 2 h, manual repair 2 days (AIReSim defaults, quoted in
  ../shared/PAPERS.md, training-cluster calibration).
- Everything marked "assumption" is ours, chosen for plausibility, not taken from a paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ACTIONS: tuple[str, ...] = (
    "observe",
    "soft_reboot",
    "power_cycle",
    "live_migrate_repair",
    "service_heal",
    "repair",
)
ROOT_CAUSES: tuple[str, ...] = ("self_heal", "host_software", "firmware_hang", "persistent_hw")
SKUS: tuple[str, ...] = ("gen5", "gen6", "gen7", "gen8")
FAULT_SIGNALS: tuple[str, ...] = ("disk", "memory_ecc", "nic", "host_os", "power_thermal", "unknown")
REGIONS: tuple[str, ...] = ("us_east", "us_west", "eu_north", "eu_west", "asia_east", "asia_south")
OUTCOMES: tuple[str, ...] = ("downtime_min", "interrupted", "cost_node_hours")

NUMERIC_FEATURES: tuple[str, ...] = (
    "node_age_days",
    "heartbeat_lost",
    "error_count_1h",
    "error_count_24h",
    "prior_incidents_30d",
    "num_vms",
    "live_migratable_share",
    "mean_vm_cores",
    "large_vm_share",
    "cpu_utilisation",
    "memory_utilisation",
    "cluster_free_capacity",
    "hour_of_day",
)
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {
    "sku": SKUS,
    "fault_signal": FAULT_SIGNALS,
    "region": REGIONS,
}
FEATURES: tuple[str, ...] = tuple(CATEGORICAL_FEATURES) + NUMERIC_FEATURES

# --- durations (minutes) and repair times (hours) -------------------------------------------
OBSERVE_WINDOW_MIN = 15.0  # assumption: one watchdog period before escalating
SERVICE_HEAL_MIN = 15.0  # Azure service healing "usually within ~15 min" (Deoxys background)
LIVE_MIGRATION_BLACKOUT_MIN = 5.0 / 60.0  # Azure docs: live migration pause <= ~5 s
HOST_REBOOT_BASE_MIN = 8.0  # assumption: host OS reboot + VM restart, grows with VM count
POWER_CYCLE_EXTRA_MIN = 9.0  # assumption: BIOS/POST and BMC power sequencing on top of a reboot
RECURRENCE_DETECT_MIN = 10.0  # assumption: heartbeat watchdog detects a relapse (~NCCL-like 10 min)
AUTO_REPAIR_H = 2.0  # AIReSim default automatic repair, 2 h
MANUAL_REPAIR_H = 48.0  # AIReSim default manual repair, 2 days
TRIAGE_H = 1.0  # assumption: reboot + health checks before a service-healed node returns
DIAGNOSTICS_H = 24.0  # assumption: out-for-repair diagnostics when no part is replaced
DEGRADED_WEIGHT = 0.3  # assumption: a degraded (not dead) node costs 30% of a VM-minute per minute

# Root-cause prior per fault signal, as logits vs host_software (assumption, ordered so that
# disk/ECC point to hardware, host_os to software, NIC/power to firmware hangs).
_CAUSE_LOGITS_BY_SIGNAL = np.array(
    [
        # self_heal, host_software, firmware_hang, persistent_hw
        [-0.5, 0.0, -0.3, 1.3],  # disk
        [-0.7, 0.0, -0.8, 1.5],  # memory_ecc
        [0.3, 0.0, 1.2, 0.2],  # nic
        [0.2, 0.0, -1.0, -1.2],  # host_os
        [-0.2, 0.0, 1.0, 0.6],  # power_thermal
        [0.6, 0.0, 0.2, 0.2],  # unknown
    ]
)
# Probability that the heartbeat is lost, by root cause (assumption).
_HEARTBEAT_LOST_BY_CAUSE = np.array([0.35, 0.6, 0.75, 0.45])
# Mean errors in the last hour, by root cause (assumption).
_ERRORS_1H_BY_CAUSE = np.array([0.6, 2.0, 3.0, 5.0])
# Mean further errors in the 23 h before that, by root cause (assumption).
_ERRORS_24H_EXTRA_BY_CAUSE = np.array([1.0, 3.0, 4.0, 12.0])


def legacy_rule(features: pd.DataFrame) -> np.ndarray:
    """The legacy runbook's action index per event (without exploration).

    Rules on the same signals that drive the outcomes (hence the confounding): storage/memory
    faults with many errors go to repair; dead hosts with OS/unknown signals are rebooted;
    NIC/power faults are power-cycled; quiet degraded hosts are observed; degraded hosts
    with mostly migratable VMs are drained by live migration; everything else is healed.
    """
    return legacy_rule_arrays(
        features["fault_signal"].astype(str).to_numpy(),
        features["heartbeat_lost"].to_numpy(),
        features["error_count_1h"].to_numpy(),
        features["error_count_24h"].to_numpy(),
        features["live_migratable_share"].to_numpy(),
    )


def legacy_rule_arrays(
    signal: np.ndarray, heartbeat_lost: np.ndarray, err1: np.ndarray, err24: np.ndarray, lm_share: np.ndarray
) -> np.ndarray:
    """:func:`legacy_rule` on the columns it reads (``signal``: fault-signal names)."""
    hb = np.asarray(heartbeat_lost) == 1
    storage_or_memory = np.isin(signal, ["disk", "memory_ecc"])
    conditions = [
        storage_or_memory & (err24 >= 10),
        hb & np.isin(signal, ["host_os", "unknown"]),
        np.isin(signal, ["nic", "power_thermal"]),
        ~hb & (err1 <= 1),
        ~hb & (lm_share >= 0.9),
    ]
    choices = [
        ACTIONS.index("repair"),
        ACTIONS.index("soft_reboot"),
        ACTIONS.index("power_cycle"),
        ACTIONS.index("observe"),
        ACTIONS.index("live_migrate_repair"),
    ]
    return np.select(conditions, choices, default=ACTIONS.index("service_heal")).astype(np.int64)


@dataclass(frozen=True)
class EventBatch:
    """A batch of unhealthy-node events: observed features and the latent root cause."""

    features: pd.DataFrame
    root_cause: np.ndarray  # int index into ROOT_CAUSES
    cause_probs: np.ndarray  # (n, 4) P(root cause | observed features and latent frailty)

    def __len__(self) -> int:
        return len(self.features)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _lognormal_mean_one(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    return rng.lognormal(-0.5 * sigma**2, sigma, size)


class UnhealthyNodeSimulator:
    """Generates unhealthy-node events and their potential outcomes under every action.

    Args:
        exploration: probability that the legacy policy deviates from its rule and picks an
            action uniformly at random (keeps every propensity >= exploration / n_actions).
        observe_window_min: how long "observe" waits before escalating.
    """

    def __init__(self, *, exploration: float = 0.15, observe_window_min: float = OBSERVE_WINDOW_MIN):
        if not 0.0 < exploration <= 1.0:
            raise ValueError(f"exploration must be in (0, 1], got {exploration}")
        if observe_window_min <= 0:
            raise ValueError(f"observe_window_min must be > 0, got {observe_window_min}")
        self.exploration = float(exploration)
        self.observe_window_min = float(observe_window_min)

    @property
    def n_actions(self) -> int:
        return len(ACTIONS)

    # ------------------------------------------------------------------ events
    def sample_events(self, n: int, rng: np.random.Generator) -> EventBatch:
        """Draw ``n`` events: context, latent root cause, then the observed signals."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        sku = rng.choice(len(SKUS), size=n, p=[0.15, 0.30, 0.35, 0.20])
        generation_age = np.array([1600.0, 1150.0, 700.0, 280.0])[sku]
        node_age_days = generation_age * _lognormal_mean_one(rng, 0.35, n)
        region = rng.integers(0, len(REGIONS), size=n)
        # Regions differ in spare capacity (assumption): tight regions heal more slowly.
        region_spare = np.array([0.10, 0.14, 0.08, 0.12, 0.06, 0.16])[region]
        cluster_free_capacity = np.clip(rng.beta(4.0, 4.0 / region_spare - 4.0), 0.005, 0.6)
        num_vms = np.clip(1 + rng.negative_binomial(3, 3.0 / 11.0, size=n), 1, 48)
        kind = rng.random(n)
        live_migratable_share = np.where(kind < 0.4, 1.0, np.where(kind < 0.55, 0.0, rng.beta(3.0, 2.0, n)))
        mean_vm_cores = np.clip(np.exp(rng.normal(np.log(6.0), 0.6, n)), 2.0, 64.0)
        large_vm_share = np.clip((np.log(mean_vm_cores) - np.log(2.0)) / np.log(32.0) + rng.normal(0, 0.08, n), 0, 1)
        cpu_utilisation = rng.beta(5.0, 3.0, n)
        memory_utilisation = np.clip(0.6 * cpu_utilisation + 0.4 * rng.beta(4.0, 3.0, n), 0, 1)
        hour_of_day = rng.integers(0, 24, size=n)
        # Node "frailty": old nodes of old SKUs relapse; it drives prior incidents and the
        # persistent-hardware probability (the same latent trait, hence correlated).
        frailty = 0.6 * np.log1p(node_age_days / 365.0) + 0.4 * (sku <= 1) + rng.normal(0, 0.4, n)
        prior_incidents_30d = rng.poisson(np.exp(-1.2 + 0.9 * frailty))

        fault_signal = rng.choice(len(FAULT_SIGNALS), size=n, p=[0.14, 0.16, 0.12, 0.30, 0.08, 0.20])
        logits = _CAUSE_LOGITS_BY_SIGNAL[fault_signal].copy()
        logits[:, 3] += 0.9 * frailty - 0.3 + 0.25 * np.minimum(prior_incidents_30d, 4)
        logits[:, 0] += 0.4 * (hour_of_day >= 22) - 0.3 * (cpu_utilisation > 0.8)
        logits[:, 1] += 0.5 * (cpu_utilisation > 0.75) + 0.3 * (memory_utilisation > 0.8)
        cause_prior = _softmax(logits)
        root_cause = (rng.random(n)[:, None] > np.cumsum(cause_prior, axis=1)).sum(axis=1)
        root_cause = np.minimum(root_cause, len(ROOT_CAUSES) - 1)

        heartbeat_lost = (rng.random(n) < _HEARTBEAT_LOST_BY_CAUSE[root_cause]).astype(np.int64)
        error_count_1h = rng.poisson(_ERRORS_1H_BY_CAUSE[root_cause] * (0.5 + cpu_utilisation))
        error_count_24h = error_count_1h + rng.poisson(
            _ERRORS_24H_EXTRA_BY_CAUSE[root_cause] * (0.7 + 0.3 * frailty.clip(0, None))
        )

        features = pd.DataFrame(
            {
                "sku": pd.Categorical.from_codes(sku, SKUS),
                "fault_signal": pd.Categorical.from_codes(fault_signal, FAULT_SIGNALS),
                "region": pd.Categorical.from_codes(region, REGIONS),
                "node_age_days": node_age_days.astype(np.float64),
                "heartbeat_lost": heartbeat_lost,
                "error_count_1h": error_count_1h.astype(np.int64),
                "error_count_24h": error_count_24h.astype(np.int64),
                "prior_incidents_30d": prior_incidents_30d.astype(np.int64),
                "num_vms": num_vms.astype(np.int64),
                "live_migratable_share": live_migratable_share.astype(np.float64),
                "mean_vm_cores": mean_vm_cores.astype(np.float64),
                "large_vm_share": large_vm_share.astype(np.float64),
                "cpu_utilisation": cpu_utilisation.astype(np.float64),
                "memory_utilisation": memory_utilisation.astype(np.float64),
                "cluster_free_capacity": cluster_free_capacity.astype(np.float64),
                "hour_of_day": hour_of_day.astype(np.int64),
            }
        )
        posterior = self._cause_posterior(
            cause_prior, heartbeat_lost, error_count_1h, error_count_24h, cpu_utilisation, frailty
        )
        return EventBatch(features=features, root_cause=root_cause, cause_probs=posterior)

    @staticmethod
    def _cause_posterior(
        prior: np.ndarray,
        heartbeat_lost: np.ndarray,
        errors_1h: np.ndarray,
        errors_24h: np.ndarray,
        cpu: np.ndarray,
        frailty: np.ndarray,
    ) -> np.ndarray:
        """P(root cause | everything the simulator knows before the outcome noise).

        Bayes' rule on the signal model: the prior (context and latent frailty) times the
        likelihood of the heartbeat and of both error counts. The oracle acts on this, so it
        knows the latent frailty that a learner only sees through age, SKU and prior incidents.
        """
        hb = _HEARTBEAT_LOST_BY_CAUSE[None, :]
        like_hb = np.where(heartbeat_lost[:, None] == 1, hb, 1.0 - hb)
        lam1 = _ERRORS_1H_BY_CAUSE[None, :] * (0.5 + cpu[:, None])
        lam24 = _ERRORS_24H_EXTRA_BY_CAUSE[None, :] * (0.7 + 0.3 * frailty.clip(0, None))[:, None]
        k1 = errors_1h[:, None]
        k24 = (errors_24h - errors_1h)[:, None]
        # Poisson log-likelihoods up to terms that do not depend on the cause.
        log_like = k1 * np.log(lam1) - lam1 + k24 * np.log(lam24) - lam24
        log_post = np.log(prior) + np.log(like_hb) + log_like
        return _softmax(log_post)

    # ------------------------------------------------------------------ outcomes
    def _durations(self, f: pd.DataFrame) -> dict[str, np.ndarray]:
        """Expected durations that depend on the context only (no root cause)."""
        n_vms = f["num_vms"].to_numpy(np.float64)
        sku_slow = np.array([1.35, 1.2, 1.05, 1.0])[f["sku"].cat.codes.to_numpy()]
        reboot = (HOST_REBOOT_BASE_MIN + 0.15 * n_vms) * sku_slow
        power_cycle = reboot + POWER_CYCLE_EXTRA_MIN * sku_slow
        free = f["cluster_free_capacity"].to_numpy(np.float64)
        # Service healing slows down when the cluster has little spare room for large VMs.
        heal = (
            SERVICE_HEAL_MIN
            * (1.0 + 1.5 * np.clip(0.08 - free, 0, None) / 0.08)
            * (1.0 + 0.6 * f["large_vm_share"].to_numpy(np.float64))
        )
        return {"reboot": reboot, "power_cycle": power_cycle, "heal": heal}

    def outcome_table(self, events: EventBatch, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Potential outcomes for every event and action.

        With ``rng``: one realisation (root cause as drawn in ``events``, random durations and
        successes). Without: the expectation given the observed features (root cause averaged
        over its posterior, durations and successes at their means).

        Returns a dict of the OUTCOMES names to arrays of shape (n, n_actions).
        """
        f = events.features
        n = len(f)
        d = self._durations(f)
        hb = f["heartbeat_lost"].to_numpy(np.float64)
        wait_weight = np.where(hb == 1, 1.0, DEGRADED_WEIGHT)
        share = f["live_migratable_share"].to_numpy(np.float64)
        n_vms = f["num_vms"].to_numpy(np.float64)
        non_migratable = np.round((1.0 - share) * n_vms)
        any_non_migratable = (non_migratable > 0).astype(np.float64)
        cpu = f["cpu_utilisation"].to_numpy(np.float64)
        # Live migration fails more often on busy hosts (dirty-page rate; assumption).
        lm_fail_p = np.clip(0.03 + 0.5 * np.clip(cpu - 0.75, 0, None), 0, 0.4)
        age_years = f["node_age_days"].to_numpy(np.float64) / 365.0
        manual_repair = MANUAL_REPAIR_H * (1.0 + 0.1 * age_years)
        w = self.observe_window_min

        if rng is None:
            causes = events.cause_probs
            reboot, power, heal = d["reboot"], d["power_cycle"], d["heal"]
            resolve_wait = np.full(n, 0.55 * w)  # mean of U(0.1 w, w)
            reboot_fixes_sw = np.full(n, 0.92)
            power_fixes_fw = np.full(n, 0.85)
            lm_fail = lm_fail_p
            triage_finds_hw = np.full(n, 0.6)
        else:
            causes = np.eye(len(ROOT_CAUSES))[events.root_cause]
            reboot = d["reboot"] * _lognormal_mean_one(rng, 0.25, n)
            power = d["power_cycle"] * _lognormal_mean_one(rng, 0.25, n)
            heal = d["heal"] * _lognormal_mean_one(rng, 0.35, n)
            resolve_wait = rng.uniform(0.1 * w, w, n)
            reboot_fixes_sw = (rng.random(n) < 0.92).astype(np.float64)
            power_fixes_fw = (rng.random(n) < 0.85).astype(np.float64)
            lm_fail = (rng.random(n) < lm_fail_p).astype(np.float64)
            triage_finds_hw = (rng.random(n) < 0.6).astype(np.float64)

        relapse = RECURRENCE_DETECT_MIN + heal  # a relapse is detected, then VMs are healed
        # Outcome per (cause, action): arrays of shape (n,). Index: [cause][action].
        down = np.zeros((n, len(ROOT_CAUSES), len(ACTIONS)))
        intr = np.zeros_like(down)
        cost = np.zeros_like(down)
        S, SW, FW, HW = range(4)
        OBS, RB, PC, LM, SH, RP = range(6)

        # observe: wait; a glitch heals by itself, anything else escalates after the window
        # (legacy runbook: reboot for software, heal for hardware).
        down[:, S, OBS] = wait_weight * resolve_wait
        down[:, SW, OBS] = wait_weight * w + reboot
        down[:, FW, OBS] = wait_weight * w + reboot + heal
        down[:, HW, OBS] = wait_weight * w + heal
        intr[:, SW:, OBS] = 1.0
        cost[:, S, OBS] = resolve_wait / 60.0
        cost[:, SW, OBS] = (w + reboot) / 60.0
        cost[:, FW, OBS] = (w + reboot) / 60.0 + AUTO_REPAIR_H
        cost[:, HW, OBS] = w / 60.0 + manual_repair

        # soft reboot of the host OS: fixes software faults (92%); a hung device or broken
        # hardware relapses and the VMs are healed after all.
        down[:, S, RB] = reboot
        down[:, SW, RB] = reboot + (1.0 - reboot_fixes_sw) * relapse
        down[:, FW, RB] = reboot + relapse
        down[:, HW, RB] = reboot + relapse
        intr[:, :, RB] = 1.0
        cost[:, S, RB] = reboot / 60.0
        cost[:, SW, RB] = reboot / 60.0 + (1.0 - reboot_fixes_sw) * AUTO_REPAIR_H
        cost[:, FW, RB] = reboot / 60.0 + AUTO_REPAIR_H
        cost[:, HW, RB] = reboot / 60.0 + manual_repair

        # hard power-cycle: also clears hung devices (85%), costs longer than a reboot.
        down[:, S, PC] = power
        down[:, SW, PC] = power
        down[:, FW, PC] = power + (1.0 - power_fixes_fw) * relapse
        down[:, HW, PC] = power + relapse
        intr[:, :, PC] = 1.0
        cost[:, S, PC] = power / 60.0
        cost[:, SW, PC] = power / 60.0
        cost[:, FW, PC] = power / 60.0 + (1.0 - power_fixes_fw) * AUTO_REPAIR_H
        cost[:, HW, PC] = power / 60.0 + manual_repair

        # live-migrate the migratable VMs, heal the rest, send the node to repair. Needs a
        # responsive host: with a lost heartbeat every VM is healed after a failed attempt.
        lm_ok = (1.0 - hb) * (1.0 - lm_fail)
        migrated_down = share * LIVE_MIGRATION_BLACKOUT_MIN + (1.0 - share) * heal
        failed_down = 5.0 + heal  # assumption: 5 min lost on the failed migration attempt
        lm_down = lm_ok * migrated_down + (1.0 - lm_ok) * failed_down
        lm_intr = 1.0 - lm_ok * (1.0 - any_non_migratable)
        migration_hours = (0.5 + 0.02 * n_vms * f["mean_vm_cores"].to_numpy(np.float64)) / 60.0
        down[:, :, LM] = lm_down[:, None]
        intr[:, :, LM] = lm_intr[:, None]
        cost[:, :HW, LM] = (migration_hours + DIAGNOSTICS_H)[:, None]
        cost[:, HW, LM] = migration_hours + manual_repair

        # service-heal: redeploy every VM elsewhere; the node is rebooted and returns after
        # triage. Triage misses 40% of persistent faults: the node relapses under its next
        # tenants (counted here: it is this incident's downtime).
        down[:, :, SH] = heal[:, None]
        down[:, HW, SH] = heal + (1.0 - triage_finds_hw) * relapse
        intr[:, :, SH] = 1.0
        cost[:, :HW, SH] = TRIAGE_H
        cost[:, HW, SH] = TRIAGE_H + manual_repair + (1.0 - triage_finds_hw) * (w / 60.0)

        # out for repair: redeploy every VM (forced evacuation, 10% slower), full diagnostics.
        down[:, :, RP] = 1.1 * heal[:, None]
        intr[:, :, RP] = 1.0
        cost[:, :HW, RP] = DIAGNOSTICS_H
        cost[:, HW, RP] = manual_repair

        weights = causes[:, :, None]
        return {
            "downtime_min": (weights * down).sum(axis=1),
            "interrupted": (weights * intr).sum(axis=1),
            "cost_node_hours": (weights * cost).sum(axis=1),
        }

    # ------------------------------------------------------------------ legacy policy
    def legacy_rule(self, features: pd.DataFrame) -> np.ndarray:
        """The legacy runbook's action per event (without exploration)."""
        return legacy_rule(features)

    def legacy_propensities(self, features: pd.DataFrame) -> np.ndarray:
        """P(action | features) of the logged legacy policy, shape (n, n_actions)."""
        rule = self.legacy_rule(features)
        p = np.full((len(features), self.n_actions), self.exploration / self.n_actions)
        p[np.arange(len(features)), rule] += 1.0 - self.exploration
        return p

    def sample_legacy_actions(self, features: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        rule = self.legacy_rule(features)
        explore = rng.random(len(features)) < self.exploration
        random_action = rng.integers(0, self.n_actions, size=len(features))
        return np.where(explore, random_action, rule).astype(np.int64)
