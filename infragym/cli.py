"""The ``infragym`` command: ``train``, ``evaluate``, ``serve`` and ``list``.

``infragym train [overrides]`` and ``infragym evaluate checkpoint=<export> [overrides]`` are Hydra
applications on the configs shipped in the package (``pkg://infragym.conf``), so they work from
any folder with an installed wheel; ``python train.py`` / ``python evaluate.py`` in a checkout are
the same commands. Components that ship their own configs are put on Hydra's search path.

``infragym serve EXPORT ...`` runs the decision service (``infragym.serve``). Hydra, OmegaConf and
the training stack are imported only by ``train`` and ``evaluate``: the serving process must not
carry them (nor pay for importing them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from infragym import __version__, components

if TYPE_CHECKING:
    from omegaconf import DictConfig

USAGE = """usage: infragym <command> [hydra overrides]

commands:
  train      train, evaluate and export one experiment: infragym train experiment=<name> seed=3
  evaluate   evaluate an export against the baselines:   infragym evaluate checkpoint=outputs/<run>/export
  serve      serve exports over HTTP:                     infragym serve outputs/<run>/export [--port 8000]
  list       the components, experiments and environments
Hydra's own flags work after train and evaluate (-m for sweeps, --cfg job, --help); infragym serve --help.
"""


def _hydra_app(command: str) -> Callable[[], Any]:
    """The ``@hydra.main`` application of ``train`` or ``evaluate`` (Hydra imported only here)."""
    import hydra

    from infragym.config import CONF_SOURCE

    if command == "train":

        def train(cfg: DictConfig) -> float | None:
            from infragym.runner import run_train

            return run_train(cfg)

        return hydra.main(version_base="1.3", config_path=CONF_SOURCE, config_name="train")(train)

    def evaluate(cfg: DictConfig) -> None:
        from infragym.runner import run_evaluate

        run_evaluate(cfg)

    return hydra.main(version_base="1.3", config_path=CONF_SOURCE, config_name="evaluate")(evaluate)


# Hydra's command-line flags that take a value (``--info`` takes one only from its choices).
_VALUE_FLAGS = frozenset({"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn"})
_VALUE_FLAGS |= {"--config-dir", "-cd", "--experimental-rerun"}
_INFO_CHOICES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def split_hydra_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) and the overrides, each in their order. The overrides
    are passed as one block before the flags: argparse refuses overrides split by a flag."""
    flags: list[str] = []
    overrides: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("-") and not item.startswith("~"):
            flags.append(item)
            takes_value = item in _VALUE_FLAGS or (
                item in ("--info", "-i") and i + 1 < len(items) and items[i + 1] in _INFO_CHOICES
            )
            if takes_value and i + 1 < len(items):
                flags.append(items[i + 1])
                i += 1
        else:
            overrides.append(item)
        i += 1
    return flags, overrides


def _run_hydra(command: str, args: list[str]) -> int:
    import infragym.envs  # noqa: F401  (registers the gymnasium environments)
    from infragym.config import evaluation_overrides, with_component_search_path

    app = _hydra_app(command)
    flags, overrides = split_hydra_args(args)
    overrides = with_component_search_path(overrides)
    if command == "evaluate":
        overrides = evaluation_overrides(overrides)
    if not any(o.partition("=")[0].lstrip("+") == "hydra.job.name" for o in overrides):
        overrides.insert(0, f"hydra.job.name={command}")  # names the run's log file (train.log, evaluate.log)
    argv = sys.argv
    sys.argv = [f"infragym {command}", *overrides, *flags]
    try:
        app()
    finally:
        sys.argv = argv
    return 0


def _first_comment(text: str) -> str:
    """The first sentence of a config file's leading comment block."""
    block: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        if "@package" not in line:
            block.append(line.lstrip("# ").strip())
    sentence = " ".join(block).split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 110 else sentence[:107] + "..."


def experiments() -> dict[str, str]:
    """Every experiment config (the package's and the components' own): name -> its first comment line."""
    sources = [resources.files("infragym.conf")]
    sources += [resources.files(c.config_module) for c in components.registry().values() if c.config_module]
    found: dict[str, str] = {}
    for source in sources:
        folder = source / "experiment"
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                found.setdefault(entry.name[: -len(".yaml")], _first_comment(entry.read_text()))
    return dict(sorted(found.items()))


