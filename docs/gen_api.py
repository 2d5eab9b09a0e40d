"""Write the API reference page (api.md) at build time.

The page lists the core modules in reading order. A module is listed only when its source file
exists, so the page follows the core as modules are added without a broken reference.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

CORE = Path(__file__).resolve().parents[1] / "infragym"

MODULES = (
    ("infragym.components", "Component registry: how a component declares itself."),
    ("infragym.cli", "The `infragym` command: train, evaluate, list."),
    ("infragym.task", "The Task protocol every component implements."),
    ("infragym.export", "Writing, verifying and loading exports."),
    ("infragym.portable", "The config inside an export, and how `evaluate` reads it back."),
    ("infragym.config", "Config schemas, data locations and composing run configs."),
    ("infragym.evaluation", "Summaries over seeds and method comparisons."),
    ("infragym.results", "Results tables."),
    ("infragym.logging", "Run loggers (W&B, CSV, none)."),
)


def module_exists(dotted: str) -> bool:
    base = CORE.joinpath(*dotted.split(".")[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def api_page() -> str:
    lines = [
        "# API reference",
        "",
        "The core of InfraGym: what every component builds on. Components document their own",
        "classes in their packages; their user-facing behaviour is on the component pages.",
        "",
    ]
    for dotted, summary in MODULES:
        if not module_exists(dotted):
            continue
        lines += [f"## `{dotted}`", "", summary, "", f"::: {dotted}", "    options:", "      show_root_heading: false"]
        lines += ["      heading_level: 3", ""]
    return "\n".join(lines)


with mkdocs_gen_files.open("api.md", "w") as handle:
    handle.write(api_page())
