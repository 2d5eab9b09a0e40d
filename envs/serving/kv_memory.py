"""KV memory managers of the memory study (issue 15 section 1): vLLM's paged blocks at the sizes
the vAttention paper compares, and vAttention's virtually contiguous buffers.

- Paged (vLLM): blocks of ``block_size`` tokens (16 by default; 32-256 are the block sizes of
  the FlashAttention-style paged kernels; the vAttention paper's paged-FlashAttention baseline
  uses 256 and FlashInfer 16; PAPERS.md). ``PagedKVManager`` with ``ReplicaConfig.block_size``.
- vAttention (ASPLOS'25; PAPERS.md): each request reserves a virtual buffer sized for the
  maximum context; physical pages (64 KB, 128 KB, 256 KB or 2 MB) are mapped on demand per
  layer and per K/V, and unmapped at once when the request completes (eager reclamation).
  ``tokens_per_page`` = page bytes / (kv_heads per GPU x head_dim x bytes per element), so the
  internal fragmentation is the unused tail of the last page of every layer's K and V: the
  accounting is paged with a block of ``tokens_per_page`` tokens (all layers grow in lockstep),
  which is how the kernel's ``KVManager`` accounts (the replica's ``block_size`` is the page's
  tokens). The contiguous buffer changes the swap: one copy per layer and K/V per request
  instead of one per block.

Page mapping time: mapping a physical page into a request's virtual buffer (CUDA VMM
``cuMemMap`` + ``cuMemSetAccess`` of a pre-created physical page, or vAttention's driver calls for
pages below 2 MB) costs ``map_s_per_page`` per page on each GPU (the GPUs of a tensor-parallel replica map in
parallel). ``background=False``: every page is mapped on the critical path, before the iteration
that needs it. ``background=True`` (vAttention's design): decode growth is predictable, so a
background thread maps the next iteration's pages while the current one computes (hidden);
a newly admitted prompt's pages are still mapped before its prefill. Unmapping (eager
reclamation on completion) is off the critical path.

Attention kernels (kept apart from the memory effects; ``contiguous_kernels``): the kernel's cost
model is calibrated on vLLM, whose decode attention is the paged kernel. vLLM's paper (Kwon et
al., SOSP'23, section 7.1) measures its PagedAttention decode kernel at 20-26% higher latency than
FasterTransformer's contiguous kernel: a contiguous buffer (vAttention runs unmodified
FlashAttention kernels) reads the KV cache in 1 / 1.23 of the time (the midpoint). Prefill: vLLM
has no prefill kernel of its own and runs FlashAttention's (vAttention paper, section 7.1), so the
prefill factor stays 1; the paper's prefill gains (up to 3.92x vs paged FlashAttention/FlashInfer
with chunked prefill) are end-to-end measurements, not a per-kernel factor we could apply.
"""

from __future__ import annotations

from typing import Any

from infragym.envs.serving.hardware import BYTES_BF16, MODELS, ModelSpec
from infragym.envs.serving.kv import SWAP_COPY_OVERHEAD_S, KVManager, register_kv_manager