def environments() -> dict[str, str]:
    """Registered gymnasium ids of InfraGym and of its components: id -> entry point."""
    from gymnasium.envs.registration import registry

    import infragym.envs  # noqa: F401

    declared = {env_id for c in components.registry().values() for env_id in c.envs}
    return {
        env_id: str(spec.entry_point)
        for env_id, spec in sorted(registry.items())
        if env_id.startswith("infragym/") or env_id in declared
    }


def list_text() -> str:
    """What ``infragym list`` prints: one line per component, experiment and environment."""
    registered = components.registry()
    owner = {exp: c.name for c in registered.values() for exp in c.experiments}
    env_owner = {env: c.name for c in registered.values() for env in c.envs}
    width = max(len(n) for n in [*registered, *experiments(), *environments()]) + 2
    lines = ["components:"]
    for name, c in registered.items():
        export = "no export" if c.loader is None else ("pickle export" if c.code_bearing else "export")
        lines.append(f"  {name:<{width}}{c.summary} [{export}]")
    lines.append("experiments (infragym train experiment=<name>):")
    for name, comment in experiments().items():
        tag = f"[{owner[name]}] " if name in owner else ""
        lines.append(f"  {name:<{width}}{tag}{comment}")
    lines.append("environments (gymnasium.make(<id>)):")
    for env_id, entry_point in environments().items():
        tag = f"[{env_owner[env_id]}] " if env_id in env_owner else ""
        lines.append(f"  {env_id:<{width}}{tag}{entry_point}")
    return "\n".join(lines)


def serve_parser() -> argparse.ArgumentParser:
    """The arguments of ``infragym serve``."""
    from infragym.serve.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_THREADS

    parser = argparse.ArgumentParser(
        prog="infragym serve",
        description="Serve exports over HTTP: /healthz, /readyz, /v1/models, /v1/models/{name}/{operation}, "
        "/metrics, /docs. Every export is verified and loaded before the port is bound.",
    )
    parser.add_argument(
        "exports", nargs="+", metavar="EXPORT", help="an export folder, or NAME=folder to choose the model's name"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=_bounded_int(0, 65535), default=8000)
    parser.add_argument(
        "--workers", type=_bounded_int(1, 256), default=1, help="worker processes, each loading every export"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="serve code-bearing (pickle) exports that are not signed with this machine's key",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="require this bearer token on the model endpoints (default: $INFRAGYM_SERVE_TOKEN, if set)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_bounded_int(1, 2**40),
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=_bounded_int(1, 1024),
        default=DEFAULT_THREADS,
        help="inference threads per worker (default: %(default)s)",
    )
    parser.add_argument(
        "--grace-s",
        type=float,
        default=10.0,
        help="on SIGTERM, seconds in-flight requests get to finish (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high}]")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def _serve(args: Sequence[str]) -> int:
    try:
        from infragym.serve.server import ServeError, ServeSettings, serve
    except ImportError as err:
        print(f"infragym serve: {err}; install the service with: pip install 'infragym[serve]'", file=sys.stderr)
        return 1
    parser = serve_parser()
    options = parser.parse_args(args)
    if not options.grace_s >= 0:
        parser.error(f"--grace-s must be a number of seconds >= 0, got {options.grace_s}")
    settings = ServeSettings(
        exports=tuple(options.exports),
        host=options.host,
        port=options.port,
        workers=options.workers,
        trust=options.trust,
        token_file=options.token_file,
        max_body_bytes=options.max_body_bytes,
        threads=options.threads,
        grace_s=options.grace_s,
        log_level=options.log_level,
    )
    try:
        serve(settings)
    except ServeError as err:
        print(f"infragym serve: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``infragym`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("--version", "version"):
        print(f"infragym {__version__}")
        return 0
    if command == "list":
        print(list_text())
        return 0
    if command in ("train", "evaluate"):
        return _run_hydra(command, rest)
    if command == "serve":
        return _serve(rest)
    print(f"infragym: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
