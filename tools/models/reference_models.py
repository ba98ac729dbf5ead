#!/usr/bin/python3
"""Independent PyTorch implementations of the encoders sluice runs, for its reference embeddings.

Debian 12 has no python3-transformers, so these follow the published modeling code line by line
for inference (dropout is the identity in eval mode and left out):

- BertModel: Hugging Face transformers' modeling_bert.py (BertEmbeddings, BertSelfAttention,
  BertSelfOutput, BertIntermediate, BertOutput, get_extended_attention_mask).
- RobertaModel / XLMRobertaModel: modeling_roberta.py, which is BERT with RobertaEmbeddings:
  position ids from create_position_ids_from_input_ids (padding_idx + the running count of
  non-padding ids, padding_idx for padding).
- JinaBertModel, two layouts, both with symmetric ALiBi (JinaBertEncoder.rebuild_alibi_tensor)
  and no position embeddings:
  - "implementation": jinaai/jina-bert-implementation (jina-embeddings-v2-small/base-en/de/es/zh):
    BERT attention, then JinaBertGLUMLP: gated_layers (no bias), act(first half) * second half,
    wo, layernorm(wo + residual).
  - "qk_post_norm": jinaai/jina-bert-v2-qk-post-norm (jina-embeddings-v2-base-code): layer_norm_q
    and layer_norm_k on the query and key projections; JinaBertLayer computes
    layer_norm_1(residual + attention_output) (the attention block has already added the residual
    once), then up_gated_layer (no bias): first half * act(second half), down_layer,
    layer_norm_2(residual + mlp_output).
  feed_forward_type "geglu" uses nn.GELU() (erf), "reglu" nn.ReLU().

Nothing here is shared with sluice's C++ encoder. Each model's forward takes input_ids,
attention_mask (and token_type_ids) int64 [batch, tokens] and returns last_hidden_state
[batch, tokens, hidden].
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

ACT2FN = {
    "gelu": nn.functional.gelu,
    "relu": nn.functional.relu,
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
}


def extended_mask(attention_mask, dtype=torch.float32):
    """get_extended_attention_mask: [B, 1, 1, S], 0 for real tokens, the float minimum for padding."""
    m = attention_mask[:, None, None, :].to(dtype=dtype)
    return (1.0 - m) * torch.finfo(dtype).min


# ---- BERT / RoBERTa ----


class BertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config["vocab_size"], config["hidden_size"],
                                            padding_idx=config.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], config["hidden_size"])
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
        self.register_buffer("position_ids", torch.arange(config["max_position_embeddings"]).expand((1, -1)),
                             persistent=False)

    def positions(self, input_ids):
        seq_length = input_ids.size()[1]
        return self.position_ids[:, 0:seq_length]

    def forward(self, input_ids, token_type_ids):
        position_ids = self.positions(input_ids)
        inputs_embeds = self.word_embeddings(input_ids)
        token_type_embeddings = self.token_type_embeddings(token_type_ids)
        embeddings = inputs_embeds + token_type_embeddings
        position_embeddings = self.position_embeddings(position_ids)
        embeddings += position_embeddings
        embeddings = self.LayerNorm(embeddings)
        return embeddings


class RobertaEmbeddings(BertEmbeddings):
    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config["pad_token_id"]
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], config["hidden_size"],
                                                padding_idx=self.padding_idx)

    def positions(self, input_ids):
        # create_position_ids_from_input_ids(input_ids, padding_idx, past_key_values_length=0)
        mask = input_ids.ne(self.padding_idx).int()
        incremental_indices = torch.cumsum(mask, dim=1).type_as(mask) * mask
        return incremental_indices.long() + self.padding_idx


class BertSelfAttention(nn.Module):
    def __init__(self, config, qk_norm=False):
        super().__init__()
        self.num_attention_heads = config["num_attention_heads"]
        self.attention_head_size = int(config["hidden_size"] / config["num_attention_heads"])
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config["hidden_size"], self.all_head_size)
        self.key = nn.Linear(config["hidden_size"], self.all_head_size)
        self.value = nn.Linear(config["hidden_size"], self.all_head_size)
        self.qk_norm = qk_norm
        if qk_norm:
            self.layer_norm_q = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
            self.layer_norm_k = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def transpose_for_scores(self, x):
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask, bias=None):
        if self.qk_norm:
            mixed_query_layer = self.layer_norm_q(self.query(hidden_states))
            key_layer = self.transpose_for_scores(self.layer_norm_k(self.key(hidden_states)))
        else:
            mixed_query_layer = self.query(hidden_states)
            key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        query_layer = self.transpose_for_scores(mixed_query_layer)
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_scores = attention_scores + attention_mask
        if bias is not None:
            attention_scores = attention_scores + bias  # JinaBERT: softmax(scores + mask + alibi)
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        context_layer = torch.matmul(attention_probs, value_layer)
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + (self.all_head_size,)
        context_layer = context_layer.view(new_context_layer_shape)
        return context_layer


class BertSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.LayerNorm(hidden_states + input_tensor)
        return hidden_states


class BertAttention(nn.Module):
    def __init__(self, config, qk_norm=False):
        super().__init__()
        self.self = BertSelfAttention(config, qk_norm)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask, bias=None):
        self_outputs = self.self(hidden_states, attention_mask, bias)
        return self.output(self_outputs, hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])
        self.intermediate_act_fn = ACT2FN[config["hidden_act"]]

    def forward(self, hidden_states):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.intermediate_act_fn(hidden_states)
        return hidden_states


class BertOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config["intermediate_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.LayerNorm(hidden_states + input_tensor)
        return hidden_states


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask):
        attention_output = self.attention(hidden_states, attention_mask)
        intermediate_output = self.intermediate(attention_output)
        return self.output(intermediate_output, attention_output)


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config["num_hidden_layers"])])

    def forward(self, hidden_states, attention_mask):
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask)
        return hidden_states


class BertModel(nn.Module):
    """Returns last_hidden_state only (the pooler is not used by sentence embeddings)."""

    embeddings_class = BertEmbeddings

    def __init__(self, config):
        super().__init__()
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids, attention_mask, token_type_ids):
        extended_attention_mask = extended_mask(attention_mask)
        embedding_output = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.encoder(embedding_output, extended_attention_mask)


class RobertaModel(BertModel):
    embeddings_class = RobertaEmbeddings

    def forward(self, input_ids, attention_mask):
        # RobertaModel's token_type_ids default to the zeros buffer.
        return super().forward(input_ids, attention_mask, torch.zeros_like(input_ids))


# ---- JinaBERT v2 ----


class JinaBertEmbeddings(nn.Module):
    """position_embedding_type "alibi": no position embeddings."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config["vocab_size"], config["hidden_size"],
                                            padding_idx=config.get("pad_token_id", 0))
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def forward(self, input_ids, token_type_ids):
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(embeddings)


