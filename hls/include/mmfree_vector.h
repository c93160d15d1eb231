/*
 * Vector unit: the per-token float32 work between ternary products, in golden.py's order.
 *
 * Every pass walks its vector in blocks of VEC_LANES elements: elementwise passes at one block
 * per cycle (II=1), reductions at one block per MMFREE_RED_II cycles (lane j accumulates
 * elements j, j+16, j+32, ... in order, then the (8, 4, 2, 1) tree: numerics.lane_sum).
 * Inputs are on-chip arrays; parameters come from the layer blob's params block already loaded.
 */
#ifndef MMFREE_VECTOR_H
#define MMFREE_VECTOR_H

#include <stdint.h>
#include "mmfree_config.h"
#include "mmfree_numerics.h"
#include "mmfree_trace.h"

namespace mmfree {

static const int MAX_VBLK = (MAX_ROWS + VEC_LANES - 1) / VEC_LANES;

inline int nblocks(int n) { return (n + VEC_LANES - 1) / VEC_LANES; }

/* max |v[k] * g[k]| (numerics.absmax of u = v * gain) */
inline vf absmax_mul(const vf *v, const vf *g, int n) {
    MMFREE_FUNC("absmax_mul");
    vf lm[VEC_LANES];
#pragma HLS ARRAY_PARTITION variable=lm complete
    for (int j = 0; j < VEC_LANES; j++) lm[j] = 0.0f;
    const int nb = nblocks(n);
    MMFREE_COUNT(MMFREE_CYC_VEC, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=1
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < n) {
                const vf a = fabs_(v[k] * g[k]);
                if (a > lm[j]) lm[j] = a;
            }
        }
    }
    vf m = 0.0f;
    for (int j = 0; j < VEC_LANES; j++) m = lm[j] > m ? lm[j] : m;
    return m;
}

/* int8 codes of (v * g) * (127 / m) into the matvec's activation buffer q[beat][lane];
 * lanes past n (row padding) get 0. kp = beats * lanes_per_beat. */
inline void quantize_mul(const vf *v, const vf *g, int n, vf s, int lanes, int kp,
                         MMFREE_ELEM(int8_t) q[MAX_BEATS][MAX_LANES], int8_t *qtrace) {
    MMFREE_FUNC("quantize_mul");
    const int nb = nblocks(kp);
    MMFREE_COUNT(MMFREE_CYC_VEC, nb);
    int beat = 0, lane = 0;
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=1
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < kp) {
                const int8_t c = k < n ? quant_code((v[k] * g[k]) * s) : (int8_t)0;
                q[beat][lane] = c;
#ifndef __SYNTHESIS__
                if (qtrace && k < n) qtrace[k] = c;
#endif
                if (++lane == lanes) {
                    lane = 0;
                    ++beat;
                }
            }
        }
    }
}

/* out[p * rpp + r] = vf(acc[p][r]) * scale, rpp = ceil(rows / PORTS): one pass per port over its
 * rows in blocks of VEC_LANES, (port, block) counters instead of a divide: PORTS * ceil(rpp / lanes)
 * iterations. A block's lanes read one port's acc[p][rb..rb+15] and write out[p*rpp + rb + j]. */
inline void scale_out(const MMFREE_ELEM(int32_t) acc[PORTS][MAX_RPP], int rows, vf scale, vf *out) {
    MMFREE_FUNC("scale_out");
    const int rpp = (rows + PORTS - 1) / PORTS;
    const int total = PORTS * nblocks(rpp);
    MMFREE_COUNT(MMFREE_CYC_VEC, total);
    int p = 0, rb = 0, row0 = 0; /* row0 = p * rpp */
    for (int i = 0; i < total; i++) {
#pragma HLS PIPELINE II=1
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=PORTS*((MAX_RPP+VEC_LANES-1)/VEC_LANES)
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int r = rb + j;
            if (r < rpp && row0 + r < rows) out[row0 + r] = (vf)(int32_t)acc[p][r] * scale;
        }
        rb += VEC_LANES;
        if (rb >= rpp) {
            rb = 0;
            ++p;
            row0 += rpp;
        }
    }
}

