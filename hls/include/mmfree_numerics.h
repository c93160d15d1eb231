/*
 * The hardware's float32 primitives: bit-for-bit twins of python/mmfree/numerics.py.
 *
 * Only IEEE-exact operations (+ - * / sqrt, compare), each rounded once, in numerics.py's order;
 * build with -ffp-contract=off (no FMA contraction). No libm: exp2 is our own polynomial; sqrt
 * goes through mmfree_sqrtf (hls::sqrtf in synthesis, std::sqrt, correctly rounded, in C-sim).
 */
#ifndef MMFREE_NUMERICS_H
#define MMFREE_NUMERICS_H

#include <stdint.h>
#ifdef __SYNTHESIS__
#include "hls_math.h"
#else
#include <cmath>
#endif
#include "mmfree_census.h"

namespace mmfree {

/* constants: numerics.py VEC_LANES, EPS, QMAX, SIG_CLAMP, LOG2E, EXP2_POLY (EXP2_T_MAX: below, beside exp2_) */
static const int VEC_LANES = 16;
static const float EPS = 1e-6f;
static const float QMAX = 127.0f;
static const float SIG_CLAMP = 30.0f;
static const float LOG2E = 1.44269502f; /* 0x3fb8aa3b */
static const float EXP2_C0 = 1.0f;
static const float EXP2_C1 = 0.693147004f;
static const float EXP2_C2 = 0.2402298f;
static const float EXP2_C3 = 0.0554835238f;
static const float EXP2_C4 = 0.00967847276f;
static const float EXP2_C5 = 0.00124430819f;
static const float EXP2_C6 = 0.00021690609f;

inline vf sqrtf_(vf v) {
#ifdef __SYNTHESIS__
    return hls::sqrtf(v);
#elif defined(MMFREE_CENSUS)
    return census_sqrt(v); /* one fsqrt, counted */
#else
    return std::sqrt(v); /* one correctly rounded sqrt (sqrtss); never libm's other functions */
#endif
}

inline vf bits_to_f32(uint32_t b) {
    union { uint32_t u; float f; } c;
    c.u = b;
    return c.f;
}

inline uint32_t f32_to_bits(vf f) {
    union { uint32_t u; float f; } c;
#if defined(MMFREE_CENSUS) && !defined(__SYNTHESIS__)
    c.f = f.get();
#else
    c.f = f;
#endif
    return c.u;
}

inline vf fabs_(vf v) { return v < 0.0f ? -v : v; }

/* numerics.rsqrt_mean_eps: 1 / sqrt(ss / k + eps) */
inline vf rsqrt_mean_eps(vf ss, int k) {
    vf ms = ss / (vf)k;
    return 1.0f / sqrtf_(ms + EPS);
}

/* floor, defined for every input: |t| >= 2^23 (already an integer), infinities and NaN come back
 * unchanged, so the (int) conversion only ever sees |t| < 2^23 */
inline vf floor_(vf t) {
    if (!(t > -8388608.0f && t < 8388608.0f)) return t;
    vf k = (vf)(int)t; /* trunc */
    if (k > t) k = k - 1.0f;
    return k;
}

/* numerics.exp2: 2^floor(t) from bits times a degree-6 polynomial of the fraction (Horner);
 * t clamped to [-126, 126] (numerics.EXP2_T_MAX), NaN returned as it came */
static const float EXP2_T_MAX = 126.0f;
inline vf exp2_(vf t) {
    if (t != t) return t;
    if (t < -EXP2_T_MAX) t = -EXP2_T_MAX;
    if (t > EXP2_T_MAX) t = EXP2_T_MAX;
    vf k = floor_(t);
    vf f = t - k;
    vf p = EXP2_C6;
    p = p * f; /* one rounded multiply, then one rounded add: never an FMA */
    p = p + EXP2_C5;
    p = p * f;
    p = p + EXP2_C4;
    p = p * f;
    p = p + EXP2_C3;
    p = p * f;
    p = p + EXP2_C2;
    p = p * f;
    p = p + EXP2_C1;
    p = p * f;
    p = p + EXP2_C0;
    vf pow2k = bits_to_f32((uint32_t)(((int)k + 127) << 23));
    return p * pow2k;
}

/* numerics.sigmoid: 1 / (1 + 2^(-clamp(z) * log2 e)) */
inline vf sigmoid_(vf z) {
    if (z < -SIG_CLAMP) z = -SIG_CLAMP;
    if (z > SIG_CLAMP) z = SIG_CLAMP;
    vf e = exp2_((-z) * LOG2E);
    return 1.0f / (1.0f + e);
}

/* numerics.silu: z * sigmoid(z) */
inline vf silu_(vf z) { return z * sigmoid_(z); }

/* numerics.round_half_away then clip to +-127 (numerics.quantize, per element); NaN -> 0, so the
 * (int) conversions below only ever see values in [-127, 127] */
inline int8_t quant_code(vf v) {
    if (v != v) return 0;
    if (v > QMAX) v = QMAX;   /* clip first: identical result for |v| > 127, keeps (int) defined */
    if (v < -QMAX) v = -QMAX;
    vf t = (vf)(int)v;
    vf fr = fabs_(v - t);
    vf sg = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
    vf r = t + (fr >= 0.5f ? sg : 0.0f);
    if (r > QMAX) r = QMAX;
    if (r < -QMAX) r = -QMAX;
    return (int8_t)(int)r;
}

/* numerics.quantize's scale: 127 / m, or 0 where m == 0 */
inline vf quant_scale(vf m) { return m > 0.0f ? QMAX / m : 0.0f; }

/* numerics.out_scale: ((alpha * m) * rscale) / 127 */
inline vf out_scale(vf alpha, vf m, vf rscale) { return ((alpha * m) * rscale) / QMAX; }

/* numerics.lane_sum's final tree over 16 lane partial sums: (8, 4, 2, 1) */
inline vf lane_tree(const vf lanes[VEC_LANES]) {
    vf t8[8], t4[4], t2[2];
    for (int j = 0; j < 8; j++) t8[j] = lanes[j] + lanes[j + 8];
    for (int j = 0; j < 4; j++) t4[j] = t8[j] + t8[j + 4];
    for (int j = 0; j < 2; j++) t2[j] = t4[j] + t4[j + 2];
    return t2[0] + t2[1];
}

}  // namespace mmfree

#endif /* MMFREE_NUMERICS_H */
