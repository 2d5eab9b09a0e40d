"""Multi-turn agent programs: LLM calls separated by tool calls (Continuum's workload).

A program is a sequence of turns. Turn ``i`` is one LLM call whose prompt is everything the
program has seen so far (the previous turn's prompt, its output, then the new tokens: the
tool's output, or the task statement for the first turn); its output ends with a tool call
whose execution takes ``tool_duration_s`` before turn ``i + 1`` arrives. The last turn makes
no tool call. Because each prompt extends the previous context, a KV cache kept across the
tool call saves re-prefilling that context.

``AgentPrograms`` stores turns flattened in program order (struct of arrays) with per-program
offsets. Loaders refuse malformed files naming the file, record and field; generators draw
from a ``numpy.random.Generator``.

Token counts of real trajectories are estimated from the message text with the common rule
of about 4 characters per token for English text and code (OpenAI's published rule of thumb
for its BPE tokenizers): ``tokens = max(1, ceil(chars / 4))``.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHARS_PER_TOKEN = 4.0


class ProgramError(ValueError):
    """A trajectory file or array that is not a valid set of agent programs."""


def estimate_tokens(text: str) -> int:
    """The documented rule: about 4 characters per token."""
    return max(1, int(np.ceil(len(text) / CHARS_PER_TOKEN)))


@dataclass(frozen=True)
class AgentPrograms:
    """Turns of agent programs, flattened in program order.

    Per program: ``arrival_s`` (when its first turn arrives; sorted) and ``offsets`` (turns of
    program ``p`` are rows ``offsets[p]:offsets[p + 1]``). Per turn: ``new_tokens`` (tokens
    appended to the context before this call), ``output_tokens``, and the tool call ending the
    turn: ``tool`` (name; "" for the last turn), ``tool_args`` (its argument text) and
    ``tool_duration_s`` (0 for the last turn).
    """

    arrival_s: np.ndarray
    offsets: np.ndarray
    new_tokens: np.ndarray
    output_tokens: np.ndarray
    tool: np.ndarray  # object array of str
    tool_args: np.ndarray  # object array of str
    tool_duration_s: np.ndarray
    workload: str = "programs"

    def __post_init__(self) -> None:
        n_prog = len(self.arrival_s)
        if len(self.offsets) != n_prog + 1 or (n_prog and self.offsets[0] != 0):
            raise ProgramError(f"offsets must have {n_prog + 1} entries starting at 0")
        n = int(self.offsets[-1]) if len(self.offsets) else 0
        for name in ("new_tokens", "output_tokens", "tool", "tool_args", "tool_duration_s"):
            if len(getattr(self, name)) != n:
                raise ProgramError(f"{name} has {len(getattr(self, name))} entries, offsets say {n} turns")
        if n_prog and np.any(np.diff(self.offsets) < 1):
            raise ProgramError("every program needs at least one turn")
        if n_prog and np.any(np.diff(self.arrival_s) < 0):
            raise ProgramError("arrival_s must be non-decreasing")
        if n and (np.any(self.new_tokens < 1) or np.any(self.output_tokens < 1)):
            raise ProgramError("new_tokens and output_tokens must be >= 1")
        if n and (np.any(~np.isfinite(self.tool_duration_s)) or np.any(self.tool_duration_s < 0)):
            raise ProgramError("tool_duration_s must be finite and >= 0")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def n_turns(self) -> int:
        return int(self.offsets[-1])

    @property
    def program_of_turn(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    @property
    def turn_index(self) -> np.ndarray:
        """Index of each turn within its program."""
        return np.arange(self.n_turns) - np.repeat(self.offsets[:-1], np.diff(self.offsets))

    @property
    def is_last(self) -> np.ndarray:
        last = np.zeros(self.n_turns, dtype=bool)
        last[self.offsets[1:] - 1] = True
        return last

    @property
    def prompt_tokens(self) -> np.ndarray:
        """Each turn's whole prompt: the previous prompt + previous output + its new tokens."""
        per_turn = self.new_tokens + self.output_tokens
        cum = np.cumsum(per_turn)
        start = np.repeat(np.concatenate([[0], cum[self.offsets[1:-1] - 1]]), np.diff(self.offsets))
        return cum - start - self.output_tokens

    def tool_calls(self) -> pd.DataFrame:
        """One row per tool call (every turn but the last): what the predictors see and
        predict. History columns hold the same program's earlier tool durations."""
        rows = np.flatnonzero(~self.is_last)
        program = self.program_of_turn
        dur = self.tool_duration_s
        frame = pd.DataFrame(
            {
                "program": program[rows],
                "turn": self.turn_index[rows],
                "tool": self.tool[rows].astype(str),
                "arguments": self.tool_args[rows].astype(str),
                "context_tokens": (self.prompt_tokens + self.output_tokens)[rows],
                "duration_s": dur[rows],
            }
        )
        frame["tool_key"] = tool_key(frame["tool"], frame["arguments"])
        group = frame.groupby("program", sort=False)["duration_s"]
        frame["prev_duration_s"] = group.shift(1)
        earlier = group.cumcount()  # the program's earlier tool calls
        frame["prog_mean_duration_s"] = (group.cumsum() - frame["duration_s"]) / earlier.where(earlier > 0)
        frame["prev_same_tool_s"] = frame.groupby(["program", "tool_key"], sort=False)["duration_s"].shift(1)
        frame.index = rows
        return frame

    def turn_predictions(self, predictor: Any) -> tuple[np.ndarray, np.ndarray]:
        """A duration predictor's quantiles ``(n_turns, levels)`` and mean ``(n_turns,)`` for
        every turn's tool call (``predictor.predict_distribution`` on ``tool_calls()``); the
        last turn of each program has no tool call and gets zeros."""
        calls = self.tool_calls()
        q, mean = predictor.predict_distribution(calls)
        quantiles, means = np.zeros((self.n_turns, q.shape[1])), np.zeros(self.n_turns)
        rows = calls.index.to_numpy()
        quantiles[rows], means[rows] = q, mean
        return quantiles, means

    def take(self, programs: np.ndarray, arrival_s: np.ndarray | None = None) -> AgentPrograms:
        """The given programs (in that order), optionally with new arrival times."""
        programs = np.asarray(programs, dtype=np.int64)
        lengths = np.diff(self.offsets)[programs]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # row j of the result is turn (j - offsets[k]) of program k: old row self.offsets[p_k] + that
        rows = np.arange(offsets[-1]) + np.repeat(self.offsets[programs] - offsets[:-1], lengths)
        return AgentPrograms(
            arrival_s=self.arrival_s[programs] if arrival_s is None else np.asarray(arrival_s, dtype=np.float64),
            offsets=offsets,
            new_tokens=self.new_tokens[rows],
            output_tokens=self.output_tokens[rows],
            tool=self.tool[rows],
            tool_args=self.tool_args[rows],
            tool_duration_s=self.tool_duration_s[rows],
            workload=self.workload,
        )

    def split(self, test_fraction: float, rng: np.random.Generator) -> tuple[AgentPrograms, AgentPrograms]:
        """Held-out programs: a random ``test_fraction`` of programs (whole programs)."""
        if not 0 < test_fraction < 1:
            raise ProgramError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = rng.permutation(len(self))
        n_test = max(1, round(len(self) * test_fraction))
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        return self.take(train), self.take(test)

    def resampled(self, n_programs: int, rate: float, rng: np.random.Generator) -> AgentPrograms:
        """``n_programs`` drawn with replacement, arriving as a Poisson process at ``rate``
        programs/s (used to replay a handful of real trajectories at a chosen load)."""
        if rate <= 0 or n_programs <= 0:
            raise ProgramError("rate and n_programs must be positive")
        picks = rng.integers(0, len(self), size=n_programs)
        arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n_programs))
        return self.take(picks, arrivals - arrivals[0])


