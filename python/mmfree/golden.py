"""The golden model: what the hardware computes, in numpy, bit for bit (docs/numerics.md).

Runs from a packed file with numpy and safetensors only (it runs on the board too). Every
operation is a primitive of ``mmfree.numerics`` in the order the HLS kernels apply it; the
C-simulated kernels must reproduce every intermediate exactly.

    g = GoldenModel("model.safetensors")
    logits = g.step(token_id)            # one decode step, state kept in g.h
    logits = g.forward([1, 2, 3])        # prefill: [T, V], state advanced
    g.reset()

Ternary products: int8 codes x ternary codes summed exactly. Every partial sum is an integer of
magnitude <= 127 * K < 2^24, so a float32 matrix product gives the exact integer in any order;
that is how numpy computes them fast. ``trace`` dicts expose every intermediate for the tests.
"""

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from . import numerics as nx
from . import packed as pk
from .errors import ConfigError
from .safetensors_io import bf16_to_f32

F32 = np.float32


class GoldenModel:
    def __init__(self, model: Union[str, pk.PackedModel], cache_weights: bool = True):
        self.packed = model if isinstance(model, pk.PackedModel) else pk.load(model)
        self.config = cfg = self.packed.config
        self.d, self.inter = cfg.hidden_size, cfg.intermediate_size
        self.n_layers, self.vocab = cfg.num_hidden_layers, cfg.vocab_size
        t = self.packed.tensor
        self.lower_bounds = np.array(t("lower_bounds"), F32)
        self.one_minus_lb = F32(1.0) - self.lower_bounds
        self.vec: Dict[str, np.ndarray] = {}
        self.alpha: Dict[str, F32] = {}
        for name in self.packed.names:
            if name.endswith(".alpha"):
                self.alpha[name[:-6]] = F32(t(name)[0])
            elif name.endswith((".gain", "_norm")) or name == "final_norm":
                self.vec[name] = np.array(t(name), F32)
        self.cache_weights = cache_weights
        self._w: Dict[str, np.ndarray] = {}
        self.h = np.zeros((self.n_layers, self.d), F32)

    # -------------------------------------------------------------------- weights
    def weights(self, proj: str) -> np.ndarray:
        """Ternary codes of a projection as a float32 [N, K] matrix (cached)."""
        w = self._w.get(proj)
        if w is None:
            k = pk.proj_k(proj + ".codes", self.config)
            w = pk.unpack(self.packed.tensor(proj + ".codes"), k, self.packed.packing, dtype=F32)
            if self.cache_weights:
                self._w[proj] = w
        return w

    # ------------------------------------------------------------------ primitives
    def bitlinear(self, proj: str, u: np.ndarray, rscale: np.ndarray, trace: Optional[dict] = None):
        """Quantize u (already times its gain) to int8, ternary product, rescale. u: [T, K]."""
        m = nx.absmax(u)
        q = nx.quantize(u, m)
        acc = q @ self.weights(proj).T  # exact integers in float32
        scale = nx.out_scale(self.alpha[proj], m, rscale)
        out = acc * scale[:, None]
        if trace is not None:
            trace[proj] = {"absmax": m, "q": q.astype(np.int8), "acc": acc.astype(np.int32),
                           "scale": scale, "out": out}
        return out

    @staticmethod
    def block_rscale(x: np.ndarray, norm_w: np.ndarray) -> np.ndarray:
        """r_x * r_a for a BitLinear after a block RMSNorm: a = x * r_x * w, r_a = rms factor of a."""
        d = x.shape[-1]
        r_x = nx.rms_factor(x)
        t = x * norm_w
        ms_a = (r_x * r_x) * (nx.lane_sum(t * t) / F32(d))
        r_a = F32(1.0) / np.sqrt(ms_a + nx.EPS)
        return r_x * r_a

    # --------------------------------------------------------------------- layers
    def embed(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            bad = int(ids[(ids < 0) | (ids >= self.vocab)][0])
            raise ConfigError(f"token id {bad} is outside the vocabulary (0..{self.vocab - 1})")
        return bf16_to_f32(self.packed.tensor("embeddings")[ids])

    def layer(self, li: int, x: np.ndarray, h: np.ndarray, trace: Optional[dict] = None):
        """One HGRN-Bit layer over T tokens. x: [T, d], h: [d] (the layer's state before token 0).

        Returns (x after the layer [T, d], state after the last token [d]).
        """
        p = f"layers.{li}."
        v = self.vec
        rs = self.block_rscale(x, v[p + "attn_norm"])
        y_i = self.bitlinear(p + "i", x * v[p + "i.gain"], rs, trace)
        y_f = self.bitlinear(p + "f", x * v[p + "f.gain"], rs, trace)
        y_g = self.bitlinear(p + "g", x * v[p + "g.gain"], rs, trace)
        # MLGRU: f = lb + (1 - lb) * sigmoid(y_f); h = f * h + silu(y_i) * (1 - f)
        f = self.lower_bounds[li] + self.one_minus_lb[li] * nx.sigmoid(y_f)
        c = nx.silu(y_i) * (F32(1.0) - f)
        hs = np.empty_like(c)
        for t in range(c.shape[0]):
            h = f[t] * h + c[t]
            hs[t] = h
        # output gate: RMSNorm(g) * g_norm.w * SiLU(h)
        r_g = nx.rms_factor(y_g)
        o = ((y_g * r_g[:, None]) * v[p + "g_norm"]) * nx.silu(hs)
        x = x + self.bitlinear(p + "o", o * v[p + "o.gain"], nx.rms_factor(o), trace)
        # channel mixer: [gate | up] = BitLinear(RMSNorm(x) * mlp_norm.w); x += down(silu(gate) * up)
        rs2 = self.block_rscale(x, v[p + "mlp_norm"])
        gu = self.bitlinear(p + "gate_up", x * v[p + "gate_up.gain"], rs2, trace)
        z = nx.silu(gu[:, :self.inter]) * gu[:, self.inter:]
        x = x + self.bitlinear(p + "down", z * v[p + "down.gain"], nx.rms_factor(z), trace)
        if trace is not None:
            trace[p + "state"] = hs
            # vector keys never equal a projection's (i, f, g, o, gate_up, down: their trace dicts)
            trace[p + "forget"], trace[p + "o_in"], trace[p + "z"], trace[p + "x"] = f, o, z, x
        return x, h

    def head(self, x: np.ndarray, trace: Optional[dict] = None) -> np.ndarray:
        """Final RMSNorm + ternary lm_head: [T, d] -> logits [T, V]."""
        rs = self.block_rscale(x, self.vec["final_norm"])
        return self.bitlinear("lm_head", x * self.vec["lm_head.gain"], rs, trace)

    # ------------------------------------------------------------------ whole model
    def reset(self):
        """Zero the recurrent state (between prompts)."""
        self.h[:] = 0

    def forward(self, ids: Sequence[int], trace: Optional[dict] = None) -> np.ndarray:
        """Run tokens through the model from the current state; returns logits [T, V]."""
        x = self.embed(ids)
        if trace is not None:
            trace["embed"] = x
        for li in range(self.n_layers):
            x, self.h[li] = self.layer(li, x, self.h[li], trace)
        return self.head(x, trace)

    def step(self, token: int, trace: Optional[dict] = None) -> np.ndarray:
        """One decode step: logits [V] for ``token``, state advanced."""
        return self.forward([int(token)], trace)[0]

    def greedy(self, prompt: Sequence[int], n_new: int) -> List[int]:
        """Greedy decode n_new tokens after prompt (from a fresh state)."""
        self.reset()
        logits = self.forward(prompt)[-1]
        out = []
        for _ in range(n_new):
            tok = int(np.argmax(logits))
            out.append(tok)
            logits = self.step(tok)
        return out
