"""Run on the torch backend by test_training_memory.py: bytes a training forward pass keeps.

Prints one JSON line: the distinct storages (bytes) that autograd keeps for the backward pass of
one keras_vit `TransformerBlock`, without and with `gradient_checkpointing`, and of Hugging
Face's `ViTLayer` (sdpa attention) of the same dimensions, on the same (batch, seq, hidden)
input, with the storages' shapes, and the size of one (batch, seq, hidden) and one (batch,
seq, intermediate) float32 tensor.
Usage: KERAS_BACKEND=torch python tests/torch_saved_tensors_check.py
"""

import json

import torch

from tests.torchvision_ops import declare_missing_torchvision_ops

declare_missing_torchvision_ops()  # transformers imports torchvision when it is installed
import transformers  # noqa: E402

from keras_vit.layers import TransformerBlock  # noqa: E402

BATCH, SEQ, HIDDEN, HEADS, INTERMEDIATE = 2, 197, 384, 6, 1536


def saved_storages(forward):
    """{storage address: (bytes, shape of one tensor saved in it)} that autograd keeps from `forward()`.

    Read by `torch.autograd.graph.saved_tensors_hooks` while the forward pass runs: every
    tensor an op saves for its backward pass, outside checkpointed regions (inside them,
    `torch.utils.checkpoint` saves nothing but its inputs). Returns the storages and the output.
    """
    storages = {}

    def pack(tensor):
        if tensor.numel() > 1:
            storage = tensor.untyped_storage()
            storages.setdefault(storage.data_ptr(), (storage.nbytes(), list(tensor.shape)))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward()
    return storages, output


def main():
    torch.manual_seed(0)
    tokens = torch.randn(BATCH, SEQ, HIDDEN, requires_grad=True)
    block = TransformerBlock(HIDDEN, HEADS, INTERMEDIATE, layer_norm_eps=1e-12)
    checkpointed = TransformerBlock(HIDDEN, HEADS, INTERMEDIATE, layer_norm_eps=1e-12, gradient_checkpointing=True)
    config = transformers.ViTConfig(
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        attn_implementation="sdpa",
    )
    hf_layer = transformers.models.vit.modeling_vit.ViTLayer(config).train()
    result = {"hidden_bytes": BATCH * SEQ * HIDDEN * 4, "intermediate_bytes": BATCH * SEQ * INTERMEDIATE * 4}
    forwards = {
        "keras_vit": lambda: block(tokens, training=True),
        "keras_vit_checkpointing": lambda: checkpointed(tokens, training=True),
        "transformers": lambda: hf_layer(tokens),
    }
    for name, forward in forwards.items():
        storages, _ = saved_storages(forward)
        storages = storages.values()
        result[name] = {"bytes": sum(size for size, _ in storages), "shapes": sorted(shape for _, shape in storages)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