def glu_activation(config):
    if config["feed_forward_type"] == "reglu":
        return nn.ReLU()
    if config["feed_forward_type"] == "geglu":
        return nn.GELU()
    raise ValueError(f"feed_forward_type {config['feed_forward_type']} not supported")


class JinaBertGLUMLPImplementation(nn.Module):
    """jina-bert-implementation's JinaBertGLUMLP."""

    def __init__(self, config):
        super().__init__()
        self.intermediate_size = config["intermediate_size"]
        self.gated_layers = nn.Linear(config["hidden_size"], config["intermediate_size"] * 2, bias=False)
        self.act = glu_activation(config)
        self.wo = nn.Linear(config["intermediate_size"], config["hidden_size"])
        self.layernorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def forward(self, hidden_states):
        residual_connection = hidden_states
        hidden_states = self.gated_layers(hidden_states)
        gated = hidden_states[:, :, : self.intermediate_size]
        non_gated = hidden_states[:, :, self.intermediate_size:]
        hidden_states = self.act(gated) * non_gated
        hidden_states = self.wo(hidden_states)
        return self.layernorm(hidden_states + residual_connection)


class JinaBertLayerImplementation(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.mlp = JinaBertGLUMLPImplementation(config)

    def forward(self, hidden_states, attention_mask, bias):
        attention_output = self.attention(hidden_states, attention_mask, bias)
        return self.mlp(attention_output)


class JinaBertGLUMLPQKPostNorm(nn.Module):
    """jina-bert-v2-qk-post-norm's JinaBertGLUMLP."""

    def __init__(self, config):
        super().__init__()
        self.intermediate_size = config["intermediate_size"]
        self.act = glu_activation(config)
        self.up_gated_layer = nn.Linear(config["hidden_size"], config["intermediate_size"] * 2, bias=False)
        self.down_layer = nn.Linear(config["intermediate_size"], config["hidden_size"])

    def forward(self, hidden_states):
        hidden_mlp_states = self.up_gated_layer(hidden_states)
        up = hidden_mlp_states[:, :, : self.intermediate_size]
        gated = hidden_mlp_states[:, :, self.intermediate_size:]
        hidden_mlp_states = up * self.act(gated)
        return self.down_layer(hidden_mlp_states)


class JinaBertLayerQKPostNorm(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config, qk_norm=True)
        self.layer_norm_1 = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
        self.layer_norm_2 = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
        self.mlp = JinaBertGLUMLPQKPostNorm(config)

    def forward(self, hidden_states, attention_mask, bias):
        residual = hidden_states
        attention_output = self.attention(hidden_states, attention_mask, bias)
        residual = self.layer_norm_1(residual + attention_output)
        mlp_output = self.mlp(residual)
        return self.layer_norm_2(residual + mlp_output)


def alibi_head_slopes(n_heads):
    """JinaBertEncoder.rebuild_alibi_tensor's _get_alibi_head_slopes."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return get_slopes_power_of_2(n_heads)
    closest_power_of_2 = 2 ** math.floor(math.log2(n_heads))
    return (get_slopes_power_of_2(closest_power_of_2)
            + alibi_head_slopes(2 * closest_power_of_2)[0::2][: n_heads - closest_power_of_2])


class JinaBertEncoder(nn.Module):
    def __init__(self, config, layer_class):
        super().__init__()
        self.num_attention_heads = config["num_attention_heads"]
        self.layer = nn.ModuleList([layer_class(config) for _ in range(config["num_hidden_layers"])])

    def rebuild_alibi_tensor(self, size):
        n_heads = self.num_attention_heads
        context_position = torch.arange(size)[:, None]
        memory_position = torch.arange(size)[None, :]
        relative_position = torch.abs(memory_position - context_position)
        relative_position = relative_position.unsqueeze(0).expand(n_heads, -1, -1)
        slopes = torch.Tensor(alibi_head_slopes(n_heads)) * -1
        alibi = slopes.unsqueeze(1).unsqueeze(1) * relative_position
        return alibi.unsqueeze(0)  # [1, n_heads, size, size]

    def forward(self, hidden_states, attention_mask):
        _, seqlen, _ = hidden_states.size()
        alibi_bias = self.rebuild_alibi_tensor(size=seqlen).to(hidden_states.dtype)
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask, alibi_bias)
        return hidden_states


class JinaBertModel(nn.Module):
    def __init__(self, config, layout):
        super().__init__()
        self.embeddings = JinaBertEmbeddings(config)
        layer_class = JinaBertLayerQKPostNorm if layout == "qk_post_norm" else JinaBertLayerImplementation
        self.encoder = JinaBertEncoder(config, layer_class)

    def forward(self, input_ids, attention_mask, token_type_ids):
        extended_attention_mask = extended_mask(attention_mask)
        embedding_output = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.encoder(embedding_output, extended_attention_mask)


# ---- loading ----


def read_safetensors(path):
    """name -> float32 torch tensor (F16/BF16 widened exactly); other dtypes are skipped."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        shape = info["shape"]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            continue
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out


def family(config):
    """("bert" | "roberta" | "jina", layout) for a config.json."""
    t = config["model_type"]
    if t in ("roberta", "xlm-roberta"):
        return "roberta", None
    if t == "bert" and config.get("position_embedding_type") == "alibi":
        return "jina", None
    if t == "bert":
        return "bert", None
    raise ValueError(f"model_type {t} is not implemented here")


def load_model(model_dir):
    """(model in eval mode, config dict, input names) for a model folder."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    kind, _ = family(config)
    config.setdefault("layer_norm_eps", 1e-12)
    config.setdefault("hidden_act", "gelu")
    config.setdefault("type_vocab_size", 2)
    weights = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if kind == "roberta":
        config.setdefault("pad_token_id", 1)
        model = RobertaModel(config)
        prefix = "roberta."
        inputs = ["input_ids", "attention_mask"]
    elif kind == "jina":
        layout = "qk_post_norm" if any(k.endswith("mlp.up_gated_layer.weight") for k in weights) else "implementation"
        model = JinaBertModel(config, layout)
        prefix = "bert."
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
    else:
        model = BertModel(config)
        prefix = "bert."
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
    if not any(k.startswith(prefix) for k in weights):
        prefix = ""
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # BertEmbeddings' position_ids is a non-persistent buffer, so it is never "missing".
    if missing or unexpected:
        sys.exit(f"{model_dir}: missing tensors {missing}, unexpected {unexpected}")
    model.eval()
    return model, config, inputs
