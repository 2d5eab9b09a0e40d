"""The shared SB3 episode logger: every finished episode's value lands in the history and the
run's logger at the step it ended; unfinished steps log nothing."""

from __future__ import annotations

from typing import Any

from infragym.sb3_callbacks import episode_logger


class RecordingLogger:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((metrics, step))


def _step(callback: Any, timesteps: int, infos: list[dict[str, Any]]) -> bool:
    callback.locals = {"infos": infos}
    callback.num_timesteps = timesteps
    return callback._on_step()


def test_episode_returns_are_recorded_and_logged() -> None:
    history: list[tuple[int, float]] = []
    logger = RecordingLogger()
    callback = episode_logger(history, logger)
    assert _step(callback, 4, [{}, {}])
    assert _step(callback, 8, [{"episode": {"r": 2.5, "l": 8}}, {}, {"episode": {"r": -1.0, "l": 3}}])
    assert history == [(8, 2.5), (8, -1.0)]
    assert logger.logged == [({"train/episode_return": 2.5}, 8), ({"train/episode_return": -1.0}, 8)]


def test_another_metric_of_the_finished_episode() -> None:
    history: list[tuple[int, float]] = []
    logger = RecordingLogger()
    callback = episode_logger(history, logger, metric="train/episode_ettr", value=lambda info: info["ettr"])
    _step(callback, 16, [{"episode": {"r": 0.0}, "ettr": 0.93}, {"ettr": 0.5}])
    assert history == [(16, 0.93)] and logger.logged == [({"train/episode_ettr": 0.93}, 16)]
