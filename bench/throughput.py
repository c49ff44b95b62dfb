"""Training throughput, ours vs the reference, interleaved; and what each knob is worth.

`throughput`: reference, ours, reference, ours, ... in one process, so that
load from other work hits both alike; the ratio is taken per round (ours over
the reference just before it) and its median reported, with the test accuracy
both reach after the same epochs.

`knobs`: ours alone, one setting at a time (batch size, XLA, the fused
batch norm), interleaved the same way: the evidence behind the defaults.
"""

from __future__ import annotations

from typing import Any

from bench.report import Result, Target
from bench.training_runs import JobTrainer, Measurement, ReferenceTrainer, job_run_defaults, median
from job.data import ImageData

THROUGHPUT_COLUMNS = ["round", "arm", "epochs", "train_images", "seconds", "images_per_s",
                      "images_per_cpu_s", "test_accuracy", "load"]
KNOB_COLUMNS = ["setting", "images_per_s", "images_per_cpu_s", "relative", "test_accuracy",
                "rounds"]


def throughput(data_dir: str, data: ImageData, epochs: int, rounds: int,
               subset: int | None) -> Result:
    reference, ours = ReferenceTrainer(data_dir, subset), JobTrainer(data, subset=subset)
    rows, pairs = [], []
    for number in range(1, rounds + 1):
        pair = [trainer.train(epochs) for trainer in (reference, ours)]
        print(f"throughput round {number}: " + ", ".join(
            f"{m.arm} {m.images_per_s:.0f} images/s, test accuracy {m.test_accuracy:.4f}"
            for m in pair), flush=True)
        rows += [m.row(round=number) for m in pair]
        pairs.append(pair)
    ratios = [ours.images_per_s / ref.images_per_s for ref, ours in pairs]
    cpu_ratios = [ours.images_per_cpu_s / ref.images_per_cpu_s for ref, ours in pairs]
    accuracy = {arm: median([m.test_accuracy for pair in pairs for m in pair if m.arm == arm])
                for arm in ("reference", "ours")}
    ratio = median(ratios)
    settings = {"epochs": epochs, "rounds": rounds, "subset": subset,
                "reference": "numpy arrays, batch 32, validation_split=0.2",
                "ours": {k: ours.config.to_json()[k] for k in ("batch_size", "jit_compile", "seed")}}
    targets = [Target("throughput ratio (median of rounds, wall clock)", round(ratio, 2), ">= 1.5",
                      ratio >= 1.5 and accuracy["ours"] >= accuracy["reference"],
                      f"per round {[round(r, 2) for r in ratios]}; per CPU-second "
                      f"{round(median(cpu_ratios), 2)}; test accuracy after {epochs} epochs "
                      f"(median): ours {accuracy['ours']:.4f}, reference "
                      f"{accuracy['reference']:.4f}")]
    return Result("throughput", "Training throughput: ours vs the reference (same network and "
                  "hyperparameters, same epochs)", settings, THROUGHPUT_COLUMNS, rows, targets)


KNOBS: dict[str, dict[str, Any]] = {  # one change from the `job run` defaults each
    "defaults": {},
    "batch 64": {"batch_size": 64},
    "batch 128": {"batch_size": 128},
    "batch 512": {"batch_size": 512},
    "Keras' unfused batch norm": {"fused_batch_norm": False},
    "jit_compile (XLA)": {"jit_compile": True},
}


def knobs(data: ImageData, epochs: int, rounds: int, subset: int | None,
          only: list[str] | None = None) -> Result:
    """Ours with each of `KNOBS` (or the `only` ones), interleaved over `rounds`."""
    settings = {label: KNOBS[label] for label in (only or KNOBS)}
    trainers = {label: JobTrainer(data, arm=label, subset=subset, **options)
                for label, options in settings.items()}
    runs: dict[str, list[Measurement]] = {label: [] for label in settings}
    for number in range(1, rounds + 1):
        for label, trainer in trainers.items():
            runs[label].append(trainer.train(epochs))
            print(f"knobs round {number}: {label} {runs[label][-1].images_per_s:.0f} images/s",
                  flush=True)
    baseline = median([m.images_per_s for m in runs[next(iter(settings))]])
    batch = job_run_defaults()["batch_size"]
    rows = []
    for label, measured in runs.items():
        speed = median([m.images_per_s for m in measured])
        rows.append({"setting": f"defaults (batch {batch})" if label == "defaults" else label,
                     "images_per_s": round(speed),
                     "images_per_cpu_s": round(median([m.images_per_cpu_s for m in measured])),
                     "relative": round(speed / baseline, 2),
                     "test_accuracy": round(median([m.test_accuracy for m in measured]), 4),
                     "rounds": len(measured)})
    return Result("knobs", "What each knob is worth on this machine (ours, one change at a time)",
                  {"epochs": epochs, "rounds": rounds, "subset": subset,
                   "train_images": len(next(iter(trainers.values())).splits.train)},
                  KNOB_COLUMNS, rows)
