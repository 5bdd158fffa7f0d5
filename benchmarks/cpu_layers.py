"""CPU micro-benchmarks of the choices around keras_vit's layers, forward + backward, per backend.

Each case times two ways of computing the same function on DeiT-S/16 training shapes
(batch 16 at 224 px = 197 tokens, batch 8 at 384 px = 577 tokens; hidden 384, 6 heads):

- attention: `MultiHeadSelfAttention`'s explicit path (einsum, float32 softmax, einsum) vs
  `keras.ops.dot_product_attention` (PyTorch's SDPA on torch, XLA's math on TensorFlow and JAX);
- attention layout: `keras.ops.dot_product_attention` on (batch, seq, heads, head_dim) (its
  einsums on TensorFlow) vs the same math as `ops.matmul` on (batch, heads, seq, head_dim),
  transposed in and out;
- gelu: exact vs the tanh approximation, on (batch, seq, 1536);
- gelu form: `keras.ops.gelu` (exact; TensorFlow composes it with erfc, PyTorch runs one
  kernel) vs the same function written as 0.5·x·(1 + erf(x/√2)) in `keras.ops`;
- layernorm: `keras.layers.LayerNormalization` (PyTorch's `layer_norm` on torch, Keras'
  moments formula elsewhere) vs (x − mean)·rsqrt(mean((x − mean)²) + ε)·γ + β in `keras.ops`,
  on (batch, seq, 384);
- bias (PyTorch): a Dense 384 → 1536 with bias on (batch, seq, 384) as Keras runs it (matmul,
  then the bias added) vs one `torch.addmm`, as `torch.nn.Linear` runs it: the special path
  keras_vit would keep only for a win of at least 15 % (issue 30).

The gradient is taken with the backend's own machinery (tf.function + GradientTape,
jax.jit(jax.grad), torch autograd). Each backend runs in its own subprocess; within one,
the two variants alternate and the table shows the median ms and the ratio b / a.

Run: python benchmarks/cpu_layers.py [--backends tensorflow jax torch] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"224 px": (16, 197), "384 px": (8, 577)}
HIDDEN, HEADS, MLP = 384, 6, 1536


def fwd_bwd(fn, args):
    """Returns a no-argument callable computing fn(*args) and d sum(fn) / d args."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.Variable(a) for a in args]

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(fn(*args))
            return tape.gradient(loss, args)

        return lambda: [g.numpy() for g in step()]
    if backend == "jax":
        import jax

        grad = jax.jit(jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args)))))
        return lambda: jax.block_until_ready(grad(*args))
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in args]

    def backward():
        for t in tensors:
            t.grad = None
        fn(*tensors).sum().backward()

    return backward


