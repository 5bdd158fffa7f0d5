"""CPU training step: keras_vit (TensorFlow, JAX, PyTorch backends) vs keras-hub and transformers.

One training step = forward + backward + optimizer update on random data, DeiT-S/16 dimensions
(hidden 384, 12 layers, 6 heads, MLP 1536, patch 16, no distillation token: every peer has
this ViT architecture), 10 classes, float32. keras_vit and keras-hub train through
`train_on_batch` after `compile(optimizer)`, keras-hub with sparse cross-entropy from logits,
keras_vit with its built-in loss (the same function), both with Keras' default `jit_compile="auto"`
(`--jit-compile`; no XLA on a machine without a GPU); transformers (PyTorch, sdpa attention) through
`loss.backward()` and the `torch.optim` optimizer of the same name. The optimizer is AdamW
(lr 1e-4), or SGD with `--optimizer sgd`, which keeps no state, so the difference between the
two runs is what each framework's AdamW (its moments and its update's temporaries) adds to the step.

Each framework runs in its own subprocess (one process per framework, resolution and
repeat), so peak RSS (`ru_maxrss`, whole process: runtime, weights, optimizer state and
activations) is its own. `import keras` also imports jax, scikit-learn and matplotlib whenever
they are installed (as in the test environment), on every backend: about 0.2 GiB more RSS than a
venv with only `pip install keras-vit torch transformers` (or `jax`) gives a user of one backend;
each worker notes what it loaded of these and of TensorFlow. Frameworks are alternated
round-robin within each repeat so background load hits all alike; the tables show medians over
repeats and the ratio to transformers measured in the same run (below 1.0: faster / smaller
than transformers).

The sweep (`--sweep-resolutions`) trains the `--sweep-frameworks` at a fixed batch on growing
images (tokens = (res/16)^2 + 1) to show how time and memory grow with the token count.

Peers install with:  pip install keras-hub transformers torch==2.13.0
Quick run:   python benchmarks/cpu_training.py --frameworks keras_vit-torch transformers --resolutions 224
Full table:  python benchmarks/cpu_training.py --repeats 3 --sweep-resolutions 224 384 512
Before/after in one run: --baseline DIR adds keras_vit from another checkout (e.g. `git worktree add DIR main`).
Recomputation: --gradient-checkpointing builds keras_vit with `gradient_checkpointing=True` and calls
transformers' `gradient_checkpointing_enable()` (keras-hub has no such switch and runs unchanged).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEIT_SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, patch_size=16)
NUM_LABELS = 10
FRAMEWORKS = ("keras_vit-tensorflow", "keras_vit-jax", "keras_vit-torch", "keras-hub", "transformers")
BATCHES = {224: 16, 384: 8}
PEER = "transformers"
# Modules that Keras imports whenever they are installed (its Orbax callback imports jax, its
# scikit-learn wrappers sklearn, its image gallery matplotlib), or that a torch or JAX process
# should not need (tensorflow); each worker reports which it loaded, since they count in its RSS.
OPTIONAL_MODULES = ("tensorflow", "jax", "sklearn", "matplotlib")


def _torch_step(res, x, y, options):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        **DEIT_SMALL, image_size=res, num_labels=NUM_LABELS, attn_implementation="sdpa"
    )
    model = transformers.ViTForImageClassification(config).train()
    if options["checkpointing"]:
        model.gradient_checkpointing_enable()
    optimizer = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[options["optimizer"]](model.parameters(), lr=1e-4)
    pixels, labels = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)

    def step():
        optimizer.zero_grad()
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()

    return step


def keras_hub_classifier(res):
    """keras-hub's `ViTImageClassifier` with DeiT-S/16 dimensions, logits out, no preprocessor."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(res, res, 3),
        patch_size=DEIT_SMALL["patch_size"],
        num_layers=DEIT_SMALL["num_hidden_layers"],
        num_heads=DEIT_SMALL["num_attention_heads"],
        hidden_dim=DEIT_SMALL["hidden_size"],
        mlp_dim=DEIT_SMALL["intermediate_size"],
    )
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=NUM_LABELS, preprocessor=None, activation=None)


