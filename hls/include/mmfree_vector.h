/*
 * Vector unit: the per-token float32 work between ternary products, in golden.py's order.
 *
 * Each pass is one loop pipelined at II=1 over its vector, LANES elements per iteration (a template
 * argument: the board's MMFREE_FLOAT_LANES for the cheap passes, MMFREE_SIGMOID_LANES for the three
 * passes with sigmoids). Reductions keep numerics.lane_sum's 16 partial sums, element k into partial
 * k % 16 in increasing k, then the (8, 4, 2, 1) tree: the same bits whatever LANES is. Partial s is
 * touched again 16 / LANES iterations later, which is the DEPENDENCE distance the pragmas declare.
 *
 * Arrays are passed whole (never pointer arithmetic on a banked array), so that their ARRAY_PARTITION
 * (in mmfree_kernel.cpp) reaches every access. Parameter vectors live in the params block as rows of
 * 4 floats (prm[row][col], every vector padded to 4 floats by the layout) and are named by their
 * first row p4: element k is prm[p4 + (k >> 2)][k & 3], so with LANES a multiple of 4 the bank of
 * every access (its column) is a constant, which is what lets HLS schedule LANES reads per cycle.
 */
#ifndef MMFREE_VECTOR_H
#define MMFREE_VECTOR_H

#include <stdint.h>
#include "mmfree_config.h"
#include "mmfree_numerics.h"
#include "mmfree_trace.h"

namespace mmfree {

/* 16 lane partial sums of numerics.lane_sum, fed LANES at a time */
template <int LANES>
struct LaneSum {
    vf l[VEC_LANES];
    int slot; /* partial of this iteration's lane 0 */
    void clear() {
        for (int j = 0; j < VEC_LANES; j++) l[j] = 0.0f;
        slot = 0;
    }
    void next() { slot = (slot + LANES) & (VEC_LANES - 1); }
    vf sum() const { return lane_tree(l); }
};

inline int iters(int n, int lanes) { return (n + lanes - 1) / lanes; }

/* element k of the parameter vector starting at row p4 */
#define MMFREE_PRM(g, p4, k) (g)[(p4) + ((k) >> 2)][(k) & 3]

/* max |v[k] * g[k]| (numerics.absmax of u = v * gain) */
template <int LANES>
vf absmax_mul(const vf v[], const vf g[][4], int g4, int n) {
#pragma HLS INLINE off
    MMFREE_FUNC("absmax_mul");
    vf lm[LANES];
#pragma HLS ARRAY_PARTITION variable=lm complete
    for (int j = 0; j < LANES; j++) lm[j] = 0.0f;
    const int nc = iters(n, LANES);
    MMFREE_COUNT(MMFREE_CYC_VEC, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_K/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < n) {
                const vf u = v[k] * MMFREE_PRM(g, g4, k);
                const vf a = fabs_(u);
                if (a > lm[j]) lm[j] = a;
            }
        }
    }
    vf m = 0.0f;
    for (int j = 0; j < LANES; j++) m = lm[j] > m ? lm[j] : m;
    return m;
}

/* int8 codes of (v * g) * s into the activation words q[beat] (numerics.quantize): `lanes` codes per
 * beat, lanes past n (row padding) 0; each word written once, when its last code is in. */
template <int LANES>
void quantize_mul(const vf v[], const vf g[][4], int g4, int n, vf s, int lanes, int beats, qslot_t q[MAX_BEATS],
                  int8_t *qtrace) {
#pragma HLS INLINE off
    MMFREE_FUNC("quantize_mul");
    const int kp = beats * lanes;
    const int nc = iters(kp, LANES);
    qbytes_t word;
    int lane = 0, beat = 0;
    MMFREE_COUNT(MMFREE_CYC_VEC, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_BEATS*MAX_LANES/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < kp) {
                int8_t code = 0;
                if (k < n) {
                    const vf u = v[k] * MMFREE_PRM(g, g4, k);
                    code = quant_code(u * s);
                }
                word.set(lane, code);
#ifndef __SYNTHESIS__
                if (qtrace && k < n) qtrace[k] = code;
#endif
                if (++lane == lanes) {
                    q[beat] = word.get();
                    lane = 0;
                    ++beat;
                }
            }
        }
    }
}

/* numerics.rms_factor(v) */
template <int LANES>
vf rms_factor(const vf v[], int n) {
#pragma HLS INLINE off
    MMFREE_FUNC("rms_factor");
    LaneSum<LANES> a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nc = iters(n, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS DEPENDENCE variable=a.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_K/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < n) {
                const vf sq = v[k] * v[k];
                a.l[a.slot + j] = a.l[a.slot + j] + sq;
            }
        }
        a.next();
    }
    return rsqrt_mean_eps(a.sum(), n);
}

