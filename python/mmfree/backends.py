"""One backend interface for generation: ``pynq`` (board), ``emu`` (C-simulated kernel), ``golden``
(numpy spec), ``torch`` (float reference).

Every backend has ``name``, ``vocab_size``, ``eos_token_id``, ``tokenizer_json`` (or None),
``reset()``, ``prefill(ids) -> float32 [V]`` (logits after the last prompt token, state advanced),
``step(token) -> float32 [V]`` and ``close()``.

    b = make_backend("emu", "model.safetensors")
    logits = b.prefill([1, 2, 3]); logits = b.step(7); b.reset()
"""

import os
from typing import Optional, Sequence

import numpy as np

from .errors import ConfigError, DeviceError

BACKENDS = ("pynq", "emu", "golden", "torch")


class Backend:
    name = "?"
    packed = None

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def eos_token_id(self) -> Optional[int]:
        return self.config.eos_token_id

    @property
    def tokenizer_json(self) -> Optional[str]:
        return self.packed.tokenizer_json if self.packed is not None else None

    def reset(self):
        raise NotImplementedError

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def step(self, token: int) -> np.ndarray:
        raise NotImplementedError

    def close(self):
        pass

    def describe(self) -> str:
        return self.name


def _load_packed(model):
    from . import packed as pk

    if isinstance(model, pk.PackedModel):
        return model
    if os.path.isdir(str(model)):
        raise ConfigError(f"{model} is a folder: this backend runs a packed model file (`mmfree convert` makes one)")
    return pk.load(str(model))


class GoldenBackend(Backend):
    name = "golden"

    def __init__(self, model):
        from .golden import GoldenModel

        self.packed = _load_packed(model)
        self.config = self.packed.config
        self.model = GoldenModel(self.packed)

    def reset(self):
        self.model.reset()

    def prefill(self, ids):
        ids = [int(i) for i in ids]
        if not ids:
            raise ConfigError("empty prompt")
        return np.asarray(self.model.forward(ids)[-1], np.float32)

    def step(self, token):
        return np.asarray(self.model.step(int(token)), np.float32)


class AcceleratorBackend(Backend):
    """The driver on an overlay: ``emu`` (mmfree.emu.Overlay) or ``pynq`` (pynq.Overlay)."""

    def __init__(self, name, acc, overlay=None):
        self.name, self.acc, self.overlay = name, acc, overlay
        self.packed, self.config = acc.packed, acc.config

    def reset(self):
        self.acc.reset()

    def prefill(self, ids):
        return self.acc.prefill(ids)

    def step(self, token):
        return self.acc.step(token)

    def close(self):
        self.acc.close()
        if self.overlay is not None and hasattr(self.overlay, "close"):
            self.overlay.close()

    def describe(self):
        board = getattr(self.overlay, "board", None) or self.acc.limits
        return f"{self.name} ({board})" if isinstance(board, str) else self.name


def emu_backend(model, board: str = "kv260", **kw) -> AcceleratorBackend:
    from . import driver, emu

    packed = _load_packed(model)
    ol = emu.Overlay(board=board, **{k: kw.pop(k) for k in ("cma_bytes", "hang_after", "lib", "max_block_bytes") if k in kw})
    try:
        acc = driver.Accelerator(ol, packed, board=board, **kw)
    except Exception:
        ol.close()
        raise
    return AcceleratorBackend("emu", acc, ol)


def pynq_backend(model, board: Optional[str] = None, bitfile: Optional[str] = None, **kw) -> AcceleratorBackend:
    from . import driver

    acc = driver.open_board(_load_packed(model), bitfile=bitfile, board=board, **kw)
    return AcceleratorBackend("pynq", acc, acc.overlay)


class TorchBackend(Backend):
    """The float torch reference; needs the Hugging Face checkpoint folder (not a packed file)."""

    name = "torch"

    def __init__(self, hf_dir):
        if not os.path.isdir(str(hf_dir)):
            raise ConfigError(f"the torch backend needs a Hugging Face checkpoint folder, got {hf_dir!r} "
                              "(a packed file runs on emu, golden or pynq)")
        import torch
        from .model import HGRNBit

        self.torch = torch
        self.model = HGRNBit.from_pretrained(str(hf_dir))
        self.config = self.model.config
        tok = getattr(self.model, "tokenizer_file", None)
        self._tok_json = open(tok, encoding="utf-8").read() if tok else None
        self.state = None

    @property
    def tokenizer_json(self):
        return self._tok_json

    def reset(self):
        self.state = None

    def prefill(self, ids):
        ids = [int(i) for i in ids]
        if not ids:
            raise ConfigError("empty prompt")
        with self.torch.no_grad():
            logits, self.state = self.model.forward(self.torch.tensor([ids]), self.state, return_state=True,
                                                    parallel_scan=False)
        return logits[0, -1].numpy().astype(np.float32)

    def step(self, token):
        if self.state is None:
            self.state = self.model.init_state(1)
        logits, self.state = self.model.step(self.torch.tensor([int(token)]), self.state)
        return logits[0].numpy().astype(np.float32)


def default_backend() -> str:
    """``pynq`` on a board (pynq importable and an FPGA manager present), else ``emu``."""
    from . import driver

    return "pynq" if driver.pynq_available() and driver.on_board() else "emu"


def make_backend(name: str, model, board: Optional[str] = None, **kw) -> Backend:
    if name == "golden":
        return GoldenBackend(model)
    if name == "torch":
        return TorchBackend(model)
    if name == "emu":
        return emu_backend(model, board=board or "kv260", **kw)
    if name == "pynq":
        return pynq_backend(model, board=board, **kw)
    raise ConfigError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "GoldenBackend", "TorchBackend", "AcceleratorBackend", "emu_backend",
           "pynq_backend", "make_backend", "default_backend", "DeviceError"]
