"""DeiT distillation on Fashion-MNIST over several seeds: held-out accuracy of no, soft and hard distillation.

For each seed, runs the main job's training (`examples/train_fashion_mnist.py`, imported
by path; same data split rule, teacher, student, recipe and budget, all flags passed
through) and reads the accuracies on the 10,000 held-out test images. Prints mean ± std
(sample std over seeds) per setting next to the DeiT paper's ordering: hard distillation
above soft above none with a convnet teacher (Touvron et al. 2021, Table 3: DeiT-B on
ImageNet, RegNetY-16GF teacher, top-1 at 224 px).

Run:  KERAS_BACKEND=tensorflow python benchmarks/distillation.py --seeds 0 1 2 [main-job flags, e.g. --epochs 10]
"""

import argparse
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

MAIN_JOB = Path(__file__).resolve().parents[1] / "examples" / "train_fashion_mnist.py"
SETTINGS = {  # result key -> (row name, DeiT-B top-1 in the paper's Table 3)
    "teacher": ("CNN teacher", "RegNetY-16GF teacher"),
    "deit_none": ("DeiT, no distillation", "81.8"),
    "deit_soft": ("DeiT, soft distillation", "81.8 (usual distillation)"),
    "deit_hard": ("DeiT, hard distillation", "83.0; 83.4 with the distillation token"),
}


def load_main_job():
    spec = importlib.util.spec_from_file_location("train_fashion_mnist", MAIN_JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args, job_argv = parser.parse_known_args(argv)
    if len(args.seeds) < 2:
        parser.error(f"Expected at least 2 seeds for a standard deviation. Received: --seeds {args.seeds}")
    job = load_main_job()
    job_args = [job.parse_args([*job_argv, "--seed", str(seed)]) for seed in args.seeds]  # flags checked up front

    import keras
    import tensorflow as tf

    runs, start = [], time.time()
    for seed_args in job_args:
        print(f"\n##### seed {seed_args.seed} #####")
        data, *_, results = job.run(seed_args)
        runs.append(results)
        print(f"seed {seed_args.seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()), flush=True)
    wall = time.time() - start

    budget = job_args[0]
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} CPU cores; Python {platform.python_version()}, "
        f"keras {keras.__version__}, tensorflow {tf.__version__}, backend {keras.backend.backend()}; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"Budget per seed: {data.name}, {len(data.x_train)} training images, {budget.epochs} epochs, batch "
        f"{budget.batch_size}, peak learning rate {budget.learning_rate}, DeiT hidden size {budget.hidden_size}; "
        f"{len(data.x_test)} held-out test images. Seeds {args.seeds}; {wall / 60:.1f} min in all."
    )
    print("\n| setting | held-out accuracy, mean ± std | per seed | DeiT paper, Table 3 (ImageNet top-1) |")
    print("| --- | --- | --- | --- |")
    for key, (name, paper) in SETTINGS.items():
        values = [run[key] for run in runs]
        per_seed = ", ".join(f"{v:.4f}" for v in values)
        print(f"| {name} | {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} | {per_seed} | {paper} |")
    means = {key: statistics.mean(run[key] for run in runs) for key in SETTINGS}
    order = sorted(("deit_none", "deit_soft", "deit_hard"), key=means.get, reverse=True)
    print(
        f"\nOrdering of the means: {' > '.join(SETTINGS[k][0].split(', ')[1] for k in order)}; "
        f"the paper's: hard distillation > soft distillation >= no distillation. "
        f"Hard above none in {sum(run['deit_hard'] > run['deit_none'] for run in runs)}/{len(runs)} seeds."
    )
    return runs


if __name__ == "__main__":
    main()