/* 16 lane partial sums -> lane tree (numerics.lane_sum) */
struct LaneAcc {
    vf l[VEC_LANES];
    void clear() {
        for (int j = 0; j < VEC_LANES; j++) l[j] = 0.0f;
    }
    vf sum() const { return lane_tree(l); }
};

/* numerics.rms_factor(v) */
inline vf rms_factor(const vf *v, int n) {
    MMFREE_FUNC("rms_factor");
    LaneAcc a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nb = nblocks(n);
    MMFREE_COUNT(MMFREE_CYC_RED, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=MMFREE_RED_II
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < n) a.l[j] = a.l[j] + v[k] * v[k];
        }
    }
    return rsqrt_mean_eps(a.sum(), n);
}

/* golden.block_rscale(x, w): r_x * r_a, both sums in one pass */
inline vf block_rscale(const vf *x, const vf *w, int d) {
    MMFREE_FUNC("block_rscale");
    LaneAcc ax, at;
#pragma HLS ARRAY_PARTITION variable=ax.l complete
#pragma HLS ARRAY_PARTITION variable=at.l complete
    ax.clear();
    at.clear();
    const int nb = nblocks(d);
    MMFREE_COUNT(MMFREE_CYC_RED, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=MMFREE_RED_II
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < d) {
                const vf t = x[k] * w[k];
                ax.l[j] = ax.l[j] + x[k] * x[k];
                at.l[j] = at.l[j] + t * t;
            }
        }
    }
    const vf r_x = rsqrt_mean_eps(ax.sum(), d);
    const vf ms_a = (r_x * r_x) * (at.sum() / (vf)d);
    const vf r_a = 1.0f / sqrtf_(ms_a + EPS);
    return r_x * r_a;
}

/* MLGRU: f = lb + (1 - lb) * sigmoid(y_f); h = f * h + silu(y_i) * (1 - f) */
inline void mlgru(const vf *yi, const vf *yf, const vf *lb, vf *h, vf *ftrace, int d) {
    MMFREE_FUNC("mlgru");
    const int nb = nblocks(d);
    MMFREE_COUNT(MMFREE_CYC_VEC, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=1
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < d) {
                const vf f = lb[k] + (1.0f - lb[k]) * sigmoid_(yf[k]);
                const vf c = silu_(yi[k]) * (1.0f - f);
                h[k] = f * h[k] + c;
#ifndef __SYNTHESIS__
                ftrace[k] = f;
#endif
            }
        }
    }
}

/* output gate o = ((y_g * r_g) * g_norm) * silu(h), returning rms_factor(o) from the same pass */
inline vf gate_out(const vf *yg, vf r_g, const vf *gn, const vf *h, vf *o, int d) {
    MMFREE_FUNC("gate_out");
    LaneAcc a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nb = nblocks(d);
    MMFREE_COUNT(MMFREE_CYC_RED, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=MMFREE_RED_II
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < d) {
                const vf ok = ((yg[k] * r_g) * gn[k]) * silu_(h[k]);
                o[k] = ok;
                a.l[j] = a.l[j] + ok * ok;
            }
        }
    }
    return rsqrt_mean_eps(a.sum(), d);
}

/* SwiGLU z = silu(gate) * up, returning rms_factor(z) from the same pass */
inline vf swiglu(const vf *gu, vf *z, int inter) {
    MMFREE_FUNC("swiglu");
    LaneAcc a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nb = nblocks(inter);
    MMFREE_COUNT(MMFREE_CYC_RED, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=MMFREE_RED_II
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < inter) {
                const vf zk = silu_(gu[k]) * gu[inter + k];
                z[k] = zk;
                a.l[j] = a.l[j] + zk * zk;
            }
        }
    }
    return rsqrt_mean_eps(a.sum(), inter);
}

/* residual x += y */
inline void residual(vf *x, const vf *y, int d) {
    MMFREE_FUNC("residual");
    const int nb = nblocks(d);
    MMFREE_COUNT(MMFREE_CYC_VEC, nb);
    for (int b = 0; b < nb; b++) {
#pragma HLS PIPELINE II=1
MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_VBLK
        for (int j = 0; j < VEC_LANES; j++) {
#pragma HLS UNROLL
            const int k = b * VEC_LANES + j;
            if (k < d) x[k] = x[k] + y[k];
        }
    }
}

}  // namespace mmfree

#endif /* MMFREE_VECTOR_H */
