"""Pure-PyTorch reference of the released HGRNBit model (MatMul-free LM, arXiv 2406.02528).

This is the *float* reference: it computes what the released Triton code computes
(``ridgerchu/matmulfreellm``, ``mmfreelm/models/hgrn_bit``), on the CPU or CUDA, without Triton.
The hardware spec is ``mmfree.golden``; this module is what the golden model is measured against.

Per token, per layer (as the released code computes it; docs/numerics.md has the hardware version)::

    a = RMSNorm(x) * attn_norm.w
    f = lb + (1 - lb) * sigmoid(BitLinear_f(a));  h = f * h + (1 - f) * SiLU(BitLinear_i(a))
    x = x + BitLinear_o(RMSNorm(BitLinear_g(a)) * g_norm.w * SiLU(h))
    m = RMSNorm(x) * mlp_norm.w;  [gate | up] = BitLinear_gate_proj(m)
    x = x + BitLinear_down(SiLU(gate) * up)
    logits = BitLinear_lm_head(RMSNorm(x) * norm.w)

Parameter names follow the released checkpoints (``model.layers.N.attn.i_proj.weight``, ...), so
``from_pretrained`` / ``save_pretrained`` read and write the released Hugging Face format.
"""

import os
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import HGRNBitConfig
from .errors import FormatError

__all__ = ["HGRNBit", "BitLinear", "RMSNorm", "round_half_away", "weight_quant", "activation_quant"]


# ---------------------------------------------------------------------------------------------
# Quantizers (the released FusedBitLinear, fp32)
# ---------------------------------------------------------------------------------------------