def _keras_step(framework, res, x, y, options):
    import keras

    # Keras' unseeded initializers draw from Python's `random`. Not `keras.utils.set_random_seed`:
    # it imports TensorFlow on every backend, +0.45 GiB peak RSS in a torch or JAX process.
    random.seed(0)
    if framework == "keras-hub":
        model = keras_hub_classifier(res)
    else:
        import keras_vit

        config = keras_vit.ViTConfig(**DEIT_SMALL, image_size=res, num_labels=NUM_LABELS)
        model = keras_vit.ViTForImageClassification(config)
        if options["checkpointing"]:
            model.gradient_checkpointing_enable()
    jit = {"auto": "auto", "true": True, "false": False}[options["jit_compile"]]
    # keras_vit trains with its built-in loss (what `compile` without a loss gives): softmax
    # cross-entropy on the class ids, the same function as keras-hub's.
    loss = None if framework.startswith("keras_vit") else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = {"adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}[options["optimizer"]](1e-4)
    model.compile(optimizer, loss=loss, jit_compile=jit)
    return lambda: model.train_on_batch(x, y)


def worker(framework, res, batch, steps, options):
    """Runs in the subprocess: prints one JSON line with the median step time and peak RSS."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, res, res, 3)).astype("float32")
    y = rng.integers(0, NUM_LABELS, (batch,))
    if framework == PEER:
        import torch

        torch.set_num_threads(os.cpu_count())
        step = _torch_step(res, x, y, options)
    else:
        step = _keras_step(framework, res, x, y, options)
    step()  # builds / traces / compiles
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    loaded = [name for name in OPTIONAL_MODULES if name in sys.modules]
    print(json.dumps({"step_s": statistics.median(times), "peak_rss_bytes": peak, "loaded": loaded}), flush=True)


def run_worker(script, framework, label, backend, args, baseline=None):
    """Runs `script --worker NAME *args` in a subprocess on Keras `backend`; returns its JSON line.

    NAME is `framework` without a trailing "@baseline"; with it, keras_vit is imported from the
    checkout `baseline` instead of this one. Returns the last stdout line starting with "{",
    parsed, or None after printing the end of stderr under `framework` and `label` on failure.
    """
    name = framework.removesuffix("@baseline")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    env["PYTHONPATH"] = str(baseline if framework != name else ROOT)
    command = [sys.executable, str(script), "--worker", name, *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        print(f"  {framework} {label} failed:\n{result.stderr[-2000:]}", file=sys.stderr, flush=True)
        return None
    return json.loads(lines[-1])


def run_one(framework, res, batch, steps, options, baseline=None):
    """Launches one worker subprocess; returns (seconds per step, peak RSS GiB) or None on failure."""
    name = framework.removesuffix("@baseline")
    backend = name.split("-", 1)[1] if name.startswith("keras_vit-") else "tensorflow"
    out = run_worker(__file__, framework, f"{res} px", backend, (res, batch, steps, json.dumps(options)), baseline)
    if out is None:
        return None
    own = {"keras_vit-tensorflow": "tensorflow", "keras-hub": "tensorflow", "keras_vit-jax": "jax"}.get(name)
    foreign = [module for module in out["loaded"] if module != own]
    if foreign:
        print(f"  note: {framework} loaded {', '.join(foreign)}; its peak RSS includes them", file=sys.stderr)
    return out["step_s"], out["peak_rss_bytes"] / 2**30


def load():
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(frameworks, settings, repeats, steps, options, baseline):
    """Returns {(framework, res, batch): (median s, median GiB)}, alternating frameworks in each repeat."""
    samples = {(f, r, b): [] for r, b in settings for f in frameworks}
    for repeat in range(repeats):
        for res, batch in settings:
            for framework in frameworks:
                out = run_one(framework, res, batch, steps, options, baseline)
                if out:
                    samples[framework, res, batch].append(out)
                    print(f"  repeat {repeat}: {framework} {res} px batch {batch}: {out[0]:.2f} s, "
                          f"{out[1]:.2f} GiB ({load()})", file=sys.stderr, flush=True)
    return {
        key: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v)) if v else None
        for key, v in samples.items()
    }


def cell(result, peer):
    if result is None:
        return "failed"
    text = f"{result[0]:.2f} s, {result[1]:.2f} GiB"
    if peer and result is not peer:
        text += f" ({result[0] / peer[0]:.2f}x, {result[1] / peer[1]:.2f}x)"
    return text


def print_table(results, frameworks, settings):
    print("| resolution, batch | " + " | ".join(frameworks) + " |")
    print("| --- " * (len(frameworks) + 1) + "|")
    for res, batch in settings:
        peer = results.get((PEER, res, batch))
        cells = [cell(results[f, res, batch], peer) for f in frameworks]
        print(f"| {res} px, {batch} | " + " | ".join(cells) + " |", flush=True)


def versions():
    names = ("keras", "tensorflow", "jax", "torch", "transformers", "keras-hub")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--resolutions", type=int, nargs="*", default=list(BATCHES), choices=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=3, help="processes per framework and setting")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process, after 2 warm-up steps")
    parser.add_argument("--sweep-resolutions", type=int, nargs="*", default=[])
    parser.add_argument("--sweep-frameworks", nargs="+", default=["keras_vit-torch", PEER], choices=FRAMEWORKS)
    parser.add_argument("--sweep-batch", type=int, default=4)
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                        help="Keras compile(jit_compile=...) for keras_vit and keras-hub")
    parser.add_argument("--baseline", type=Path, help="another keras_vit checkout, run as keras_vit-*@baseline")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="keras_vit gradient_checkpointing=True, transformers gradient_checkpointing_enable()")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                        help="every framework's own AdamW or SGD, learning rate 1e-4")
    args = parser.parse_args()
    options = dict(jit_compile=args.jit_compile, checkpointing=args.gradient_checkpointing, optimizer=args.optimizer)

    def with_baseline(names):
        return list(names) + [f"{f}@baseline" for f in names if args.baseline and f.startswith("keras_vit-")]

    frameworks, sweep_frameworks = with_baseline(args.frameworks), with_baseline(args.sweep_frameworks)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; {load()}")
    print(f"versions: {versions()}; python {platform.python_version()}")
    print(f"DeiT-S/16 dims, {NUM_LABELS} classes, float32, {args.optimizer}; median over {args.repeats} processes of the "
          f"median of {args.steps} steps; jit_compile={args.jit_compile}; "
          f"gradient_checkpointing={args.gradient_checkpointing}; cells: s/step, peak RSS "
          f"(ratio to {PEER} time, memory)\n", flush=True)
    settings = [(res, BATCHES[res]) for res in args.resolutions]
    if settings:
        results = measure(
            frameworks, settings, args.repeats, args.steps, options, args.baseline
        )
        print_table(results, frameworks, settings)
    if args.sweep_resolutions:
        sweep = [(res, args.sweep_batch) for res in args.sweep_resolutions]
        results = measure(
            sweep_frameworks, sweep, args.repeats, args.steps, options, args.baseline
        )
        print(f"\nresolution sweep, batch {args.sweep_batch} (tokens = (res/16)^2 + 1)\n")
        print_table(results, sweep_frameworks, sweep)
    print(f"\n{load()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6]))
    else:
        main()
