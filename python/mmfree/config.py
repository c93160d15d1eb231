"""HGRNBitConfig: the fields of the released ``config.json`` (model_type ``hgrn_bit``), torch-free."""

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

from .errors import ConfigError


def default_intermediate_size(hidden_size: int, hidden_ratio: int = 4) -> int:
    """The released HGRNBitMLP rule: 256 * ceil(int(d * ratio * 2/3) / 256)."""
    return 256 * math.ceil(int(hidden_size * hidden_ratio * 2 / 3) / 256)


@dataclass
class HGRNBitConfig:
    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    intermediate_size: Optional[int] = None
    hidden_ratio: int = 4
    rms_norm_eps: float = 1e-6
    num_heads: int = 1
    expand_ratio: int = 1
    attn_mode: str = "fused_recurrent"
    use_short_conv: bool = False
    conv_size: int = 4
    share_conv_kernel: bool = True
    use_lower_bound: bool = True
    hidden_act: str = "swish"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    use_cache: bool = True
    pad_token_id: Optional[int] = None
    bos_token_id: int = 1
    eos_token_id: int = 2
    tie_word_embeddings: bool = False
    fuse_cross_entropy: bool = True
    torch_dtype: str = "bfloat16"
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.intermediate_size is None:
            self.intermediate_size = default_intermediate_size(self.hidden_size, self.hidden_ratio)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"config.{name} must be a positive integer, got {v!r}")
        if self.use_short_conv:
            raise ConfigError("config.use_short_conv=true is not supported (the released checkpoints do not use it)")
        if self.expand_ratio != 1:
            raise ConfigError(f"config.expand_ratio={self.expand_ratio} is not supported (released checkpoints use 1)")
        if self.hidden_size % max(self.num_heads, 1):
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.attn_mode not in ("fused_recurrent", "naive", "recurrent"):
            raise ConfigError(f"config.attn_mode={self.attn_mode!r} is not supported")
        if self.tie_word_embeddings:
            raise ConfigError("tie_word_embeddings=true is not supported: lm_head is a ternary BitLinear of its own")
        if not (0 < float(self.rms_norm_eps) < 1):
            raise ConfigError(f"config.rms_norm_eps={self.rms_norm_eps!r} is out of range")

    # ---------------------------------------------------------------- derived
    @property
    def d(self) -> int:
        return self.hidden_size

    @property
    def n_layers(self) -> int:
        return self.num_hidden_layers

    # -------------------------------------------------------------------- I/O
    @classmethod
    def from_dict(cls, data: dict) -> "HGRNBitConfig":
        data = dict(data)
        mt = data.get("model_type", "hgrn_bit")
        if mt != "hgrn_bit":
            raise ConfigError(f"model_type is {mt!r}, expected 'hgrn_bit'")
        if "dtype" in data and "torch_dtype" not in data:  # newer transformers write `dtype`
            data["torch_dtype"] = data["dtype"]
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as e:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"bad config: {e}") from None

    @classmethod
    def from_json_file(cls, path: str) -> "HGRNBitConfig":
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        out = dict(extra)
        out.update(d)
        out["model_type"] = "hgrn_bit"
        out.setdefault("architectures", ["HGRNBitForCausalLM"])
        return out

    def save(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
