"""Past-Future admission (LightLLM, arXiv 2507.10150) as pure functions on arrays.

The scheduler keeps the output lengths of the last ``window`` finished requests (the past);
for each running request it samples a remaining length from that history conditioned on the
tokens it has already generated, and predicts the future: sorted by remaining length
(descending), the KV use when request ``i`` finishes is every longer request's held tokens plus
``i`` x its remaining length (requests ``1..i`` each grow by ``remaining_i`` until then), so

    peak = max_i ( remaining_i x i + sum_{j <= i} held_j ).

A request is admitted only if the peak with it stays under capacity minus a reserve (3%).
Artifact constants (PAPERS.md): window 1,000 finished lengths, initialised with 500 x 512;
3% memory reserve; without a history sample above what a request has generated, it is expected
to generate another 10% (LightLLM estimates max(1.1 x generated, ...)), capped by
``max_new_tokens``.
"""

from __future__ import annotations

import numpy as np

HISTORY_WINDOW = 1000  # finished output lengths kept (artifact)
HISTORY_INIT = (500, 512)  # initial history: 500 x 512 tokens (artifact)
MEMORY_RESERVE = 0.03  # fraction of the KV pool kept free (artifact)
GROWTH_WITHOUT_HISTORY = 0.1  # no longer sample in the history: 10% more (LightLLM's 1.1 x decoded)


def future_peak(held: np.ndarray, remaining: np.ndarray) -> float:
    """Peak KV tokens of a batch that admits nothing more: ``held`` tokens now, ``remaining``
    tokens still to generate, per request. Sorted by remaining (descending), request ``i`` (1-based)
    finishes after ``remaining_i`` more steps; just before, requests ``1..i`` hold
    ``sum_{j<=i} held_j + i x remaining_i``, and the peak is the largest of these."""
    held = np.asarray(held, dtype=np.float64)
    remaining = np.asarray(remaining, dtype=np.float64)
    if held.shape != remaining.shape:
        raise ValueError(f"held {held.shape} and remaining {remaining.shape} must have one entry per request")
    if held.size == 0:
        return 0.0
    order = np.argsort(-remaining, kind="stable")
    r = remaining[order]
    cumulative = np.cumsum(held[order])
    return float(np.max(r * np.arange(1, r.size + 1) + cumulative))


def admits(held: np.ndarray, remaining: np.ndarray, capacity_tokens: float, reserve: float = MEMORY_RESERVE) -> bool:
    """Whether a batch's future peak stays within ``(1 - reserve) x capacity_tokens``."""
    return future_peak(held, remaining) <= (1.0 - reserve) * capacity_tokens


class LengthHistory:
    """A ring buffer of the last ``window`` finished output lengths, kept sorted for sampling."""

    def __init__(self, window: int = HISTORY_WINDOW, init: tuple[int, int] = HISTORY_INIT) -> None:
        if window <= 0 or init[0] > window:
            raise ValueError(f"window must be positive and hold the {init[0]} initial lengths, got {window}")
        self.window = window
        self._ring = np.zeros(window, dtype=np.int64)
        self._ring[: init[0]] = init[1]
        self._size = init[0]
        self._next = init[0] % window
        self._sorted = np.sort(self._ring[: self._size])

    def __len__(self) -> int:
        return self._size

    @property
    def lengths(self) -> np.ndarray:
        """The kept lengths, sorted ascending."""
        return self._sorted

    def add(self, lengths: np.ndarray) -> None:
        """Record finished requests' output lengths (the oldest ones drop out)."""
        lengths = np.asarray(lengths, dtype=np.int64).ravel()
        if lengths.size >= self.window:
            lengths = lengths[-self.window :]
        k = lengths.size
        if k == 0:
            return
        idx = (self._next + np.arange(k)) % self.window
        self._ring[idx] = lengths
        self._next = int((self._next + k) % self.window)
        self._size = min(self._size + k, self.window)
        self._sorted = np.sort(self._ring[: self._size] if self._size < self.window else self._ring)

    def sample_remaining(
        self, generated: np.ndarray, max_new_tokens: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One remaining-length sample per request, from the history conditioned on a total
        above what it has generated: draw a total L uniformly among the kept lengths with
        L > generated and return L - generated (capped by max_new_tokens - generated). With no
        such length, 10% of what it has generated (at least 1)."""
        generated = np.asarray(generated, dtype=np.int64)
        cap = np.asarray(max_new_tokens, dtype=np.int64) - generated
        lengths = self._sorted
        lo = np.searchsorted(lengths, generated, side="right")
        above = lengths.size - lo
        pick = lo + np.floor(rng.random(generated.shape) * np.maximum(above, 1)).astype(np.int64)
        sampled = lengths[np.minimum(pick, lengths.size - 1)] - generated
        fallback = np.maximum(np.ceil(GROWTH_WITHOUT_HISTORY * generated), 1).astype(np.int64)
        remaining = np.where(above > 0, sampled, fallback)
        return np.maximum(np.minimum(remaining, cap), np.minimum(1, np.maximum(cap, 0)))
