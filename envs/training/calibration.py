"""Published facts the training-cluster simulator is calibrated to, one constant each, cited.

Sources (see ``/docs/components/training_reliability.md``):

- [Llama3] Dubey et al., "The Llama 3 Herd of Models", 2024, sec. 3.3.4 (Table 5: 466
  interruptions in 54 days of 405B pre-training on 16,384 H100, 419 unexpected, by cause) and
  sec. 3.3.1-3.3.2 (Tectonic storage 2 TB/s sustained; TP 8 / PP 16; 16M-token batches;
  38-43% BF16 MFU, Table 4).
- [MegaScale] Jiang et al., NSDI'24: 55.2% MFU on 12,288 GPUs; communicator init 1,047 s -> 5 s
  on 2,048 GPUs; detection + diagnosis < 10 min, resume < 15 min; two-stage checkpoints.
- [C4] Dong et al., "Boosting Large-scale Parallel Training Efficiency with C4", 2024: detection
  within a few iterations instead of the ~10-minute NCCL watchdog; ~30% less error overhead.
- [DataStates] Maurya et al., HPDC'24: lazy GPU->host copy overlapped with forward/backward.
- [InMemFT] in-memory snapshots + erasure coding across nodes (Gemini-style), > 14x faster save.
- [CheckFree] Blagoev et al., 2025: neighbour-average stage rebuild; per-iteration failure
  probabilities 0.0009/0.002/0.004/0.01 for 5/10/16/33% per hour.
- [AIReSim] bad-node heterogeneity defaults: 15% of servers fail 5x as often; auto repair 2 h;
  stragglers ~10% slower.
- [Schroeder06] Schroeder & Gibson, DSN'06: time between failures on HPC nodes is Weibull with
  shape 0.7-0.8 (decreasing hazard).
- [ZeRO] Rajbhandari et al., SC'20: mixed-precision Adam keeps 16 bytes of state per parameter.

Values marked *assumption* have no published number; each says what it stands for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOUR = 3600.0
DAY = 24 * HOUR

# ---------------------------------------------------------------- Llama 3 405B failures [Llama3]
LLAMA3_GPUS = 16_384
LLAMA3_DAYS = 54.0
LLAMA3_PLANNED = 47  # planned interruptions (maintenance, firmware/config upgrades)
# Table 5: root causes of the 419 unexpected interruptions. The table's tail ("others, 2 each")
# is folded into "other" (10 = 419 minus the named ones).
LLAMA3_CAUSES: dict[str, int] = {
    "gpu": 148,
    "hbm3": 72,
    "software": 54,
    "network": 35,  # network switch / cable
    "host_maintenance": 32,  # unplanned host maintenance
    "gpu_sram": 19,
    "gpu_system_processor": 17,
    "nic": 7,
    "nccl_watchdog": 7,
    "silent_data_corruption": 6,
    "thermal": 6,
    "ssd": 3,
    "psu": 3,
    "other": 10,
}
assert sum(LLAMA3_CAUSES.values()) == 419
CAUSES: tuple[str, ...] = tuple(LLAMA3_CAUSES)
CAUSE_PROBS = np.array([LLAMA3_CAUSES[c] for c in CAUSES], dtype=float) / 419.0
# Causes after which the node keeps working (its host memory survives and no node needs evicting):
# a crashed process or a flapping switch. Every other cause takes the node out of the job.
NODE_SURVIVING_CAUSES = frozenset({"software", "nccl_watchdog", "network"})
CAUSE_LOSES_NODE = np.array([c not in NODE_SURVIVING_CAUSES for c in CAUSES])
# Unexpected interruptions per GPU-second at Llama 3's scale: 419 in 54 days on 16,384 GPUs
# (job MTBI 3.09 h, PAPERS.md).
FAILURES_PER_GPU_S = 419 / (LLAMA3_GPUS * LLAMA3_DAYS * DAY)
PLANNED_PER_GPU_S = LLAMA3_PLANNED / (LLAMA3_GPUS * LLAMA3_DAYS * DAY)
LLAMA3_ETTR = 0.90  # "> 90% effective training time" [Llama3 sec. 3.3.4]

# ---------------------------------------------------------------- heterogeneity [AIReSim]
BAD_NODE_FRACTION = 0.15
BAD_NODE_MULTIPLIER = 5.0
AUTO_REPAIR_S = 2 * HOUR
STRAGGLER_SPEED = 1 / 1.1  # a straggling host is ~10% slower, and the synchronous job with it
# *assumption*: straggler episodes start about once a day per 16,384 GPUs (no published rate).
STRAGGLERS_PER_GPU_S = 1.0 / (LLAMA3_GPUS * DAY)
WEIBULL_SHAPE = 0.75  # [Schroeder06] 0.7-0.8

# ---------------------------------------------------------------- the model and the machine
H100_BF16_FLOPS = 989e12  # dense BF16 peak of an H100 SXM (NVIDIA datasheet)
LLAMA3_MFU = 0.41  # [Llama3] Table 4: 38-43%
MEGASCALE_MFU = 0.552  # [MegaScale] 55.2% on 12,288 GPUs
BYTES_PER_PARAM_STATE = 16  # [ZeRO] bf16 weights + fp32 master, momentum, variance
STORAGE_WRITE_BPS = 2e12  # [Llama3] Tectonic: 2 TB/s sustained (7 TB/s peak)
STORAGE_READ_BPS = 2e12  # same sustained figure for reads
PCIE_D2H_BPS = 25e9  # pinned GPU->host copy per GPU, PCIe Gen5 x16 achieved (~half of 64 GB/s)
NIC_BPS = 50e9  # 400 Gb/s RoCE NIC per GPU [Llama3 sec. 3.3.1]
FWD_BWD_SHARE = 0.9  # *assumption*: forward+backward take ~90% of an iteration (optimizer the rest)

# ---------------------------------------------------------------- detection and restart
WATCHDOG_S = 600.0  # NCCL watchdog ~10 min (PAPERS.md)
C4_DETECT_ITERATIONS = 3  # [C4] "within a few iterations"
# *assumption*: C4's detector raises one false alarm per week of a 16,384-GPU job.
C4_FALSE_ALARMS_PER_GPU_S = 1.0 / (LLAMA3_GPUS * 7 * DAY)
# [MegaScale] detection + diagnosis < 10 min: heartbeat/RDMA-metric detection (*assumption*: 60 s)
# then stop-and-diagnose tests (*assumption*: 240 s).
MEGASCALE_DETECT_S = 60.0
MEGASCALE_DIAGNOSE_S = 240.0
EVICT_S = 120.0  # *assumption*: swap a spare node in through the scheduler
REBOOT_S = 300.0  # *assumption*: reset/reboot a node to restart it in place
# *assumption*: relaunch of the job's processes (scheduling, container start, imports); with
# detection + diagnosis this keeps MegaScale's resume under 15 minutes.
RELAUNCH_S = 120.0
COMM_INIT_FAST_S_2048 = 5.0  # [MegaScale] optimised communicator init on 2,048 GPUs
COMM_INIT_SLOW_S_2048 = 1047.0  # [MegaScale] before the optimisation
RESHARD_S = 60.0  # *assumption*: repartition the data-parallel groups to shrink the job

# ---------------------------------------------------------------- erasure coding [InMemFT]
EC_DATA_SHARDS = 4  # *assumption*: k = 4 data shards
EC_PARITY_SHARDS = 1  # m = 1 parity shard: any 1 of 5 nodes may be lost
INMEM_REMOTE_EVERY = 10  # *assumption*: every 10th snapshot is also persisted to remote storage

# ---------------------------------------------------------------- CheckFree [CheckFree]
CHECKFREE_HOURLY_TO_ITERATION = {0.05: 0.0009, 0.10: 0.002, 0.16: 0.004, 0.33: 0.01}
# *assumption* (the paper's loss curves are not reproduced here): after a neighbour-average
# rebuild the loss needs ~10 extra iterations to return to its pre-failure value for a middle
# stage; CheckFree+ rebuilding an edge stage from a copied embedding needs ~20.
CHECKFREE_PENALTY_ITERATIONS = 10
CHECKFREE_PLUS_EDGE_PENALTY_ITERATIONS = 20
# *assumption*: CheckFree+'s out-of-order pipelining costs ~3% per iteration.
CHECKFREE_PLUS_OVERHEAD = 0.03
# Redundant computation (Bamboo-style baseline of the paper): every stage also computes its
# neighbour's layers; *assumption*: ~1.5x iteration time when the network is the bottleneck.
REDUNDANT_COMPUTE_OVERHEAD = 0.5


@dataclass(frozen=True)
class JobSpec:
    """A training job: its size, parallelism and per-iteration cost (a roofline at a given MFU).

    Defaults are Llama 3 405B's pre-training job [Llama3]: 16,384 H100, TP 8, PP 16, DP 128,
    16M tokens per iteration at 41% MFU (~5.9 s per iteration).
    """

    n_gpus: int = LLAMA3_GPUS
    tensor_parallel: int = 8
    pipeline_parallel: int = 16
    params: float = 405e9
    tokens_per_iteration: float = 16e6
    mfu: float = LLAMA3_MFU
    gpus_per_node: int = 8

    def __post_init__(self) -> None:
        if self.n_gpus <= 0 or self.n_gpus % self.gpus_per_node:
            raise ValueError(f"n_gpus must be a positive multiple of {self.gpus_per_node}, got {self.n_gpus}")
        if self.n_gpus % (self.tensor_parallel * self.pipeline_parallel):
            raise ValueError(
                f"n_gpus {self.n_gpus} is not divisible by TP x PP = {self.tensor_parallel * self.pipeline_parallel}"
            )
        if not 0 < self.mfu <= 1:
            raise ValueError(f"mfu must be in (0, 1], got {self.mfu}")

    @property
    def n_nodes(self) -> int:
        return self.n_gpus // self.gpus_per_node

    @property
    def data_parallel(self) -> int:
        return self.n_gpus // (self.tensor_parallel * self.pipeline_parallel)

    @property
    def step_s(self) -> float:
        """Seconds per iteration: 6 x params x tokens FLOPs at ``mfu`` of the GPUs' peak."""
        return 6 * self.params * self.tokens_per_iteration / (self.n_gpus * H100_BF16_FLOPS * self.mfu)

    @property
    def state_bytes(self) -> float:
        """Bytes of a full checkpoint (weights + optimizer state)."""
        return BYTES_PER_PARAM_STATE * self.params

    @property
    def failure_rate_s(self) -> float:
        """Unexpected interruptions per second of the whole job (Llama 3's rate per GPU)."""
        return FAILURES_PER_GPU_S * self.n_gpus

    @property
    def mtbi_s(self) -> float:
        return 1.0 / self.failure_rate_s

    def comm_init_s(self, *, fast: bool) -> float:
        """Communicator initialisation, scaled linearly in GPUs from MegaScale's 2,048-GPU figures."""
        base = COMM_INIT_FAST_S_2048 if fast else COMM_INIT_SLOW_S_2048
        return base * self.n_gpus / 2048


def young_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Young's first-order optimum T* = sqrt(2 C M) (compute time between checkpoints)."""
    return math.sqrt(2.0 * checkpoint_s * mtbf_s)


def daly_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Daly's higher-order optimum (FGCS 2006, eq. 37): for C < 2M,
    T = sqrt(2 C M) [1 + sqrt(C / 2M) / 3 + C / (18 M)] - C; else T = M."""
    if checkpoint_s >= 2 * mtbf_s:
        return mtbf_s
    ratio = checkpoint_s / (2 * mtbf_s)
    return math.sqrt(2 * checkpoint_s * mtbf_s) * (1 + math.sqrt(ratio) / 3 + ratio / 9) - checkpoint_s
