/*
 * Ternary matrix-vector engine: packed ternary rows streamed from DDR, int8 activations on chip.
 *
 *   acc[row] = sum_k code[row][k] * q[k]     (exact integers; no multipliers: add / sub / skip)
 *
 * The DDR layout pads every projection to a multiple of ROW_GROUP rows and stores them port-major
 * (mmfree_layout.h): port p streams rows p, p + PORTS, p + 2 PORTS, ... as one contiguous range,
 * one bus word per cycle, every port the same number of words, so that each port's read is
 * unconditional in a single flattened (rows per port) x (beats per row) loop pipelined at II=1: a
 * burst per port. All ports sit on the same column beat in the same cycle: one word of the
 * activation buffer q[beat] (a whole beat of int8 codes, finn's inputBuf) feeds every port's lanes.
 * When a row completes, its scale is applied right there (finn's activation at the row end): the P
 * rows that complete together are consecutive, so they land in P different banks of the output.
 * T activation vectors share each weight word (T = MMFREE_TOKENS, 1 in every build but the census'
 * T = 2, 4 variants): the hook for prefill, batched decode and draft verification.
 *
 * Each bus word is sliced once into native 64-bit halves; lanes are decoded with shifts and
 * masks (an ap_uint<128>.range() per lane is ~20x slower in C-simulation, same wires).
 *   2bit : 32 codes per 64-bit half, code j in bits [2j+1:2j], two's complement (10 decodes to 0)
 *   base3: 8 bytes per half, 5 codes per byte through BASE3_LUT (243 valid entries; bytes
 *          243..255 decode to 0, as python/mmfree/packed.py's base3_lut does)
 */
#ifndef MMFREE_MATVEC_H
#define MMFREE_MATVEC_H

#include <stdint.h>
#ifndef __SYNTHESIS__
#include <cstring>
#endif
#include "ap_int.h"
#include "mmfree_config.h"
#include "mmfree_layout.h"
#include "mmfree_trace.h"
#include "mmfree_census.h"

namespace mmfree {

typedef ap_uint<PORT_BITS> word_t;
typedef ap_uint<8 * MAX_LANES> qword_t; /* one beat of int8 activations, lane j in bits [8j+7:8j] */
#if defined(MMFREE_CENSUS) && !defined(__SYNTHESIS__)
typedef ::census::Maxi<const word_t> wport_t;  /* weight ports (read) */
typedef ::census::Maxi<word_t> ioport_t;       /* x, h, logits (read and write) */
typedef ::census::Maxi<const uint16_t> embport_t;
#else
typedef const word_t *wport_t;
typedef word_t *ioport_t;
typedef const uint16_t *embport_t;
#endif
typedef MMFREE_ELEM(qword_t) qslot_t;   /* an element of the activation buffer */

/* one beat of codes being assembled lane by lane (quantize), then written as one word */
struct qbytes_t {
#ifdef __SYNTHESIS__
    qword_t w;
    void set(int lane, int8_t c) { w.range(8 * lane + 7, 8 * lane) = (uint8_t)c; }
    qword_t get() const { return w; }
#else
    int8_t b[MAX_LANES];
    void set(int lane, int8_t c) { b[lane] = c; }
    qword_t get() const {
        static_assert(sizeof(qword_t) == MAX_LANES, "ap_uint storage is not MAX_LANES bytes");
        qword_t w;
        std::memcpy(reinterpret_cast<void *>(&w), b, MAX_LANES);
        return w;
    }
#endif
};

}  // namespace mmfree

/* The weight ports of this build, each its own pointer argument (m_axi bundle gmem_wP, register
 * W<P>_ADDR). X(P, wP) for every port the build has, P a compile-time constant, so that every port's
 * access is bound to its own bundle at compile time. */