/* golden.block_rscale(x, w): r_x * r_a, both sums in one pass (w: the params from row w4) */
template <int LANES>
vf block_rscale(const vf x[], const vf w[][4], int w4, int d) {
#pragma HLS INLINE off
    MMFREE_FUNC("block_rscale");
    LaneSum<LANES> ax, at;
#pragma HLS ARRAY_PARTITION variable=ax.l complete
#pragma HLS ARRAY_PARTITION variable=at.l complete
    ax.clear();
    at.clear();
    const int nc = iters(d, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS DEPENDENCE variable=ax.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
#pragma HLS DEPENDENCE variable=at.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < d) {
                const vf xk = x[k];
                const vf t = xk * MMFREE_PRM(w, w4, k);
                const vf sx = xk * xk;
                const vf st = t * t;
                ax.l[ax.slot + j] = ax.l[ax.slot + j] + sx;
                at.l[at.slot + j] = at.l[at.slot + j] + st;
            }
        }
        ax.next();
        at.next();
    }
    const vf r_x = rsqrt_mean_eps(ax.sum(), d);
    const vf r_x2 = r_x * r_x;
    const vf ms_a = r_x2 * (at.sum() / (vf)d);
    const vf r_a = 1.0f / sqrtf_(ms_a + EPS);
    return r_x * r_a;
}

/* MLGRU: f = lb + (1 - lb) * sigmoid(y_f); h = f * h + silu(y_i) * (1 - f)   (lb: the params from row lb4) */
template <int LANES>
void mlgru(const vf yi[], const vf yf[], const vf lb[][4], int lb4, vf h[], vf *ftrace, int d) {
#pragma HLS INLINE off
    MMFREE_FUNC("mlgru");
    const int nc = iters(d, LANES);
    MMFREE_COUNT(MMFREE_CYC_VEC, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < d) {
                const vf lbk = MMFREE_PRM(lb, lb4, k);
                const vf one_lb = 1.0f - lbk;
                const vf sf = sigmoid_(yf[k]);
                const vf t = one_lb * sf;
                const vf f = lbk + t;
                const vf si = silu_(yi[k]);
                const vf one_f = 1.0f - f;
                const vf cc = si * one_f;
                const vf fh = f * h[k];
                h[k] = fh + cc;
#ifndef __SYNTHESIS__
                if (ftrace) ftrace[k] = f;
#endif
            }
        }
    }
}

/* output gate o = ((y_g * r_g) * g_norm) * silu(h), returning rms_factor(o) from the same pass */
template <int LANES>
vf gate_out(const vf yg[], vf r_g, const vf gn[][4], int gn4, const vf h[], vf o[], int d) {
#pragma HLS INLINE off
    MMFREE_FUNC("gate_out");
    LaneSum<LANES> a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nc = iters(d, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS DEPENDENCE variable=a.l type=inter direction=RAW distance=MMFREE_SIG_DISTANCE dependent=true
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < d) {
                const vf t1 = yg[k] * r_g;
                const vf t2 = t1 * MMFREE_PRM(gn, gn4, k);
                const vf ok = t2 * silu_(h[k]);
                o[k] = ok;
                const vf sq = ok * ok;
                a.l[a.slot + j] = a.l[a.slot + j] + sq;
            }
        }
        a.next();
    }
    return rsqrt_mean_eps(a.sum(), d);
}

/* SwiGLU z = silu(gate) * up (the gate_up product's two halves), returning rms_factor(z) from the same pass */
template <int LANES>
vf swiglu(const vf gate[], const vf up[], vf z[], int inter) {
#pragma HLS INLINE off
    MMFREE_FUNC("swiglu");
    LaneSum<LANES> a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    a.clear();
    const int nc = iters(inter, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS DEPENDENCE variable=a.l type=inter direction=RAW distance=MMFREE_SIG_DISTANCE dependent=true
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_I/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < inter) {
                const vf zk = silu_(gate[k]) * up[k];
                z[k] = zk;
                const vf sq = zk * zk;
                a.l[a.slot + j] = a.l[a.slot + j] + sq;
            }
        }
        a.next();
    }
    return rsqrt_mean_eps(a.sum(), inter);
}

/* residual x += y */
template <int LANES>
void residual(vf x[], const vf y[], int d) {
#pragma HLS INLINE off
    MMFREE_FUNC("residual");
    const int nc = iters(d, LANES);
    MMFREE_COUNT(MMFREE_CYC_VEC, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/LANES
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < d) x[k] = x[k] + y[k];
        }
    }
}

}  // namespace mmfree

#endif /* MMFREE_VECTOR_H */