def cases(batch, seq):
    import keras
    import numpy as np
    from keras import ops

    from keras_vit.layers.attention import MultiHeadSelfAttention

    rng = np.random.default_rng(0)
    qkv = [rng.normal(size=(batch, seq, HEADS, HIDDEN // HEADS)).astype("float32") for _ in range(3)]
    tokens = rng.normal(size=(batch, seq, HIDDEN)).astype("float32")
    kernel = (rng.normal(size=(HIDDEN, MLP)) * 0.02).astype("float32")
    wide = rng.normal(size=(batch, seq, MLP)).astype("float32")
    layer, scale = MultiHeadSelfAttention(HIDDEN, HEADS), (HIDDEN // HEADS) ** -0.5
    yield "attention", "explicit", "dot_product_attention", (
        fwd_bwd(lambda q, k, v: layer._explicit_attention(q * scale, k, v, None, False)[0], qkv),
        fwd_bwd(lambda q, k, v: ops.dot_product_attention(q, k, v, scale=scale), qkv),
    )
    yield "attention layout", "dot_product_attention", "head-major matmul", (
        fwd_bwd(lambda q, k, v: ops.dot_product_attention(q, k, v, scale=scale), qkv),
        fwd_bwd(lambda q, k, v: head_major_attention(q * scale, k, v), qkv),
    )
    yield "gelu", "exact", "tanh", (
        fwd_bwd(lambda x: ops.gelu(x, approximate=False), [wide]),
        fwd_bwd(lambda x: ops.gelu(x, approximate=True), [wide]),
    )
    yield "gelu form", "ops.gelu", "erf formula", (
        fwd_bwd(lambda x: ops.gelu(x, approximate=False), [wide]),
        fwd_bwd(lambda x: 0.5 * x * (1.0 + ops.erf(x * 0.5**0.5)), [wide]),
    )
    norm = keras.layers.LayerNormalization(epsilon=1e-12)
    norm.build((None, None, HIDDEN))
    gamma, beta = np.ones(HIDDEN, "float32"), np.zeros(HIDDEN, "float32")
    yield "layernorm", "Keras layer", "centred formula", (
        fwd_bwd(with_weights(norm, norm, ("gamma", "beta")), [tokens, gamma, beta]),
        fwd_bwd(centred_layer_norm, [tokens, gamma, beta]),
    )
    if keras.backend.backend() == "torch":
        import torch

        dense = keras.layers.Dense(MLP)
        dense.build((None, None, HIDDEN))
        weights = [tokens, kernel, np.zeros(MLP, "float32")]
        yield "bias", "Dense call", "addmm", (
            fwd_bwd(with_weights(dense, dense, ("kernel", "bias")), weights),
            fwd_bwd(lambda x, w, b: torch.addmm(b, x.reshape(-1, HIDDEN), w).reshape(batch, seq, MLP), weights),
        )
    keras.backend.clear_session()


def with_weights(layer, fn, names):
    """fn'(x, *weights) = fn(x) with `layer`'s weights `names` set to `weights` (stateless)."""
    import keras

    def applied(x, *weights):
        with keras.StatelessScope([(getattr(layer, name), w) for name, w in zip(names, weights)]):
            return fn(x)

    return applied


def head_major_attention(query, key, value):
    """softmax(q·kᵀ)·v as `ops.matmul` on (batch, heads, seq, head_dim); in and out (batch, seq, heads, head_dim)."""
    from keras import ops

    query, key, value = (ops.transpose(t, (0, 2, 1, 3)) for t in (query, key, value))
    probs = ops.softmax(ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))), axis=-1)
    return ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3))


def centred_layer_norm(x, gamma, beta, epsilon=1e-12):
    """Layer normalisation over the last axis written from its definition (Ba et al. 2016)."""
    from keras import ops

    centred = x - ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(centred), axis=-1, keepdims=True)
    return centred * ops.rsqrt(variance + epsilon) * gamma + beta


def worker(repeats):
    rows = []
    for shape_name, (batch, seq) in SHAPES.items():
        for case, name_a, name_b, (run_a, run_b) in cases(batch, seq):
            times = ([], [])
            for i in range(repeats + 2):
                for run, out in zip((run_a, run_b), times):
                    start = time.perf_counter()
                    run()
                    if i >= 2:
                        out.append(time.perf_counter() - start)
            a, b = (statistics.median(t) * 1e3 for t in times)
            rows.append([case, shape_name, name_a, a, name_b, b])
    print(json.dumps(rows), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()}; median of {args.repeats} alternated runs\n")
    print("| backend | case | shape | a | a ms | b | b ms | b / a |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, __file__, "--worker", str(args.repeats)], env=env, capture_output=True, text=True
        )
        if result.returncode:
            print(f"{backend} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
            continue
        for case, shape, name_a, a, name_b, b in json.loads(result.stdout.strip().splitlines()[-1]):
            print(f"| {backend} | {case} | {shape} | {name_a} | {a:.1f} | {name_b} | {b:.1f} | {b / a:.2f} |", flush=True)
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]))
    else:
        main()
