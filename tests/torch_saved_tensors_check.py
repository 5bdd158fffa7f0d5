"""Run on the torch backend by test_training_memory.py: bytes a training forward pass keeps.

Prints one JSON line: the distinct storages (bytes) that autograd keeps for the backward pass of
one keras_vit `TransformerBlock` and of Hugging Face's `ViTLayer` (sdpa attention) of the same
dimensions, on the same (batch, seq, hidden) input, with the storages' shapes, and the size of
one (batch, seq, intermediate) float32 tensor.
Usage: KERAS_BACKEND=torch python tests/torch_saved_tensors_check.py
"""

import json

import torch

from tests.torchvision_ops import declare_missing_torchvision_ops

declare_missing_torchvision_ops()  # transformers imports torchvision when it is installed
import transformers  # noqa: E402

from keras_vit.layers import TransformerBlock  # noqa: E402

BATCH, SEQ, HIDDEN, HEADS, INTERMEDIATE = 2, 197, 384, 6, 1536


def saved_storages(output):
    """{storage address: (bytes, shape of one tensor saved in it)} over output's autograd graph."""
    storages, stack, seen = {}, [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        # Built-in ops keep theirs as `_saved_<name>`, Python functions (custom gradients) in `saved_tensors`.
        saved = [getattr(node, name) for name in dir(node) if name.startswith("_saved_")]
        saved += list(getattr(node, "saved_tensors", None) or ())
        for value in saved:
            if isinstance(value, torch.Tensor) and value.numel() > 1:
                storage = value.untyped_storage()
                storages.setdefault(storage.data_ptr(), (storage.nbytes(), list(value.shape)))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return storages


def main():
    torch.manual_seed(0)
    tokens = torch.randn(BATCH, SEQ, HIDDEN, requires_grad=True)
    block = TransformerBlock(HIDDEN, HEADS, INTERMEDIATE, layer_norm_eps=1e-12)
    config = transformers.ViTConfig(
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        attn_implementation="sdpa",
    )
    hf_layer = transformers.models.vit.modeling_vit.ViTLayer(config).train()
    result = {"intermediate_bytes": BATCH * SEQ * INTERMEDIATE * 4}
    for name, output in (("keras_vit", block(tokens, training=True)), ("transformers", hf_layer(tokens))):
        output = output[0] if isinstance(output, tuple) else output
        storages = saved_storages(output).values()
        result[name] = {"bytes": sum(size for size, _ in storages), "shapes": sorted(shape for _, shape in storages)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
