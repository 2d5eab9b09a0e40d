"""JITServe's output-length estimates: conservative quantiles from prompt features, refined as
tokens are generated.

A gradient-boosted quantile regression (LightGBM, one model per level) predicts a grid of
output-length quantiles per request from what is known at arrival (prompt tokens, SLO type).
The grid is a per-request predictive distribution F; once a request has generated ``g`` tokens
the estimate is refined to the conditional quantile
``F^{-1}(F(g) + tau (1 - F(g)))`` (the length is known to exceed ``g``): a request that outlives
its prediction gets a larger estimate, and one whose distribution has collapsed gets a tighter
one. Beyond the top predicted level, the training set's own tail (lengths above ``g``) answers.
"""

from __future__ import annotations

import itertools

import lightgbm as lgb
import numpy as np

LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.97)


def prompt_features(prompt_tokens: np.ndarray, slo_type: np.ndarray) -> np.ndarray:
    """What the scheduler knows at arrival: prompt length (and its log) and the SLO type."""
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    return np.column_stack([prompt, np.log1p(prompt), np.asarray(slo_type, dtype=np.float64)])


class QuantileLengthPredictor:
    """Per-request quantiles of the output length, refined by the tokens already generated.

    Args:
        levels: quantile levels of the grid (ascending, in (0, 1)).
        tau: the conservative level used as the estimate (JITServe uses a high quantile).
        n_estimators, num_leaves: LightGBM capacity (small: the features are few).
        seed: LightGBM's random_state.
    """

    def __init__(
        self,
        *,
        levels: tuple[float, ...] = LEVELS,
        tau: float = 0.9,
        n_estimators: int = 60,
        num_leaves: int = 15,
        seed: int = 0,
    ) -> None:
        if not all(0 < a < b < 1 for a, b in itertools.pairwise(levels)) or not 0 < levels[0]:
            raise ValueError(f"levels must be increasing in (0, 1), got {levels}")
        if not 0 < tau < 1:
            raise ValueError(f"tau must be in (0, 1), got {tau}")
        self.levels = np.asarray(levels, dtype=np.float64)
        self.tau = tau
        self.n_estimators = n_estimators
        self.num_leaves = num_leaves
        self.seed = seed
        self.models: list[lgb.LGBMRegressor] = []
        self.train_lengths = np.zeros(0, np.int64)

    def fit(self, features: np.ndarray, output_tokens: np.ndarray) -> QuantileLengthPredictor:
        y = np.asarray(output_tokens, dtype=np.float64)
        if len(features) != len(y) or len(y) < 20:
            raise ValueError(f"need >= 20 rows with one output length each, got {len(features)} and {len(y)}")
        self.models = [
            lgb.LGBMRegressor(
                objective="quantile",
                alpha=float(level),
                n_estimators=self.n_estimators,
                num_leaves=self.num_leaves,
                min_child_samples=20,
                learning_rate=0.1,
                random_state=self.seed,
                verbose=-1,
                n_jobs=1,
            ).fit(features, y)
            for level in self.levels
        ]
        self.train_lengths = np.sort(y.astype(np.int64))
        return self

    def quantile_grid(self, features: np.ndarray) -> np.ndarray:
        """(n, len(levels)) predicted quantiles, monotone in the level, each >= 1."""
        if not self.models:
            raise RuntimeError("QuantileLengthPredictor: call fit() first")
        grid = np.column_stack([m.predict(features) for m in self.models])
        return np.maximum.accumulate(np.maximum(grid, 1.0), axis=1)

    def estimate_total(self, grid: np.ndarray, generated: np.ndarray, *, refine: bool = True) -> np.ndarray:
        """Conservative total output length of each request given ``generated`` tokens so far.

        refine=False is the static estimate (the tau-quantile at arrival, or generated + 1 once
        it is exceeded): the ablation of JITServe's refinement."""
        generated = np.asarray(generated, dtype=np.float64)
        levels = self.levels
        static = _interp_rows(np.full(len(grid), self.tau), levels, grid)
        if not refine:
            return np.maximum(static, generated + 1)
        # F(g) by inverse interpolation of each row's grid (0 below the lowest quantile).
        below = grid <= generated[:, None]
        k = below.sum(axis=1)  # grid points at or below g
        f_g = np.zeros(len(grid))
        inside = (k > 0) & (k < grid.shape[1])
        if inside.any():
            rows = np.flatnonzero(inside)
            lo, hi = k[rows] - 1, k[rows]
            x0, x1 = grid[rows, lo], grid[rows, hi]
            frac = np.where(x1 > x0, (generated[rows] - x0) / np.maximum(x1 - x0, 1e-9), 0.0)
            f_g[rows] = levels[lo] + frac * (levels[hi] - levels[lo])
        target = f_g + self.tau * (1.0 - f_g)
        refined = _interp_rows(target, levels, grid)
        # Beyond the grid's top level: the training set's lengths above g (its empirical tail).
        beyond = (k == grid.shape[1]) | (target > levels[-1])
        if beyond.any():
            refined[beyond] = self._tail_quantile(generated[beyond])
        return np.maximum(refined, generated + 1)

    def _tail_quantile(self, generated: np.ndarray) -> np.ndarray:
        lengths = self.train_lengths
        lo = np.searchsorted(lengths, generated, side="right")
        above = lengths.size - lo
        pos = lo + np.ceil(self.tau * above).astype(np.int64) - 1
        out = lengths[np.clip(pos, 0, lengths.size - 1)].astype(np.float64)
        # nothing longer was ever seen: expect another 10% (LightLLM's 1.1 x decoded rule)
        return np.where(above > 0, out, 1.1 * generated + 1)


def _interp_rows(target: np.ndarray, levels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each row's grid value at quantile level ``target`` (linear; clamped to the grid's ends)."""
    t = np.clip(target, levels[0], levels[-1])
    hi = np.clip(np.searchsorted(levels, t, side="left"), 1, len(levels) - 1)
    lo = hi - 1
    frac = (t - levels[lo]) / (levels[hi] - levels[lo])
    rows = np.arange(len(grid))
    return grid[rows, lo] + frac * (grid[rows, hi] - grid[rows, lo])