def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (the Triton kernel's ``tl.math.round``)."""
    t = torch.trunc(v)
    return t + torch.where((v - t).abs() >= 0.5, torch.sign(v), torch.zeros_like(v))


def weight_alpha(w: torch.Tensor) -> torch.Tensor:
    """Per-tensor absmean ``alpha = mean|W|`` (accumulated in float64, returned as float32)."""
    return w.detach().double().abs().mean().float().clamp(min=1e-5)


def weight_codes(w: torch.Tensor, alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Ternary codes ``clamp(round(W / alpha), -1, 1)`` in float32 (torch.round: ties to even)."""
    if alpha is None:
        alpha = weight_alpha(w)
    scale = (1.0 / alpha).float()
    return (w.float() * scale).round().clamp(-1, 1)


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    """Fake-quantized weight ``codes * alpha`` (what the released code feeds to F.linear)."""
    alpha = weight_alpha(w)
    return weight_codes(w, alpha) * alpha


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8 fake quantization: ``round(x * 127/max|x|) / (127/max|x|)``."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return round_half_away(x * s).clamp(-128, 127) / s


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()


class BitLinear(nn.Module):
    """RMSNorm (own gain, eps 1e-6) -> int8 absmax activations -> ternary absmean weights.

    The straight-through estimator makes the same module trainable (quantization-aware
    training as in the released code); the forward value is the same in train and eval.
    """

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-6):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.norm = RMSNorm(in_features, eps)
        self._codes_cache = None  # (weight version, data pointer, dtype, alpha, codes) for inference

    def ternary(self):
        """(alpha, codes) of the current weight; cached in eval mode only.

        The cache is dropped whenever the module changes mode (``train()``/``eval()``) and keyed on
        the weight's version counter, so an optimizer step between evaluations (some fused
        optimizers update parameters without bumping the version) never leaves stale codes.
        """
        w = self.weight
        if self.training:
            alpha = weight_alpha(w)
            return alpha, weight_codes(w, alpha).to(w.dtype)
        key = (w._version, w.data_ptr(), w.dtype, w.device)
        if self._codes_cache is None or self._codes_cache[0] != key:
            alpha = weight_alpha(w)
            self._codes_cache = (key, alpha, weight_codes(w, alpha).to(w.dtype))
        return self._codes_cache[1], self._codes_cache[2]

    def train(self, mode: bool = True):
        self._codes_cache = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm(x)
        w = self.weight
        if torch.is_grad_enabled() and (xn.requires_grad or w.requires_grad):
            xq = xn + (activation_quant(xn) - xn).detach()
            wq = w + (weight_quant(w) - w).detach()
            return F.linear(xq.to(wq.dtype), wq)
        # Inference: the same value, computed as an exact integer product of the codes times the
        # two scales, so that a token's output does not depend on the batch shape (BLAS kernels
        # round differently for different shapes, and a flipped int8 code propagates in the state).
        s = 127.0 / xn.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        qx = round_half_away(xn * s).clamp(-128, 127)
        alpha, codes = self.ternary()
        acc = F.linear(qx.to(codes.dtype), codes).float()
        return acc * (alpha / s)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

def hgrn_scan(f: torch.Tensor, c: torch.Tensor, h0: Optional[torch.Tensor], parallel: bool):
    """h_t = f_t * h_{t-1} + c_t over dim 1 of [B, T, d]. Returns (all h, last h).

    ``parallel`` uses a log-depth doubling scan (for training); otherwise a sequential loop in
    float32, the order the released fused_recurrent kernel uses.
    """
    if h0 is not None:
        c = torch.cat([c[:, :1] + f[:, :1] * h0[:, None], c[:, 1:]], dim=1)
    if parallel:
        T, step = c.shape[1], 1
        while step < T:
            c = torch.cat([c[:, :step], c[:, step:] + f[:, step:] * c[:, :-step]], dim=1)
            f = torch.cat([f[:, :step], f[:, step:] * f[:, :-step]], dim=1)
            step *= 2
        return c, c[:, -1]
    hs, h = [], None
    for t in range(c.shape[1]):
        h = c[:, t] if h is None else f[:, t] * h + c[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1), h


class HGRNBitAttention(nn.Module):
    """The MLGRU token mixer: i/f/g projections, lower-bounded forget gate, gated output."""

    def __init__(self, cfg: HGRNBitConfig):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.i_proj = BitLinear(d, d)
        self.f_proj = BitLinear(d, d)
        self.g_proj = BitLinear(d, d)
        self.g_norm = RMSNorm(d, eps)
        self.o_proj = BitLinear(d, d)

    def forward(self, a, lower_bound, h0, parallel):
        i, f, g = self.i_proj(a), self.f_proj(a), self.g_proj(a)
        f = torch.sigmoid(f)
        f = lower_bound + (1 - lower_bound) * f
        c = F.silu(i) * (1 - f)
        hs, h_last = hgrn_scan(f, c, h0, parallel)
        o = self.g_norm(g) * F.silu(hs)  # RMSNorm(g) * w * SiLU(h): the code's order
        return self.o_proj(o), h_last


class HGRNBitMLP(nn.Module):
    def __init__(self, cfg: HGRNBitConfig):
        super().__init__()
        d, inter = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = BitLinear(d, 2 * inter)  # fused [gate | up], one alpha
        self.down_proj = BitLinear(inter, d)

    def forward(self, m):
        gate, up = self.gate_proj(m).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class HGRNBitBlock(nn.Module):
    def __init__(self, cfg: HGRNBitConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = HGRNBitAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = HGRNBitMLP(cfg)

    def forward(self, x, lower_bound, h0, parallel):
        o, h = self.attn(self.attn_norm(x), lower_bound, h0, parallel)
        x = x + o
        x = x + self.mlp(self.mlp_norm(x))
        return x, h


class HGRNBitBody(nn.Module):
    """``model.*`` in the checkpoint: embeddings, lower bounds, layers, final norm."""

    def __init__(self, cfg: HGRNBitConfig):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        if cfg.use_lower_bound:
            self.lower_bounds = nn.Parameter(torch.zeros(cfg.num_hidden_layers, cfg.hidden_size))
        self.layers = nn.ModuleList(HGRNBitBlock(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def lower_bound_table(lower_bounds: torch.Tensor) -> torch.Tensor:
    """Released transform: softmax over layers, cumsum, minus the first row (so row 0 is 0)."""
    lb = lower_bounds.float().softmax(0)
    lb = lb.cumsum(0)
    return lb - lb[0]


class HGRNBit(nn.Module):
    """HGRNBitForCausalLM: ``forward(ids[B, T]) -> logits[B, T, V]`` plus a recurrent ``step``."""

    def __init__(self, cfg: HGRNBitConfig):
        super().__init__()
        self.config = cfg
        self.model = HGRNBitBody(cfg)
        self.lm_head = BitLinear(cfg.hidden_size, cfg.vocab_size)
        self.tokenizer_file: Optional[str] = None
        self.reset_parameters()

    def reset_parameters(self, std: Optional[float] = None):
        std = self.config.initializer_range if std is None else std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith("lower_bounds"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, std)

    # ------------------------------------------------------------------ forward
    def lower_bound_rows(self) -> torch.Tensor:
        cfg = self.config
        if not cfg.use_lower_bound:
            return torch.zeros(cfg.num_hidden_layers, cfg.hidden_size, device=self.model.norm.weight.device)
        return lower_bound_table(self.model.lower_bounds)

    def init_state(self, batch_size: int = 1) -> List[torch.Tensor]:
        """The recurrent state: one float32 [B, d] vector per layer, all zeros."""
        dev = self.model.norm.weight.device
        return [torch.zeros(batch_size, self.config.hidden_size, device=dev) for _ in self.model.layers]

    def forward(self, input_ids: torch.Tensor, state: Optional[List[torch.Tensor]] = None,
                return_state: bool = False, parallel_scan: Optional[bool] = None):
        """Logits float32 [B, T, V] for ``input_ids`` [B, T] (continuing from ``state`` if given)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if parallel_scan is None:
            parallel_scan = self.training
        x = self.model.embeddings(input_ids).float()
        lbs = self.lower_bound_rows()
        new_state = []
        for li, layer in enumerate(self.model.layers):
            h0 = None if state is None else state[li]
            x, h = layer(x, lbs[li], h0, parallel_scan)
            new_state.append(h)
        logits = self.lm_head(self.model.norm(x)).float()
        return (logits, new_state) if return_state else logits

    @torch.no_grad()
    def step(self, token_ids: torch.Tensor, state: List[torch.Tensor]):
        """One decode step: ``token_ids`` [B] -> (logits [B, V], new state)."""
        logits, state = self.forward(token_ids.view(-1, 1), state, return_state=True, parallel_scan=False)
        return logits[:, 0], state

    # ---------------------------------------------------------------------- I/O
    @classmethod
    def from_pretrained(cls, path: str, device="cpu", dtype=torch.float32) -> "HGRNBit":
        """Load a Hugging Face checkpoint folder in the released format (bf16, fp16 or fp32)."""
        from . import hf  # local import: keeps the checkpoint reader in one place

        cfg = HGRNBitConfig.from_json_file(os.path.join(path, "config.json"))
        model = cls(cfg)
        expected = dict(model.state_dict())
        seen = set()
        for name, tensor in hf.iter_checkpoint_tensors(path, framework="pt"):
            if name not in expected:
                raise FormatError(f"{path}: unexpected tensor {name!r} in checkpoint")
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise FormatError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"config.json implies {tuple(expected[name].shape)}")
            expected[name].copy_(tensor.to(torch.float32))
            seen.add(name)
        missing = sorted(set(expected) - seen)
        if missing:
            raise FormatError(f"{path}: checkpoint is missing {len(missing)} tensor(s), e.g. {missing[0]!r}")
        tok = os.path.join(path, "tokenizer.json")
        model.tokenizer_file = tok if os.path.exists(tok) else None
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, path: str, dtype=torch.bfloat16, max_shard_bytes: Optional[int] = None,
                        dtype_key: str = "torch_dtype"):
        """Write the released format: config.json, model.safetensors (or shards + index)."""
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        names = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
        cfgd = self.config.to_dict()
        cfgd.pop("torch_dtype", None)
        cfgd[dtype_key] = names[dtype]
        cfgd.setdefault("transformers_version", "4.40.2")
        from .fileio import atomic_path, write_json  # every file: temporary file, then rename

        def save_st(tensors, fn):
            with atomic_path(os.path.join(path, fn)) as tmp:
                save_file(tensors, tmp, metadata=meta)

        write_json(os.path.join(path, "config.json"), cfgd, indent=2, sort_keys=True)
        write_json(os.path.join(path, "generation_config.json"),
                   {"bos_token_id": self.config.bos_token_id, "eos_token_id": self.config.eos_token_id}, indent=None)
        sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "pt"}
        if not max_shard_bytes:
            save_st(sd, "model.safetensors")
        else:
            shards, cur, size = [], {}, 0
            for k, v in sd.items():
                nb = v.numel() * v.element_size()
                if cur and size + nb > max_shard_bytes:
                    shards.append(cur)
                    cur, size = {}, 0
                cur[k] = v
                size += nb
            shards.append(cur)
            weight_map = {}
            for i, shard in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_st(shard, fname)
                weight_map.update({k: fname for k in shard})
            total = sum(v.numel() * v.element_size() for v in sd.values())
            write_json(os.path.join(path, "model.safetensors.index.json"),
                       {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        if self.tokenizer_file and os.path.exists(self.tokenizer_file):
            import shutil
            dst = os.path.join(path, "tokenizer.json")
            if os.path.abspath(dst) != os.path.abspath(self.tokenizer_file):
                with atomic_path(dst) as tmp:
                    shutil.copyfile(self.tokenizer_file, tmp)
