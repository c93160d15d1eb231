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

/* running max |u| of one lane (numerics.absmax: exact, so any order gives the same bits) */
inline void max_abs(vf &m, vf u) {
#pragma HLS INLINE
    const vf a = fabs_(u);
    if (a > m) m = a;
}

template <int LANES>
vf lanes_max(const vf lm[LANES]) {
#pragma HLS INLINE
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
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_K/LANES
#pragma HLS DEPENDENCE variable=a.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
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

/* golden.block_rscale(x, w) = r_x * r_a (both sums in one pass) and, from the same reads of x, the absmax
 * of x * gain for the next products' gains (rows ga4, gb4, gc4 of the params; the same row twice when
 * fewer are needed): m[0..2]. Four parameter reads per element: w and ga from p, gb and gc from p2 (a
 * second copy of the params, so that no bank is read more than twice per cycle). */
template <int LANES>
vf norm_scan(const vf x[], const vf p[][4], const vf p2[][4], int w4, int ga4, int gb4, int gc4, int d, vf m[3]) {
#pragma HLS INLINE off
    MMFREE_FUNC("norm_scan");
    LaneSum<LANES> ax, at;
#pragma HLS ARRAY_PARTITION variable=ax.l complete
#pragma HLS ARRAY_PARTITION variable=at.l complete
    vf la[LANES], lb[LANES], lc[LANES];
#pragma HLS ARRAY_PARTITION variable=la complete
#pragma HLS ARRAY_PARTITION variable=lb complete
#pragma HLS ARRAY_PARTITION variable=lc complete
    for (int j = 0; j < LANES; j++) la[j] = lb[j] = lc[j] = 0.0f;
    ax.clear();
    at.clear();
    const int nc = iters(d, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/LANES
#pragma HLS DEPENDENCE variable=ax.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
#pragma HLS DEPENDENCE variable=at.l type=inter direction=RAW distance=MMFREE_RED_DISTANCE dependent=true
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < d) {
                const vf xk = x[k];
                const vf t = xk * MMFREE_PRM(p, w4, k);
                const vf sx = xk * xk;
                const vf st = t * t;
                ax.l[ax.slot + j] = ax.l[ax.slot + j] + sx;
                at.l[at.slot + j] = at.l[at.slot + j] + st;
                max_abs(la[j], xk * MMFREE_PRM(p, ga4, k));
                max_abs(lb[j], xk * MMFREE_PRM(p2, gb4, k));
                max_abs(lc[j], xk * MMFREE_PRM(p2, gc4, k));
            }
        }
        ax.next();
        at.next();
    }
    m[0] = lanes_max<LANES>(la);
    m[1] = lanes_max<LANES>(lb);
    m[2] = lanes_max<LANES>(lc);
    const vf r_x = rsqrt_mean_eps(ax.sum(), d);
    const vf r_x2 = r_x * r_x;
    const vf ms_a = r_x2 * (at.sum() / (vf)d);
    const vf r_a = 1.0f / sqrtf_(ms_a + EPS);
    return r_x * r_a;
}

/* The three passes with sigmoids, on one datapath of LANES lanes (one instance of each operator, whichever
 * pass runs; a pass is a mode). Per element, with s1 = sigmoid(a1), s2 = sigmoid(a2):
 *
 *   G_MLGRU   a1 = y_f, a2 = y_i:  f = lb + (1 - lb) * s1;  h = f * h + (y_i * s2) * (1 - f)
 *   G_OUT     a1 = h:              o = ((y_g * r_g) * g_norm) * (h * s1);   sum o^2, absmax o * gain_o
 *   G_SWIGLU  a1 = gate:           z = (gate * s1) * up;                    sum z^2, absmax z * gain_down
 *
 * each operation in numerics.py's order (golden.layer); the multipliers pA..pF and adders are shared by
 * the modes through operand muxes. Returns the rms factor of o or z (G_OUT, G_SWIGLU) and m, the absmax of
 * o * gain_o or z * gain_down (the next product's input). yf/yi/yg/gm/... not read by a mode may be any
 * array of the right size. */
enum GateMode { G_MLGRU = 0, G_OUT = 1, G_SWIGLU = 2 };

template <int LANES>
vf gate_pass(int mode, const vf in1[], const vf in2[], const vf p[][4], int pa4, int pb4, vf r_g, vf h[], vf out[],
             vf *ftrace, int n, vf &m) {
#pragma HLS INLINE off
    MMFREE_FUNC("gate_pass");
    LaneSum<LANES> a;
#pragma HLS ARRAY_PARTITION variable=a.l complete
    vf lm[LANES];
#pragma HLS ARRAY_PARTITION variable=lm complete
    for (int j = 0; j < LANES; j++) lm[j] = 0.0f;
    a.clear();
    const bool mlgru = mode == G_MLGRU, gout = mode == G_OUT;
    const int nc = iters(n, LANES);
    MMFREE_COUNT(MMFREE_CYC_RED, nc);
    for (int c = 0; c < nc; c++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_I/LANES
#pragma HLS DEPENDENCE variable=a.l type=inter direction=RAW distance=MMFREE_SIG_DISTANCE dependent=true
        for (int j = 0; j < LANES; j++) {
#pragma HLS UNROLL
            const int k = c * LANES + j;
            if (k < n) {
                /* G_MLGRU: in1 = y_f, in2 = y_i, pa = lb; G_OUT: in1 = y_g, pa = g_norm, pb = gain_o;
                 * G_SWIGLU: in1 = gate, in2 = up, pb = gain_down */
                const vf x1 = in1[k];
                const vf hk = mlgru || gout ? h[k] : vf(0.0f);
                const vf a1 = gout ? hk : x1;
                const vf a2 = mlgru ? in2[k] : vf(0.0f);
                const vf s1 = sigmoid_(a1);
                const vf s2 = sigmoid_(a2);
                const vf lbk = mlgru ? MMFREE_PRM(p, pa4, k) : vf(0.0f);
                const vf one_lb = 1.0f - lbk;
                const vf pA = (mlgru ? one_lb : a1) * s1;                          /* (1-lb)*s1 | silu(h) | silu(gate) */
                const vf f = lbk + pA;                                             /* forget gate (G_MLGRU) */
                const vf pB = (mlgru ? a2 : gout ? x1 : pA) * (mlgru ? s2 : gout ? r_g : in2[k]); /* silu(y_i) | y_g*r_g | z */
                const vf one_f = 1.0f - f;
                const vf pC = pB * (mlgru ? one_f : MMFREE_PRM(p, pa4, k));        /* c | t2 = (y_g*r_g)*g_norm */
                const vf pD = (mlgru ? f : pC) * (mlgru ? hk : pA);                /* f*h | o */
                const vf hn = pD + pC;                                             /* new h (G_MLGRU) */
                const vf ov = gout ? pD : pB;                                      /* o | z */
                const vf sq = ov * ov;
                if (mlgru) {
                    h[k] = hn;
#ifndef __SYNTHESIS__
                    if (ftrace) ftrace[k] = f;
#endif
                } else {
                    out[k] = ov;
                    a.l[a.slot + j] = a.l[a.slot + j] + sq;
                    max_abs(lm[j], ov * MMFREE_PRM(p, pb4, k));
                }
            }
        }
        a.next();
    }
    m = lanes_max<LANES>(lm);
    return rsqrt_mean_eps(a.sum(), n);
}

}  // namespace mmfree

#endif /* MMFREE_VECTOR_H */
