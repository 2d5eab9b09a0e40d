"""CloudFormer design study with leave-applications-out validation (never reads a test split).

The default experiment's validation split holds out *tasks* of the training applications, so
it measures seen-application error; the issue's goal is the error on *unseen* applications.
This study holds out whole applications instead: of the 10 training applications of the
default experiment (the 3 test-unseen ones are never loaded into any split used here), 3 are
set aside per fold as validation applications, the networks train on the other 7, and the
variants are compared on the held-out applications' windows. The networks train through the
shipped LightningModule and a Lightning Trainer (``_lightning.py``) with the task's recipe
(AdamW, 5 % warm-up then cosine, L1 loss, batches of 32, one torch thread); the errors are those
of the last epoch.

    OMP_NUM_THREADS=1 python studies/cloudformer_appval.py --seed 0 --fold 0 --variants ridge base d=64
    OMP_NUM_THREADS=1 python studies/cloudformer_appval.py --variants "arch=lstm,d=64" "mdrop=0.2" \
        --out studies/results/cloudformer_appval.jsonl

A variant is comma-separated ``key=value`` changes to the recipe:
- ``arch``, ``d``, ``heads``, ``layers``, ``dropout``: the ``NetworkSpec``;
- ``lr``, ``wd``, ``bs``, ``ep``: optimiser, batch size, epochs;
- ``mdrop``: training-time metric dropout, each metric's whole window zeroed (= its training
  mean after normalisation) with this probability, independently per window;
- ``noise``: std of Gaussian noise added to the normalised training windows;
- ``ema``: evaluate an exponential moving average of the weights with this decay;
- ``mix``: mixup with this Beta(a, a) parameter (windows and labels interpolated in pairs);
- ``ens``: train this many initialisations (``init``, ``init + 1``, ...) and evaluate the mean
  of their predictions (a deep ensemble; the curve is the first member's);
- ``skip``: the ``NetworkSpec``'s ``skip_tail`` (a linear skip path over each metric's mean
  across the last ``skip`` seconds and its last value, added to the logit; 0: none);
- ``vrex``: risk extrapolation (V-REx, Krueger et al., ICML'21): the loss is the mean of the
  batch's per-application L1 plus this times their variance (pushes toward a predictor
  whose error does not depend on the application);
- ``dann``: domain-adversarial training (Ganin et al., JMLR'16): an MLP tries to name the
  training application from the head's input through a gradient-reversal layer, with this
  weight on its cross-entropy (pushes the representation to be application-invariant);
- ``mse``: 1 trains on the squared error instead of L1 (what ridge minimises);
- ``init``: added to the seed of the initialisation and batch order (init variance).
``<variant>+ridge``: the mean of that network's and the shipped ridge's predictions (a
post-hoc blend of two models, for the record; not a CloudFormer recipe).
``base`` is the shipped CloudFormer; ``ridge`` the ridge baseline on statistics over the whole
window, ``ridge_span`` the shipped ridge baseline (whole window or its last 10 s, chosen on the
held-out tasks of the training applications).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _lightning import StudyRegressor, compose_train, fit, mae_pp, runner

DEFAULTS = {"arch": "cloudformer", "d": 32, "heads": 2, "layers": 2, "dropout": 0.1, "lr": 2e-3, "wd": 0.01,
            "bs": 32, "ep": 5, "mdrop": 0.0, "noise": 0.0, "ema": 0.0, "init": 0, "mix": 0.0, "ens": 1,
            "skip": 0, "vrex": 0.0, "dann": 0.0, "mse": 0}  # fmt: skip


def parse(variant: str) -> dict[str, float | str]:
    recipe: dict[str, float | str] = dict(DEFAULTS)
    if variant != "base":
        for item in variant.split(","):
            key, value = item.split("=")
            if key not in DEFAULTS:
                raise SystemExit(f"unknown variant key {key!r}; known: {sorted(DEFAULTS)}")
            recipe[key] = value if key == "arch" else float(value)
    return recipe


def train(recipe: dict, train_w, vals: dict, group_sizes: list[int], window: int, seed: int) -> dict:
    if int(recipe["ens"]) > 1:
        members = [
            train({**recipe, "ens": 1, "init": int(recipe["init"]) + k}, train_w, vals, group_sizes, window, seed)
            for k in range(int(recipe["ens"]))
        ]
        final = {k: mae_pp(np.mean([m["predictions"][k] for m in members], 0), w) for k, w in vals.items()}
        final["members"] = [m["final"] for m in members]
        return {"final": final, "curve": members[0]["curve"], "seconds": sum(m["seconds"] for m in members)}
    return _train_one(recipe, train_w, vals, group_sizes, window, seed)


def _train_one(recipe: dict, train_w, vals: dict, group_sizes: list[int], window: int, seed: int) -> dict:
    """One network through the shipped LightningModule (``StudyRegressor``) and a Trainer."""
    from infragym.models.cloudformer.networks import NetworkSpec

    spec = NetworkSpec(arch=str(recipe["arch"]), d_model=int(recipe["d"]), n_heads=int(recipe["heads"]),
                       n_layers=int(recipe["layers"]), dropout=float(recipe["dropout"]), lr=float(recipe["lr"]),
                       weight_decay=float(recipe["wd"]), skip_tail=int(recipe["skip"]))  # fmt: skip

    def build() -> StudyRegressor:
        return StudyRegressor(
            spec=spec,
            group_sizes=group_sizes,
            window=window,
            n_applications=len(np.unique(train_w.workload)),
            mse=bool(recipe["mse"]),
            vrex=float(recipe["vrex"]),
            dann=float(recipe["dann"]),
            metric_dropout=float(recipe["mdrop"]),
            noise=float(recipe["noise"]),
            mixup=float(recipe["mix"]),
            ema=float(recipe["ema"]),
            val_names=tuple(vals),
        )

    result = fit(build, train_w, vals, epochs=int(recipe["ep"]), batch_size=int(recipe["bs"]),
                 seed=seed + int(recipe["init"]))  # fmt: skip
    for entry in result["curve"]:
        print(json.dumps(entry), flush=True)
    return result


BLEND = "+ridge"


def run_variant(variant: str, train_w, vals: dict, group_sizes: list[int], window: int, seed: int) -> dict:
    """``ridge`` / ``ridge_span`` fitted (validation: ``vals["val_tasks"]``), any other variant
    trained; ``<variant>+ridge`` is the equal-weight mean of that network's and the shipped
    ridge's predictions (weight fixed in advance, not tuned). The MAE in pp on every set of
    ``vals``."""
    from infragym.models.cloudformer.baselines import RidgeBaseline

    def mae(predictions: dict) -> dict:
        return {k: mae_pp(predictions[k], w) for k, w in vals.items()}

    if variant not in ("ridge", "ridge_span") and not variant.endswith(BLEND):
        result = train(parse(variant), train_w, vals, group_sizes, window, seed)
        result.pop("predictions", None)
        return result
    started = time.perf_counter()
    tails = (None,) if variant == "ridge" else (None, 10)
    ridge = RidgeBaseline(tails=tails).fit(train_w, vals["val_tasks"], np.random.default_rng(0))
    linear = {k: ridge.predict(w) for k, w in vals.items()}
    if not variant.endswith(BLEND):
        return {"final": mae(linear), "chosen": ridge.chosen, "seconds": time.perf_counter() - started}
    net = train(parse(variant.removesuffix(BLEND)), train_w, vals, group_sizes, window, seed)
    blend = {k: 0.5 * (linear[k] + net["predictions"][k]) for k in vals}
    final = {**mae(blend), "members": {"net": net["final"], "ridge": mae(linear)}}
    return {"final": final, "curve": net["curve"], "seconds": time.perf_counter() - started}


def emit(line: dict, out: Path | None) -> None:
    """Print a result line (without its curve) and append it, whole, to ``out``, labelled with
    the code that produced it."""
    line = {**line, "runner": runner()}
    print("RESULT " + json.dumps({k: v for k, v in line.items() if k != "curve"}), flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold", type=int, default=0, help="which 3 training applications are held out")
    parser.add_argument("--variants", nargs="+", default=["ridge", "base"])
    parser.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for the data")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from infragym.runner import build_task

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(["experiment=cloudformer", f"seed={args.seed}", "logger=none", *args.overrides], Path(tmp))
        task = build_task(cfg)
        dataset = task.dataset
        splits = task.prepare_data(save=False)
    apps = list(splits.seen_workloads)
    held = list(np.random.default_rng(1000 * args.seed + args.fold).choice(apps, size=3, replace=False))
    train_w = splits.train.subset(~np.isin(splits.train.workload, held))
    vals = {
        "val_apps": splits.train.subset(np.isin(splits.train.workload, held)),
        "val_tasks": splits.val.subset(~np.isin(splits.val.workload, held)),
    }
    print(f"held-out applications {held}; {len(train_w)} training windows", flush=True)
    for variant in args.variants:
        result = run_variant(variant, train_w, vals, list(splits.group_sizes.values()), dataset.window, args.seed)
        emit({"variant": variant, "seed": args.seed, "fold": args.fold, "held_out": held,
              "overrides": args.overrides, **result}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