#if MMFREE_WEIGHT_PORTS > 1
#define MMFREE_WPORT_1(X) X(1, w1)
#else
#define MMFREE_WPORT_1(X)
#endif
#if MMFREE_WEIGHT_PORTS > 2
#define MMFREE_WPORT_2(X) X(2, w2)
#else
#define MMFREE_WPORT_2(X)
#endif
#if MMFREE_WEIGHT_PORTS > 3
#define MMFREE_WPORT_3(X) X(3, w3)
#else
#define MMFREE_WPORT_3(X)
#endif
#if MMFREE_WEIGHT_PORTS > 4
#define MMFREE_WPORT_4(X) X(4, w4)
#else
#define MMFREE_WPORT_4(X)
#endif
#if MMFREE_WEIGHT_PORTS > 5
#define MMFREE_WPORT_5(X) X(5, w5)
#else
#define MMFREE_WPORT_5(X)
#endif
#define MMFREE_WPORTS_AFTER0(X) MMFREE_WPORT_1(X) MMFREE_WPORT_2(X) MMFREE_WPORT_3(X) MMFREE_WPORT_4(X) MMFREE_WPORT_5(X)
#define MMFREE_EACH_WPORT(X) X(0, w0) MMFREE_WPORTS_AFTER0(X)
#define MMFREE_WPARAM_(P, W) , ::mmfree::wport_t W
#define MMFREE_WARG_(P, W) , W
/* parameter list "const word_t *w0, const word_t *w1, ..." and argument list "w0, w1, ..." */
#define MMFREE_WPORT_PARAMS ::mmfree::wport_t w0 MMFREE_WPORTS_AFTER0(MMFREE_WPARAM_)
#define MMFREE_WPORT_ARGS w0 MMFREE_WPORTS_AFTER0(MMFREE_WARG_)

namespace mmfree {

/* base-3 byte -> five 2-bit two's complement codes, code j in bits [2j+1:2j] (10-bit ROM) */
static const MMFREE_ELEM(uint16_t) BASE3_LUT[256] = {
    0x3ff, 0x3fc, 0x3fd, 0x3f3, 0x3f0, 0x3f1, 0x3f7, 0x3f4, 0x3f5, 0x3cf, 0x3cc, 0x3cd,
    0x3c3, 0x3c0, 0x3c1, 0x3c7, 0x3c4, 0x3c5, 0x3df, 0x3dc, 0x3dd, 0x3d3, 0x3d0, 0x3d1,
    0x3d7, 0x3d4, 0x3d5, 0x33f, 0x33c, 0x33d, 0x333, 0x330, 0x331, 0x337, 0x334, 0x335,
    0x30f, 0x30c, 0x30d, 0x303, 0x300, 0x301, 0x307, 0x304, 0x305, 0x31f, 0x31c, 0x31d,
    0x313, 0x310, 0x311, 0x317, 0x314, 0x315, 0x37f, 0x37c, 0x37d, 0x373, 0x370, 0x371,
    0x377, 0x374, 0x375, 0x34f, 0x34c, 0x34d, 0x343, 0x340, 0x341, 0x347, 0x344, 0x345,
    0x35f, 0x35c, 0x35d, 0x353, 0x350, 0x351, 0x357, 0x354, 0x355, 0x0ff, 0x0fc, 0x0fd,
    0x0f3, 0x0f0, 0x0f1, 0x0f7, 0x0f4, 0x0f5, 0x0cf, 0x0cc, 0x0cd, 0x0c3, 0x0c0, 0x0c1,
    0x0c7, 0x0c4, 0x0c5, 0x0df, 0x0dc, 0x0dd, 0x0d3, 0x0d0, 0x0d1, 0x0d7, 0x0d4, 0x0d5,
    0x03f, 0x03c, 0x03d, 0x033, 0x030, 0x031, 0x037, 0x034, 0x035, 0x00f, 0x00c, 0x00d,
    0x003, 0x000, 0x001, 0x007, 0x004, 0x005, 0x01f, 0x01c, 0x01d, 0x013, 0x010, 0x011,
    0x017, 0x014, 0x015, 0x07f, 0x07c, 0x07d, 0x073, 0x070, 0x071, 0x077, 0x074, 0x075,
    0x04f, 0x04c, 0x04d, 0x043, 0x040, 0x041, 0x047, 0x044, 0x045, 0x05f, 0x05c, 0x05d,
    0x053, 0x050, 0x051, 0x057, 0x054, 0x055, 0x1ff, 0x1fc, 0x1fd, 0x1f3, 0x1f0, 0x1f1,
    0x1f7, 0x1f4, 0x1f5, 0x1cf, 0x1cc, 0x1cd, 0x1c3, 0x1c0, 0x1c1, 0x1c7, 0x1c4, 0x1c5,
    0x1df, 0x1dc, 0x1dd, 0x1d3, 0x1d0, 0x1d1, 0x1d7, 0x1d4, 0x1d5, 0x13f, 0x13c, 0x13d,
    0x133, 0x130, 0x131, 0x137, 0x134, 0x135, 0x10f, 0x10c, 0x10d, 0x103, 0x100, 0x101,
    0x107, 0x104, 0x105, 0x11f, 0x11c, 0x11d, 0x113, 0x110, 0x111, 0x117, 0x114, 0x115,
    0x17f, 0x17c, 0x17d, 0x173, 0x170, 0x171, 0x177, 0x174, 0x175, 0x14f, 0x14c, 0x14d,
    0x143, 0x140, 0x141, 0x147, 0x144, 0x145, 0x15f, 0x15c, 0x15d, 0x153, 0x150, 0x151,
    0x157, 0x154, 0x155, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000, 0x000,
    0x000, 0x000, 0x000, 0x000,
};

/* one 2-bit code times an int8 activation: +q, -q or 0 (no multiplier) */
inline int32_t tern(unsigned c, int32_t q) {
#pragma HLS INLINE
    const int32_t nz = -(int32_t)(c & 1u);            /* all ones for 01 and 11 */
    const int32_t neg = -(int32_t)(c & (c >> 1) & 1u); /* all ones for 11 */
    return ((q & nz) ^ neg) - neg;                     /* 01: q, 11: -q, 00 and 10: 0 */
}

/* 32 lanes of a 64-bit half, 2-bit packing */
inline int32_t dot_half_2bit(uint64_t h, const int8_t *q) {
#pragma HLS INLINE
    msum2_t s = 0;
    for (int j = 0; j < 32; j++) {
#pragma HLS UNROLL
        MMFREE_OP("lane.2bit");
        s += tern((unsigned)(h >> (2 * j)) & 3u, q[j]);
    }
    return s;
}

/* 40 lanes of a 64-bit half, base-3 packing */
inline int32_t dot_half_base3(uint64_t h, const int8_t *q) {
#pragma HLS INLINE
    msum3_t s = 0;
    for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
        unsigned e = BASE3_LUT[(unsigned)(h >> (8 * b)) & 0xffu];
        for (int j = 0; j < 5; j++) {
#pragma HLS UNROLL
            MMFREE_OP("lane.base3");
            s += tern((e >> (2 * j)) & 3u, q[5 * b + j]);
        }
    }
    return s;
}

