"""DeiT distillation on Fashion-MNIST over several seeds: held-out accuracy of no, soft and hard distillation.

For each seed, runs the main job's training (`examples/train_fashion_mnist.py`, imported
by path; same data split rule, teacher, student, recipe and budget, all flags passed
through) and reads the accuracies on the 10,000 held-out test images. Prints mean ± std
(sample std over seeds) per setting, and the per-seed difference hard − none with its mean
and standard error (std / sqrt(seeds)), next to the DeiT paper's ordering: hard
distillation above soft above none with a convnet teacher (Touvron et al. 2021, Table 3:
DeiT-B on ImageNet, RegNetY-16GF teacher, top-1 at 224 px).

Writes the per-seed numbers, the summary and the flags to `benchmarks/distillation_seeds.json`
(`--write`), which the main job reads to print its own run next to this reference. Seeds
can run in separate processes (each `--write` its own file) and be merged with
`--merge A.json B.json` (same flags required; no training).

Run:  KERAS_BACKEND=tensorflow python benchmarks/distillation.py --seeds 0 1 2 3 4 [main-job flags]
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

MAIN_JOB = Path(__file__).resolve().parents[1] / "examples" / "train_fashion_mnist.py"
REFERENCE = Path(__file__).resolve().with_name("distillation_seeds.json")
PAPER = {  # result key -> DeiT-B top-1 in the paper's Table 3
    "teacher": "RegNetY-16GF teacher",
    "deit_none": "81.8",
    "deit_soft": "81.8 (usual distillation)",
    "deit_hard": "83.0; 83.4 with the distillation token",
}


def load_main_job():
    spec = importlib.util.spec_from_file_location("train_fashion_mnist", MAIN_JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(runs):
    """Mean and sample std per setting, and the per-seed difference hard − none.

    Args:
        runs: list (one per seed, at least 2) of dicts result key -> held-out accuracy.

    Returns:
        dict: key -> {"mean", "std", "per_seed"} for each key of `PAPER`, and "hard_minus_none"
        -> {"mean", "std", "standard_error", "per_seed", "seeds_above"} (standard error =
        std / sqrt(seeds); seeds_above: seeds where hard > none).

    Raises:
        ValueError: fewer than 2 runs.
    """
    if len(runs) < 2:
        raise ValueError(f"Expected at least 2 seeds for a standard deviation. Received: {len(runs)} runs")
    summary = {}
    for key in PAPER:
        values = [run[key] for run in runs]
        summary[key] = {"mean": statistics.mean(values), "std": statistics.stdev(values), "per_seed": values}
    differences = [run["deit_hard"] - run["deit_none"] for run in runs]
    std = statistics.stdev(differences)
    summary["hard_minus_none"] = {
        "mean": statistics.mean(differences),
        "std": std,
        "standard_error": std / math.sqrt(len(differences)),
        "per_seed": differences,
        "seeds_above": sum(d > 0 for d in differences),
    }
    return summary


def format_table(summary, names):
    """The markdown table of `summarize`'s dict (accuracies as fractions, differences in points).

    Args:
        summary: `summarize`'s dict.
        names: dict result key -> row name (the main job's `RESULT_NAMES`).
    """
    lines = [
        "| setting | held-out accuracy, mean ± std | per seed | DeiT paper, Table 3 (ImageNet top-1) |",
        "| --- | --- | --- | --- |",
    ]
    for key, paper in PAPER.items():
        name, row = names[key], summary[key]
        per_seed = ", ".join(f"{v:.4f}" for v in row["per_seed"])
        lines.append(f"| {name} | {row['mean']:.4f} ± {row['std']:.4f} | {per_seed} | {paper} |")
    diff = summary["hard_minus_none"]
    per_seed = ", ".join(f"{100 * d:+.2f}" for d in diff["per_seed"])
    seeds = len(diff["per_seed"])
    lines.append(
        f"| hard − none (points) | {100 * diff['mean']:+.2f} ± {100 * diff['standard_error']:.2f} (mean ± standard "
        f"error); hard above none in {diff['seeds_above']}/{seeds} seeds | {per_seed} | +1.2 (83.0 − 81.8) |"
    )
    return "\n".join(lines)


def merge(records):
    """The runs of several records made with the same flags, one per seed (a later record's seed wins).

    Raises:
        ValueError: records made with different flags.
    """
    for record in records[1:]:
        if record["budget"] != records[0]["budget"]:
            raise ValueError(f"Expected records made with the same flags. Received: {records[0]['budget']} and {record['budget']}")
    return sorted({run["seed"]: run for record in records for run in record["runs"]}.values(), key=lambda run: run["seed"])


def write_record(path, budget, runs, machine, names):
    """Prints the table of `runs` (if 2 seeds or more) and writes the record the main job reads to `path`."""
    from keras_vit.atomic import write_text_atomically

    seeds = [run["seed"] for run in runs]
    summary = summarize(runs) if len(runs) >= 2 else None
    if summary:
        print(f"\nSeeds {seeds}:\n" + format_table(summary, names))
        order = sorted(("deit_none", "deit_soft", "deit_hard"), key=lambda key: summary[key]["mean"], reverse=True)
        print(
            f"\nOrdering of the means: {' > '.join(names[k].split(', ')[1] for k in order)}; "
            f"the paper's: hard distillation > soft distillation >= no distillation."
        )
    record = {"date": datetime.date.today().isoformat(), "machine": machine, "budget": budget}
    record.update(seeds=seeds, runs=runs, summary=summary)
    write_text_atomically(path, json.dumps(record, indent=1) + "\n")
    print(f"Wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--write", type=Path, default=REFERENCE, help="the JSON the main job reads")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="train nothing: merge these records' seeds into --write"
    )
    args, job_argv = parser.parse_known_args(argv)
    job = load_main_job()
    if args.merge:
        records = [json.loads(path.read_text()) for path in args.merge]
        machines = "; ".join(sorted({record["machine"] for record in records}))
        return write_record(args.write, records[0]["budget"], merge(records), machines, job.RESULT_NAMES)
    job_args = [job.parse_args([*job_argv, "--seed", str(seed)]) for seed in args.seeds]  # flags checked up front

    import keras
    import tensorflow as tf

    runs, start = [], time.time()
    for seed_args in job_args:
        print(f"\n##### seed {seed_args.seed} #####")
        data, *_, results = job.run(seed_args)
        runs.append({"seed": seed_args.seed, **results})
        print(f"seed {seed_args.seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()), flush=True)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"Python {platform.python_version()}, keras {keras.__version__}, tensorflow {tf.__version__}, "
        f"backend {keras.backend.backend()}"
    )
    budget = job.budget(job_args[0])
    print(f"\nMachine: {machine}")
    print(f"Budget per seed (the main job's flags): {budget}; {data.name}; {(time.time() - start) / 60:.1f} min.")
    write_record(args.write, budget, runs, machine, job.RESULT_NAMES)


if __name__ == "__main__":
    main()
