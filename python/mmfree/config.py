"""HGRNBitConfig: the fields of the released ``config.json`` (model_type ``hgrn_bit``), torch-free."""

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

from .errors import ConfigError

MAX_SIZE = 2**31 - 1  # sizes travel in 32-bit kernel registers
MAX_CONFIG_BYTES = 1 << 20


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
            ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE
                     for v in (self.hidden_size, self.hidden_ratio))
            if not ok:
                raise ConfigError(f"config.hidden_size ({self.hidden_size!r}) and hidden_ratio ({self.hidden_ratio!r}) "
                                  "must be positive integers")
            self.intermediate_size = default_intermediate_size(self.hidden_size, self.hidden_ratio)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        """Every field checked by type and range (a config comes from files: nothing is trusted)."""
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
            v = getattr(self, name)
            if not is_int(v) or v <= 0 or v > MAX_SIZE:
                raise ConfigError(f"config.{name} must be a positive integer up to {MAX_SIZE}, got {v!r}")
        for name in ("hidden_ratio", "num_heads", "expand_ratio", "conv_size"):
            v = getattr(self, name)
            if v is None and name in ("hidden_ratio", "conv_size"):  # unused once intermediate_size is known
                continue
            if not is_int(v) or v <= 0 or v > MAX_SIZE:
                raise ConfigError(f"config.{name} must be a positive integer, got {v!r}")
        for name in ("use_short_conv", "share_conv_kernel", "use_lower_bound", "use_cache",
                     "tie_word_embeddings", "fuse_cross_entropy"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ConfigError(f"config.{name} must be true or false, got {v!r}")
        for name in ("attn_mode", "hidden_act"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"config.{name} must be a string, got {getattr(self, name)!r}")
        if self.torch_dtype is not None and not isinstance(self.torch_dtype, str):
            raise ConfigError(f"config.torch_dtype must be a string, got {self.torch_dtype!r}")
        v = self.max_position_embeddings
        if v is not None and (not is_int(v) or v < 0):
            raise ConfigError(f"config.max_position_embeddings must be a non-negative integer, got {v!r}")
        v = self.initializer_range
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"config.initializer_range must be a finite number, got {v!r}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or not 0 <= v < self.vocab_size):
                raise ConfigError(f"config.{name} must be a token id in 0..{self.vocab_size - 1} (or null), got {v!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError("config extra fields must be a JSON object")
        if self.use_short_conv:
            raise ConfigError("config.use_short_conv=true is not supported (the released checkpoints do not use it)")
        if self.expand_ratio != 1:
            raise ConfigError(f"config.expand_ratio={self.expand_ratio} is not supported (released checkpoints use 1)")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.attn_mode not in ("fused_recurrent", "naive", "recurrent"):
            raise ConfigError(f"config.attn_mode={self.attn_mode!r} is not supported")
        if self.tie_word_embeddings:
            raise ConfigError("tie_word_embeddings=true is not supported: lm_head is a ternary BitLinear of its own")
        eps = self.rms_norm_eps
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (0 < eps < 1):
            raise ConfigError(f"config.rms_norm_eps={eps!r} is out of range (a number in (0, 1))")

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
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
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
        except (TypeError, ValueError, OverflowError) as e:  # pragma: no cover - validate() checks types first
            raise ConfigError(f"bad config: {e}") from None

    @classmethod
    def from_json_file(cls, path: str) -> "HGRNBitConfig":
        from .errors import FormatError
        from .safetensors_io import strict_json_loads
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config.json")
        try:
            data = strict_json_loads(raw, path)
        except FormatError as e:
            raise ConfigError(str(e)) from None
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
        from .fileio import write_json
        os.makedirs(folder, exist_ok=True)
        write_json(os.path.join(folder, "config.json"), self.to_dict(), indent=2, sort_keys=True)