# Page sizes vAttention supports (below 2 MB with its modified driver; PAPERS.md).
VATTENTION_PAGE_BYTES = {"64kb": 64 * 1024, "128kb": 128 * 1024, "256kb": 256 * 1024, "2mb": 2 * 1024 * 1024}
# Seconds to map one physical page on one GPU: cuMemMap (1.45 us) + cuMemSetAccess (35.99 us),
# the averages of a public CUDA VMM benchmark on an A100 with 2 MB pages (kvcached's bench_vmm,
# README "Sample Output on A100"). The physical handles (cuMemCreate, ~193 us) are created ahead
# of time (a pool), so they are not on the path. Assumption: the same per-page cost for the
# 64-256 KB pages of vAttention's driver (no published figure found); the vAttention paper's own
# per-API table could not be retrieved here.
MAP_S_PER_PAGE = 37.4e-6
# Decode attention of a contiguous KV buffer relative to vLLM's paged kernel: PagedAttention is
# 20-26% slower than a contiguous kernel (vLLM paper, SOSP'23, section 7.1); 1 / 1.23.
CONTIGUOUS_DECODE_FACTOR = 1 / 1.23
# Block sizes of the paged study (vLLM's 16; the paged FlashAttention kernels' 32-256).
PAGED_BLOCK_SIZES = (16, 32, 64, 128, 256)


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each GPU holds: kv_heads / tp, or one replicated head when tp exceeds them."""
    return max(model.kv_heads // tp, 1)


def tokens_per_page(page_bytes: int, model: ModelSpec | str, tp: int = 1, bytes_per_element: int = BYTES_BF16) -> int:
    """Tokens of one layer's K (or V) that a physical page holds on one GPU (vAttention):
    page bytes / (kv_heads / tp x head_dim x bytes per element). 2 MB of Llama-3-8B's K at TP 1:
    2 MiB / (8 x 128 x 2 B) = 1,024 tokens (PAPERS.md)."""
    spec = MODELS[model] if isinstance(model, str) else model
    per_token = kv_heads_per_gpu(spec, tp) * spec.head_dim * bytes_per_element
    if page_bytes % per_token:
        raise ValueError(f"a {page_bytes}-byte page does not hold a whole number of {per_token}-byte token slices")
    return page_bytes // per_token


@register_kv_manager
class VAttentionKVManager(KVManager):
    """vAttention: virtually contiguous per-request KV buffers, physical pages mapped on demand.

    One accounting block is one page per layer and per K/V on every GPU (``2 x layers`` pages
    per GPU), holding ``tokens_per_page`` tokens; the replica's ``block_size`` must equal it.

    Args:
        total_blocks, block_size, swap_s_per_block: from the replica (the kernel's factory
            arguments); ``swap_s_per_block`` is the paged per-block copy cost, from which the
            per-copy overhead is removed for the contiguous swap.
        page_bytes: the physical page size (a key of ``VATTENTION_PAGE_BYTES`` or bytes).
        model, tp: the served model and tensor-parallel degree (to check ``block_size``).
        max_context_tokens: the virtual buffer each request reserves (the model's context).
        map_s_per_page: seconds to map one page on one GPU (``MAP_S_PER_PAGE``: measured for 2 MB
            pages on an A100, assumed for smaller ones).
        background: decode growth mapped in the background, overlapped with compute (the
            paper's design); False: on the critical path.
        contiguous_kernels: decode attention at ``CONTIGUOUS_DECODE_FACTOR`` of the paged
            kernel's time (vAttention's unmodified kernels); False: memory effects only.
    """

    name = "vattention"

    def __init__(
        self,
        total_blocks: int,
        block_size: int,
        swap_s_per_block: float,
        *,
        page_bytes: int | str = "2mb",
        model: ModelSpec | str = "llama3.1_8b",
        tp: int = 1,
        max_context_tokens: int = 131_072,
        map_s_per_page: float = MAP_S_PER_PAGE,
        background: bool = True,
        contiguous_kernels: bool = False,
    ) -> None:
        super().__init__(total_blocks, block_size, swap_s_per_block)
        self.contiguous_kernels = bool(contiguous_kernels)
        if isinstance(page_bytes, str):
            if page_bytes not in VATTENTION_PAGE_BYTES:
                raise ValueError(
                    f"page_bytes must be one of {sorted(VATTENTION_PAGE_BYTES)} or bytes, got {page_bytes!r}"
                )
            page_bytes = VATTENTION_PAGE_BYTES[page_bytes]
        self.model = MODELS[model] if isinstance(model, str) else model
        self.page_bytes = int(page_bytes)
        expected = tokens_per_page(self.page_bytes, self.model, tp)
        if block_size != expected:
            raise ValueError(
                f"vattention: {self.page_bytes}-byte pages of {self.model.name} at TP {tp} hold {expected} tokens; "
                f"set ReplicaConfig.block_size={expected} (got {block_size})"
            )
        self.pages_per_block = 2 * self.model.layers  # per GPU: one page per layer, K and V
        self.max_context_tokens = int(max_context_tokens)
        if not map_s_per_page >= 0:
            raise ValueError(f"map_s_per_page must be >= 0 seconds, got {map_s_per_page!r}")
        self.map_s_per_page = float(map_s_per_page)
        self.background = bool(background)
        self.map_s_charged = 0.0  # mapping seconds put on the critical path
        # Per-copy overheads: paged swaps one copy per block per layer and K/V; a contiguous
        # buffer is one copy per layer and K/V per request.
        self._bytes_s_per_block = max(swap_s_per_block - self.pages_per_block * SWAP_COPY_OVERHEAD_S, 0.0)
        self.mapped_pages = 0  # pages ever mapped (on demand)
        self.unmapped_pages = 0  # pages ever unmapped (eager reclamation, swaps)
        self.held: dict[int, int] = {}  # request -> blocks mapped for it (running)
        self.swapped_out: dict[int, int] = {}  # request -> blocks in host memory

    @property
    def decode_attention_factor(self) -> float:
        return CONTIGUOUS_DECODE_FACTOR if self.contiguous_kernels else 1.0

    # ------------------------------------------------------------------ mapping
    def _map(self, blocks: int) -> None:
        self.free_blocks -= blocks
        self.mapped_pages += blocks * self.pages_per_block

    def _unmap(self, blocks: int) -> None:
        self.free_blocks += blocks
        self.blocks_released += blocks
        self.unmapped_pages += blocks * self.pages_per_block

    @property
    def virtual_bytes_per_request(self) -> int:
        """Virtual address space a request reserves on each GPU: its buffer for the maximum
        context, whole pages, every layer, K and V."""
        pages = -(-self.max_context_tokens // self.block_size)
        return pages * self.pages_per_block * self.page_bytes

    def _charge(self, blocks: int) -> float | None:
        seconds = blocks * self.pages_per_block * self.map_s_per_page
        if not seconds:
            return None
        self.map_s_charged += seconds
        return seconds

    def allocate(self, rid: int, blocks: int, *, cached: int, generated: int, now: float) -> float | None:
        self._map(blocks)
        self.held[rid] = self.held.get(rid, 0) + blocks
        return self._charge(blocks)  # a prompt's pages are mapped before its prefill

    def grow(self, blocks: int) -> float | None:
        # The batch's growth comes summed over requests (the kernel fast-forwards decode
        # stretches); per-request holdings are the replica's (ceil(context / block_size)).
        self._map(blocks)
        return None if self.background else self._charge(blocks)

    def release(self, rid: int, blocks: int, now: float, *, finished: bool) -> None:
        self._unmap(blocks)  # eager reclamation: unmapped as soon as the request leaves
        self.held.pop(rid, None)

    # ------------------------------------------------------------------ swapping
    def swap_seconds(self, blocks: int) -> float:
        """One copy per layer and K/V of the whole contiguous buffer, plus the bytes."""
        if blocks <= 0:
            return 0.0
        return self.pages_per_block * SWAP_COPY_OVERHEAD_S + blocks * self._bytes_s_per_block

    def swap_out(self, rid: int, blocks: int) -> float:
        self._unmap(blocks)
        self.held.pop(rid, None)
        self.swapped_blocks += blocks
        self.swapped_out[rid] = self.swapped_out.get(rid, 0) + blocks
        return self.swap_seconds(blocks)

    def swap_in(self, rid: int, blocks: int) -> float:
        self._map(blocks)
        self.swapped_blocks -= blocks
        host = self.swapped_out.pop(rid, 0)
        if host != blocks:
            raise AssertionError(f"vattention: request {rid} swaps in {blocks} blocks, {host} were swapped out")
        self.held[rid] = self.held.get(rid, 0) + blocks
        return self.swap_seconds(blocks)

    def forget(self, rid: int, now: float) -> None:
        self.held.pop(rid, None)

    def audit(self, running_blocks: int) -> None:
        super().audit(running_blocks)
        mapped_now = self.mapped_pages - self.unmapped_pages
        if mapped_now != self.used_blocks * self.pages_per_block:
            raise AssertionError(
                f"vattention: {mapped_now} pages mapped != {self.used_blocks} blocks x {self.pages_per_block} pages"
            )
        if sum(self.swapped_out.values()) != self.swapped_blocks:
            raise AssertionError("vattention: host copies do not add up to the swapped blocks")
        if set(self.swapped_out) & set(self.held):
            raise AssertionError("vattention: a request holds device pages and a host copy at once")


def kv_memory_variant(
    name: str,
    *,
    model: str = "llama3.1_8b",
    tp: int = 1,
    background: bool = True,
    contiguous_kernels: bool = False,
) -> tuple[dict[str, Any], Any]:
    """The replica settings and KV-manager factory of a study variant: ``paged_<block>`` (e.g.
    ``paged_16``) or ``vattention_<page>`` (e.g. ``vattention_2mb``; ``background``: decode
    pages mapped off the critical path; ``contiguous_kernels``: with the contiguous decode
    kernel's speed, else memory effects only). Returns ``(ReplicaConfig keyword overrides,
    kv_manager factory)``."""
    kind, _, size = name.partition("_")
    if kind == "paged" and size.isdigit() and int(size) > 0:
        from infragym.envs.serving.kv import PagedKVManager

        return {"block_size": int(size)}, PagedKVManager
    if kind == "vattention" and size in VATTENTION_PAGE_BYTES:
        block = tokens_per_page(VATTENTION_PAGE_BYTES[size], model, tp)

        def factory(total_blocks: int, block_size: int, swap_s_per_block: float) -> VAttentionKVManager:
            return VAttentionKVManager(
                total_blocks,
                block_size,
                swap_s_per_block,
                page_bytes=size,
                model=model,
                tp=tp,
                background=background,
                contiguous_kernels=contiguous_kernels,
            )

        return {"block_size": block}, factory
    raise ValueError(
        f"unknown KV memory variant {name!r}: expected paged_<block> (e.g. paged_16) or vattention_<page> "
        f"with page in {sorted(VATTENTION_PAGE_BYTES)}"
    )


__all__ = [
    "CONTIGUOUS_DECODE_FACTOR",
    "MAP_S_PER_PAGE",
    "PAGED_BLOCK_SIZES",
    "VATTENTION_PAGE_BYTES",
    "VAttentionKVManager",
    "kv_heads_per_gpu",
    "kv_memory_variant",
    "tokens_per_page",
]