/* 64-bit half hh of a bus word. Synthesis: a slice (wires). C-simulation: the same bits read
 * straight from ap_uint's little-endian storage (ap_private's range() on 128 bits costs ~20% of
 * the whole emulator); tests/test_csim_kernel.py checks both give the same bits. */
inline uint64_t word_half(const word_t &w, int hh) {
#pragma HLS INLINE
#ifdef __SYNTHESIS__
    return (uint64_t)w.range(64 * hh + 63, 64 * hh).to_uint64();
#else
    static_assert(sizeof(word_t) == PORT_BYTES, "ap_uint storage is not PORT_BYTES wide");
    uint64_t half;
    std::memcpy(&half, reinterpret_cast<const unsigned char *>(&w) + 8 * hh, 8);
    return half;
#endif
}

/* one bus word against its beat of activations: sliced once into native 64-bit halves */
inline int32_t dot_word(const word_t &w, const int8_t *qb, int packing) {
#pragma HLS INLINE
    msum_t s = 0;
    for (int hh = 0; hh < PORT_BITS / 64; hh++) {
#pragma HLS UNROLL
        const uint64_t half = word_half(w, hh);
        s += packing == MMFREE_PACK_BASE3 ? dot_half_base3(half, qb + 40 * hh) : dot_half_2bit(half, qb + 32 * hh);
    }
    return s;
}

/* beats (bus words) per packed row of k codes */
inline int beats_per_row(int k, int packing) { return (int)(row_bytes(k, packing) / PORT_BYTES); }
/* codes per beat */
inline int lanes_per_beat(int packing) { return PORT_BYTES * codes_per_byte(packing); }