def tool_key(tool: pd.Series, arguments: pd.Series) -> pd.Series:
    """The tool as the Continuum preview code names it: for a shell tool, the first word of
    the command (``bash`` + ``pytest -x tests`` -> ``pytest``); else the tool's name, with the
    editor's sub-command."""
    codes, uniques = pd.factorize(tool.astype(str) + "\x00" + arguments.astype(str))  # once per distinct call
    keys = np.empty(len(uniques), dtype=object)
    for i, pair in enumerate(uniques):
        keys[i] = pair_tool_key(pair)
    return pd.Series(keys[codes], index=tool.index, dtype=object)


def pair_tool_key(pair: str) -> str:
    """``tool_key`` of one call given as ``tool + "\\x00" + arguments`` (the joined form
    ``tool_key`` factorises on, so that callers without pandas split it the same way)."""
    name, _, args = pair.partition("\x00")
    words = args.split(maxsplit=1) if name in ("bash", "str_replace_editor") else ()
    return (words[0] if name == "bash" else f"editor_{words[0]}") if words else name


# ---------------------------------------------------------------------- real trajectories
def _literal(text: str, where: str) -> object:
    """JSON first (what the producers write), then a Python literal (the sample's ``tool_calls``
    are ``repr`` strings); the outcome never depends on unrelated content of the text."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as json_exc:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise ProgramError(f"{where}: not a JSON or Python literal ({json_exc}; {type(exc).__name__})") from exc


def _content_text(content: object) -> str:
    if isinstance(content, str):
        stripped = content.strip()
        if stripped.startswith("[{"):
            try:
                parsed = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return content
            return _content_text(parsed)
        return content
    if isinstance(content, list):
        return "".join(_part_text(part) for part in content)
    return "" if content is None else _part_text(content)


def _part_text(part: object) -> str:
    """The text of one content part; a structure nested too deeply for ``repr`` counts as its
    type name (a message's token estimate, not its meaning, is what is needed here)."""
    if isinstance(part, dict):
        part = part.get("text", "")
    try:
        return str(part)
    except (RecursionError, ValueError):  # ValueError: an int beyond str()'s digit limit
        return type(part).__name__


# A tool call longer than a day cannot be a real agent step: agent harnesses time commands out
# after minutes (assumed bound, generous by orders of magnitude).
MAX_TOOL_SECONDS = 86_400.0


def _seconds(value: object, where: str) -> float:
    """``execution_time_seconds``: a finite number of seconds in [0, MAX_TOOL_SECONDS]."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProgramError(f"{where}: field 'execution_time_seconds' must be a number, got {type(value).__name__}")
    try:
        seconds = float(value)
    except (ValueError, OverflowError) as exc:
        raise ProgramError(f"{where}: field 'execution_time_seconds' is not a finite number ({exc!s:.80})") from exc
    if not np.isfinite(seconds) or not 0 <= seconds <= MAX_TOOL_SECONDS:
        raise ProgramError(
            f"{where}: field 'execution_time_seconds' = {seconds:g} is outside [0, {MAX_TOOL_SECONDS:g}] s"
        )
    return seconds


def load_agent_trajectories(path: str | os.PathLike[str], *, rate: float = 0.1) -> AgentPrograms:
    """Real agent trajectories (the Continuum preview's SWE-agent sample format).

    Each record has ``messages``: a JSON string of chat messages. An assistant message's
    ``tool_calls`` (a Python/JSON literal string) gives the tool name (``function.name``), its
    arguments (``function.arguments``, JSON) and ``execution_time_seconds``. Turn boundaries are
    the assistant messages; the tokens between two assistant messages (tool observations, user
    text) are the next turn's new tokens; the system prompt and the first user message form the
    first turn's. Programs arrive every ``1 / rate`` s in file order (replay them at other loads
    with ``AgentPrograms.resampled``).
    """
    path = Path(path)
    if not rate > 0 or not np.isfinite(rate):
        raise ProgramError(f"rate must be a positive number of programs per second, got {rate}")
    try:
        records = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        # ValueError: an integer beyond Python's digit limit; RecursionError: nesting too deep
        raise ProgramError(f"{path}: cannot read a UTF-8 JSON list of trajectories ({exc!s:.200})") from exc
    if not isinstance(records, list) or not records:
        raise ProgramError(f"{path}: expected a non-empty JSON list of trajectory records")
    new_tokens: list[int] = []
    output_tokens: list[int] = []
    tools: list[str] = []
    tool_args: list[str] = []
    durations: list[float] = []
    lengths: list[int] = []
    for r, record in enumerate(records):
        where = f"{path} record {r}"
        if not isinstance(record, dict) or "messages" not in record:
            raise ProgramError(f"{where}: missing field 'messages'")
        messages = record["messages"]
        if isinstance(messages, str):
            messages = _literal(messages, f"{where} field 'messages'")
        if not isinstance(messages, list):
            raise ProgramError(f"{where}: 'messages' must be a list of chat messages")
        pending = 0
        turns = 0
        for m, msg in enumerate(messages):
            if not isinstance(msg, dict) or "role" not in msg:
                raise ProgramError(f"{where} message {m}: missing field 'role'")
            text = _content_text(msg.get("content"))
            if msg["role"] != "assistant":
                pending += estimate_tokens(text) if text else 0
                continue
            calls_raw = msg.get("tool_calls") or "[]"
            calls = calls_raw
            if isinstance(calls_raw, str):
                calls = _literal(calls_raw, f"{where} message {m} field 'tool_calls'")
            if not isinstance(calls, list):
                raise ProgramError(f"{where} message {m}: 'tool_calls' must be a list")
            name, args, seconds = "", "", 0.0
            for c, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or "name" not in fn:
                    raise ProgramError(f"{where} message {m} tool call {c}: missing field 'function.name'")
                if "execution_time_seconds" not in call:
                    raise ProgramError(f"{where} message {m} tool call {c}: missing field 'execution_time_seconds'")
                t = _seconds(call["execution_time_seconds"], f"{where} message {m} tool call {c}")
                arguments = fn.get("arguments") or "{}"
                if not isinstance(arguments, str):
                    raise ProgramError(
                        f"{where} message {m} tool call {c}: field 'function.arguments' must be a JSON string, "
                        f"got {type(arguments).__name__}"
                    )
                try:
                    parsed = json.loads(arguments)
                except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                    raise ProgramError(
                        f"{where} message {m} tool call {c}: field 'function.arguments' is not JSON ({exc!s:.200})"
                    ) from exc
                values = parsed.values() if isinstance(parsed, dict) else [parsed]
                if not isinstance(fn["name"], str) or not fn["name"]:
                    raise ProgramError(f"{where} message {m} tool call {c}: field 'function.name' must be a name")
                name = name or fn["name"]
                args = " ".join([args, *map(_part_text, values)]).strip()
                seconds += t  # several calls in one message run one after the other
            try:
                out_text = text + json.dumps(calls, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise ProgramError(f"{where} message {m}: field 'tool_calls' is not plain data ({exc!s:.200})") from exc
            new_tokens.append(max(pending, 1))
            output_tokens.append(estimate_tokens(out_text))
            tools.append(name)
            tool_args.append(args)
            durations.append(seconds)
            pending = 0
            turns += 1
        if turns == 0:
            raise ProgramError(f"{where}: no assistant message, so no LLM call")
        # The last turn ends the program: its tool call (submit) has nothing after it.
        tools[-1], tool_args[-1], durations[-1] = "", "", 0.0
        lengths.append(turns)
    n = len(lengths)
    return AgentPrograms(
        arrival_s=np.arange(n) / rate,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        new_tokens=np.asarray(new_tokens, dtype=np.int64),
        output_tokens=np.asarray(output_tokens, dtype=np.int64),
        tool=np.asarray(tools, dtype=object),
        tool_args=np.asarray(tool_args, dtype=object),
        tool_duration_s=np.asarray(durations, dtype=np.float64),
        workload="swe_agent_real",
    )


# ---------------------------------------------------------------------- generators
# SWE-bench-like shell and editor tools: (command template, median seconds, log-sd, output
# tokens median). Durations are heavy-tailed (lognormal); test runs and installs dominate.
# Assumed magnitudes: editor operations are in-process (< 1 ms, as in the real sample's
# str_replace_editor calls), file listing/grep tens of ms, a reproduction script seconds,
# a test run several seconds with a long tail, a package install ~10 s.
_SWE_TOOLS: tuple[tuple[str, str, float, float, float, float], ...] = (
    # tool, command, weight, median s, log-sd, output tokens median
    ("str_replace_editor", "view {path}", 0.24, 0.0006, 0.6, 900.0),
    ("str_replace_editor", "str_replace {path}", 0.14, 0.0009, 0.6, 120.0),
    ("str_replace_editor", "create {path}", 0.04, 0.0008, 0.5, 40.0),
    ("bash", "grep -rn {word} {dir}", 0.12, 0.08, 0.9, 300.0),
    ("bash", "find {dir} -name {path}", 0.06, 0.05, 0.8, 120.0),
    ("bash", "ls {dir}", 0.05, 0.01, 0.5, 80.0),
    ("bash", "cat {path}", 0.06, 0.01, 0.5, 700.0),
    ("bash", "python {script}", 0.12, 1.2, 1.0, 250.0),
    ("bash", "pytest {target}", 0.12, 5.0, 0.9, 600.0),
    ("bash", "pip install {pkg}", 0.02, 9.0, 0.6, 300.0),
    ("bash", "git diff", 0.03, 0.02, 0.4, 400.0),
)
_WORDS = ("Money", "parse", "validate", "decompress", "render", "serialize", "Field", "cache", "url", "query")
_DIRS = ("/testbed", "/testbed/src", "/testbed/tests", "/testbed/lib", "/testbed/docs")


def _swe_command(kind: str, rng: np.random.Generator) -> tuple[str, float]:
    """A command string and the duration factor its arguments imply: one test (``::``) runs
    much faster than a test file, a file faster than the suite; ``-x`` stops early; a one-line
    ``python -c`` is faster than a script."""
    path = f"{rng.choice(_DIRS)}/{rng.choice(_WORDS).lower()}_{rng.integers(0, 40)}.py"
    if kind.startswith("pytest"):
        scope = rng.choice(3, p=[0.35, 0.45, 0.2])
        target = [f"{path}::test_{rng.choice(_WORDS).lower()}", path, "/testbed/tests"][scope]
        flags = " -x" if rng.random() < 0.3 else ""
        factor = (0.25, 1.0, 4.0)[scope] * (0.6 if flags else 1.0)
        return f"pytest{flags} {target}", factor
    if kind.startswith("python"):
        if rng.random() < 0.3:
            return "python -c 'import sys; print(sys.version)'", 0.15
        return f"python /testbed/reproduce_{rng.integers(0, 9)}.py", 1.0
    if kind.startswith("pip"):
        return f"pip install -e {rng.choice(['.', '/testbed'])}", 1.0
    directory = str(rng.choice(_DIRS))
    command = kind.format(path=path, dir=directory, word=rng.choice(_WORDS))
    # A recursive grep over the whole repository takes longer than over a sub-folder.
    return command, 2.0 if kind.startswith("grep") and directory == "/testbed" else 1.0


def _programs_from_turns(
    lengths: np.ndarray,
    rng: np.random.Generator,
    rate: float,
    first_tokens: np.ndarray,
    outputs: np.ndarray,
    tools: list[str],
    args: list[str],
    durations: np.ndarray,
    tool_tokens: np.ndarray,
    workload: str,
) -> AgentPrograms:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    new_tokens = np.empty(int(offsets[-1]), dtype=np.int64)
    new_tokens[offsets[:-1]] = first_tokens
    rest = np.ones(len(new_tokens), dtype=bool)
    rest[offsets[:-1]] = False
    # Turn i + 1's new tokens are turn i's tool output.
    new_tokens[rest] = tool_tokens[np.flatnonzero(rest) - 1]
    last = offsets[1:] - 1
    tool = np.asarray(tools, dtype=object)
    tool_args = np.asarray(args, dtype=object)
    durations = durations.copy()
    tool[last], tool_args[last], durations[last] = "", "", 0.0
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=len(lengths)))
    return AgentPrograms(
        arrival_s=arrivals - arrivals[0],
        offsets=offsets,
        new_tokens=new_tokens,
        output_tokens=outputs,
        tool=tool,
        tool_args=tool_args,
        tool_duration_s=durations,
        workload=workload,
    )


def swe_bench_like(n_programs: int, rng: np.random.Generator, *, rate: float = 0.05) -> AgentPrograms:
    """SWE-bench-like programs: tens of turns of shell and editor tools.

    Turns per program: 2 + negative binomial, mean ~24 (the real sample has 20-30 LLM calls per
    trajectory). First prompt: system + issue, lognormal median 2,500 tokens. Outputs
    (thought + action): median 150 tokens. Tool outputs per tool (a file view is long, an edit
    short). Durations: lognormal per tool, times a factor from the arguments (test scope,
    flags) and a per-program factor (some repositories' tests are slower: log-sd 0.5), so a
    program's earlier durations carry information about its later ones.
    """
    if n_programs <= 0 or rate <= 0:
        raise ProgramError("n_programs and rate must be positive")
    lengths = 2 + rng.negative_binomial(4, 4 / (4 + 22.0), size=n_programs)
    lengths = np.minimum(lengths, 80)
    n = int(lengths.sum())
    weights = np.array([t[2] for t in _SWE_TOOLS])
    kinds = rng.choice(len(_SWE_TOOLS), size=n, p=weights / weights.sum())
    program_factor = np.repeat(np.exp(rng.normal(0.0, 0.5, size=n_programs)), lengths)
    tools, args = [], []
    factors = np.empty(n)
    for i, k in enumerate(kinds):
        name, template = _SWE_TOOLS[k][0], _SWE_TOOLS[k][1]
        command, factor = _swe_command(template, rng)
        tools.append(name)
        args.append(command)
        factors[i] = factor
    median = np.array([t[3] for t in _SWE_TOOLS])[kinds]
    sigma = np.array([t[4] for t in _SWE_TOOLS])[kinds]
    durations = median * factors * program_factor * np.exp(rng.normal(0.0, 1.0, size=n) * sigma)
    tok_median = np.array([t[5] for t in _SWE_TOOLS])[kinds]
    tool_tokens = np.maximum(1, np.round(tok_median * np.exp(rng.normal(0.0, 0.7, size=n)))).astype(np.int64)
    outputs = np.clip(np.round(np.exp(rng.normal(np.log(150), 0.6, size=n))), 10, 2000).astype(np.int64)
    first = np.clip(np.round(np.exp(rng.normal(np.log(2500), 0.4, size=n_programs))), 300, 12000).astype(np.int64)
    return _programs_from_turns(lengths, rng, rate, first, outputs, tools, args, durations, tool_tokens, "swe_like")


# BFCL-like API tools: (name, median s, log-sd, output tokens median). Function-calling
# benchmarks call remote APIs: tens of ms to ~1 s (assumed magnitudes).
_BFCL_TOOLS: tuple[tuple[str, float, float, float], ...] = (
    ("get_weather", 0.15, 0.5, 80.0),
    ("search_flights", 0.8, 0.6, 300.0),
    ("book_hotel", 0.6, 0.5, 120.0),
    ("query_database", 0.3, 0.9, 250.0),
    ("send_email", 0.25, 0.4, 30.0),
    ("calculator", 0.005, 0.5, 10.0),
    ("translate_text", 0.35, 0.5, 120.0),
    ("web_search", 0.9, 0.7, 400.0),
    ("get_stock_price", 0.12, 0.5, 40.0),
    ("create_calendar_event", 0.2, 0.4, 40.0),
)


def bfcl_like(n_programs: int, rng: np.random.Generator, *, rate: float = 1.0) -> AgentPrograms:
    """BFCL-like programs: a few turns (2 + Poisson(1.2)) of API function calls with short
    durations; the first prompt carries the function definitions (median 900 tokens)."""
    if n_programs <= 0 or rate <= 0:
        raise ProgramError("n_programs and rate must be positive")
    lengths = 2 + rng.poisson(1.2, size=n_programs)
    n = int(lengths.sum())
    kinds = rng.integers(0, len(_BFCL_TOOLS), size=n)
    tools = [_BFCL_TOOLS[k][0] for k in kinds]
    n_args = rng.integers(1, 5, size=n)
    args = [" ".join(f"arg{j}=v{rng.integers(0, 100)}" for j in range(a)) for a in n_args]
    median = np.array([t[1] for t in _BFCL_TOOLS])[kinds]
    sigma = np.array([t[2] for t in _BFCL_TOOLS])[kinds]
    durations = median * (1.0 + 0.1 * (n_args - 1)) * np.exp(rng.normal(0.0, 1.0, size=n) * sigma)
    tok_median = np.array([t[3] for t in _BFCL_TOOLS])[kinds]
    tool_tokens = np.maximum(1, np.round(tok_median * np.exp(rng.normal(0.0, 0.5, size=n)))).astype(np.int64)
    outputs = np.clip(np.round(np.exp(rng.normal(np.log(60), 0.5, size=n))), 5, 600).astype(np.int64)
    first = np.clip(np.round(np.exp(rng.normal(np.log(900), 0.4, size=n_programs))), 100, 6000).astype(np.int64)
    return _programs_from_turns(lengths, rng, rate, first, outputs, tools, args, durations, tool_tokens, "bfcl_like")


__all__ = [
    "CHARS_PER_TOKEN",
    "AgentPrograms",
    "ProgramError",
    "bfcl_like",
    "estimate_tokens",
    "load_agent_trajectories",
    "swe_bench_like",
    "tool_key",
]
