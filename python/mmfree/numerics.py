"""The hardware's arithmetic primitives, in numpy: the one numerics spec (docs/numerics.md).

Every function here has a twin in ``hls/include/mmfree_numerics.h`` that computes the same bits:
float32 limited to IEEE-exact operations (+ - * / sqrt, compare), each rounded once, in the
order written here (no FMA contraction), integers for the ternary products, and an exp2
approximation of our own (no libm). ``tests/test_numerics_constants.py`` checks that the
constants below equal the C++ header's.

All functions work on the last axis of float32 arrays; leading axes are independent rows
(tokens), so the same code serves one decode step and a whole prefill.
"""

import numpy as np

F32 = np.float32

# Reductions (sum of squares) run in VEC_LANES partial sums: element k goes to lane k % 16, each lane
# adds in order of k, then the lanes are combined in a fixed binary tree (8, 4, 2, 1).
VEC_LANES = 16

EPS = F32(1e-6)            # every RMSNorm, inside BitLinear too
QMAX = F32(127.0)          # int8 codes are symmetric: -127..127
SIG_CLAMP = F32(30.0)      # sigmoid input clamped to [-30, 30]: sigmoid(30) rounds to 1.0f
LOG2E = F32("1.44269502")  # 0x3fb8aa3b
# 2^f on [0, 1): degree-6 polynomial, relative error < 9e-8 (coefficients: least squares on
# Chebyshev nodes, rounded to float32). Horner order, highest coefficient first.
EXP2_POLY = tuple(F32(c) for c in (
    "1", "0.693147004", "0.2402298", "0.0554835238", "0.00967847276", "0.00124430819", "0.00021690609"))


def lane_sum(v: np.ndarray) -> np.ndarray:
    """Sum over the last axis in the hardware's fixed order: 16 sequential lanes, then a tree."""
    v = np.asarray(v, dtype=F32)
    k = v.shape[-1]
    pad = (-k) % VEC_LANES
    if pad:
        v = np.concatenate([v, np.zeros(v.shape[:-1] + (pad,), F32)], axis=-1)
    rows = v.reshape(v.shape[:-1] + (-1, VEC_LANES))
    # cumsum is sequential by definition: lane j = ((v[j] + v[j+16]) + v[j+32]) + ...
    lanes = np.cumsum(rows, axis=-2, dtype=F32)[..., -1, :]
    width = VEC_LANES
    while width > 1:
        width //= 2
        lanes = lanes[..., :width] + lanes[..., width:2 * width]
    return lanes[..., 0]


def rsqrt_mean_eps(ss: np.ndarray, k: int) -> np.ndarray:
    """1 / sqrt(ss / k + eps): the RMSNorm factor from a sum of squares."""
    ms = np.asarray(ss, F32) / F32(k)
    return F32(1.0) / np.sqrt(ms + EPS)


def rms_factor(v: np.ndarray) -> np.ndarray:
    """1 / sqrt(mean(v^2) + eps), with the fixed-order sum; shape = v.shape[:-1]."""
    v = np.asarray(v, F32)
    return rsqrt_mean_eps(lane_sum(v * v), v.shape[-1])


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (exact: v - trunc(v) is exact in float32)."""
    t = np.trunc(v)
    frac = np.abs(v - t)
    return t + np.where(frac >= F32(0.5), np.sign(v), F32(0.0)).astype(F32)


def absmax(u: np.ndarray) -> np.ndarray:
    """max |u_k|, starting from 0 and skipping NaN (the hardware's ``a > m`` compare is false for NaN)."""
    a = np.abs(np.asarray(u, F32))
    return np.max(np.where(np.isnan(a), F32(0.0), a), axis=-1, initial=F32(0.0))


def quantize(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    """int8 codes round(u * (127 / m)) clamped to +-127; all zero where m == 0; code 0 where
    u * (127 / m) is NaN (defined for every input: NaN never reaches a float-to-int conversion).
    Returns float32."""
    m = np.asarray(m, F32)
    safe = np.where(m > 0, m, F32(1.0))
    s = np.where(m > 0, QMAX / safe, F32(0.0)).astype(F32)
    v = np.asarray(u * s[..., None], F32)
    q = np.clip(round_half_away(v), -QMAX, QMAX)
    return np.where(np.isnan(q), F32(0.0), q).astype(F32)


def out_scale(alpha, m, rscale) -> np.ndarray:
    """Per-token output scale of a BitLinear: ((alpha * m) * rscale) / 127."""
    return ((F32(alpha) * np.asarray(m, F32)) * np.asarray(rscale, F32)) / QMAX


EXP2_T_MAX = F32(126.0)    # exp2's argument is clamped to [-126, 126] (sigmoid's stays within +-43.3)


def exp2(t: np.ndarray) -> np.ndarray:
    """2^t for t clamped to [-126, 126]: 2^floor(t) built from bits times a polynomial of the
    fraction; NaN in, the same NaN out (defined for every input, no float-to-int cast of NaN)."""
    t0 = np.asarray(t, F32)
    nan = np.isnan(t0)
    t = np.clip(np.where(nan, F32(0.0), t0), -EXP2_T_MAX, EXP2_T_MAX).astype(F32)
    k = np.floor(t)
    f = t - k
    p = np.full_like(f, EXP2_POLY[-1])
    for c in EXP2_POLY[-2::-1]:
        p = p * f + c
    pow2k = ((k.astype(np.int32) + 127) << 23).astype(np.int32).view(F32)
    return np.where(nan, t0, p * pow2k).astype(F32)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + 2^(-clamp(z) * log2 e))."""
    z = np.clip(np.asarray(z, F32), -SIG_CLAMP, SIG_CLAMP)
    e = exp2((-z) * LOG2E)
    return F32(1.0) / (F32(1.0) + e)


def silu(z: np.ndarray) -> np.ndarray:
    """z * sigmoid(z)."""
    z = np.asarray(z, F32)
    return z * sigmoid(z)