/* Where a product's rows go, each scaled by its token's output scale (finn's activation at the row end):
 *   MV_STORE  row j to lo[j]
 *   MV_PAIRS  the gate_up product (the layout stores its rows gate 0, up 0, gate 1, up 1, ...): row 2j to
 *             lo[j] (gate j), row 2j + 1 to hi[j] (up j)
 *   MV_ADD    the residual: lo[j] = lo[j] + row j (x += o(...), x += down(...)) */
enum MvMode { MV_STORE = 0, MV_PAIRS = 1, MV_ADD = 2 };
struct MvOut {
    vf *lo;
    vf *hi;
    int mode;
};

/* One port's step: its word (read every iteration: a burst), T partial sums, the row end. */
template <int P, int T>
inline void mv_port(wport_t w, uint64_t addr, bool first, bool last, int row, int rows, const int8_t *const ql[T],
                    int packing, int32_t part[T][PORTS], const vf scale[T], MvOut out, vf ext[][EXT_ROWS],
                    int32_t *acc_trace, vf *out_trace) {
#pragma HLS INLINE
    const word_t wd = w[addr];
    for (int t = 0; t < T; t++) {
#pragma HLS UNROLL
        MMFREE_OP("add32");
        const int32_t a = (first ? 0 : part[t][P]) + dot_word(wd, ql[t], packing);
        part[t][P] = a;
        if (last && row < rows) {
            const vf v = (vf)a * scale[t];
            if (t == 0) {
                if (out.mode == MV_PAIRS) {
                    if (row & 1)
                        out.hi[row >> 1] = v;
                    else
                        out.lo[row >> 1] = v;
                } else if (out.mode == MV_ADD) {
                    out.lo[row] = out.lo[row] + v;
                } else {
                    out.lo[row] = v;
                }
#ifndef __SYNTHESIS__
                if (acc_trace) {  /* by the row's index in the projection */
                    const int orig = out.mode == MV_PAIRS ? ((row & 1) ? rows / 2 + (row >> 1) : row >> 1) : row;
                    acc_trace[orig] = a;
                    out_trace[orig] = v;
                }
#endif
            } else {
                ext[t - 1][row] = v;
            }
        }
    }
}

#define MMFREE_MV_PORT_(P, W) \
    mv_port<P, T>(W, base + (uint64_t)(P * rpp * beats + i), b == 0, b == beats - 1, r * PORTS + P, rows, ql, packing, part, scale, out, ext, acc_trace, out_trace);

/* Ternary products of `rows` rows of k codes starting at beat `base` of the weight ports, against T
 * activation vectors q[t]: out row j = float(sum_k code[j][k] * q[t][k]) * scale[t]. */
template <int T>
void ternary_matvec(MMFREE_WPORT_PARAMS, uint64_t base, int rows, int k, int packing, const qslot_t q[T][MAX_BEATS],
                    const vf scale[T], MvOut out, vf ext[][EXT_ROWS], int32_t *acc_trace, vf *out_trace) {
#pragma HLS INLINE off
    MMFREE_FUNC("ternary_matvec");
    const int beats = beats_per_row(k, packing);
    const int rpp = pad_rows(rows) / PORTS;
    const int total = rpp * beats;
    int32_t part[T][PORTS];
#pragma HLS ARRAY_PARTITION variable=part complete dim=0
    int r = 0, b = 0;
    MMFREE_COUNT(MMFREE_CYC_MV, total);
    for (int i = 0; i < total; i++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_RPP*MAX_BEATS
        qword_t qv[T];
        const int8_t *ql[T];
        for (int t = 0; t < T; t++) {
#pragma HLS UNROLL
            qv[t] = q[t][b];
        }
#ifdef __SYNTHESIS__
        int8_t qa[T][MAX_LANES];
        for (int t = 0; t < T; t++)
            for (int j = 0; j < MAX_LANES; j++) qa[t][j] = (int8_t)qv[t].range(8 * j + 7, 8 * j);
        for (int t = 0; t < T; t++) ql[t] = qa[t];
#else
        for (int t = 0; t < T; t++) ql[t] = reinterpret_cast<const int8_t *>(&qv[t]);
#endif
        MMFREE_EACH_WPORT(MMFREE_MV_PORT_)
        if (++b == beats) {
            b = 0;
            ++r;
        }
    }
}

#undef MMFREE_MV_PORT_

}  // namespace mmfree

#endif /* MMFREE_MATVEC_H */
