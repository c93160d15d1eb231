/*
 * DDR layout of a packed model for mmfree_kernel (docs/hardware.md, "Memory layout").
 *
 * Layer blob (one contiguous buffer per layer; every W register of the build holds its address):
 *   codes  i        d    rows x RB(d) bytes      RB(k) = ceil(k / CPW) * 16, CPW = 64 (2bit) or 80 (base3)
 *   codes  f        d    rows x RB(d)            (each row: python/mmfree/packed.py format, whole 16-byte words)
 *   codes  g        d    rows x RB(d)
 *   codes  o        d    rows x RB(d)
 *   codes  gate_up  2I   rows x RB(d)
 *   codes  down     d    rows x RB(I)
 *   params float32, starting right after the codes (a multiple of 16 bytes), each vector padded
 *   with zeros to a multiple of 4 floats (16 bytes):
 *     alpha[8]     i, f, g, o, gate_up, down, 0, 0
 *     attn_norm[d] mlp_norm[d] g_norm[d] lower_bound[d] (this layer's row of the lb table)
 *     gain_i[d] gain_f[d] gain_g[d] gain_o[d] gain_gate_up[d] gain_down[I]
 *
 * Head blob: codes lm_head V rows x RB(d), then params: alpha[8] (lm_head, 0...), final_norm[d],
 *   gain[d] (lm_head.gain), padded the same way.
 *
 * Rows of every projection are padded with zero rows to a multiple of ROW_GROUP (12), so that every
 * weight port of a 1, 2, 3, 4, 6 or 12-port build streams the same number of rows: each port's read
 * is unconditional in the matvec loop (UG1399's burst precondition). Within a projection (the
 * lm_head: within each chunk of HEAD_ROWS rows) the rows are stored port-major: port p of a P-port
 * build streams rows p, p + P, p + 2P, ... as one contiguous range, so the P rows that complete in
 * the same cycle are consecutive (their outputs land in P different banks). Only the order of rows
 * depends on P (mmfree.layout packs it for the build's ports); every offset here is the same for all
 * boards.
 *
 * Weights arena (OP_BODY, OP_TOKEN: one contiguous buffer, every W register holds its address):
 *   [layer 0 blob | layer 1 blob | ... | layer L-1 blob | head blob], layer l at l * layer_stride,
 *   the head at L * layer_stride, layer_stride = layer_blob_bytes rounded up to ARENA_ALIGN (4096)
 *   bytes, zeros in between. Why 4 KB: an AXI burst may not cross a 4 KB boundary, so the m_axi
 *   adapter splits bursts there; with every layer starting on a 4 KB boundary its bursts split at the
 *   same places as a per-layer blob in its own (page-aligned) buffer: the same transactions, cycle
 *   for cycle, whichever way the driver loads the model; and a layer's codes never share a page with
 *   the previous layer's params. It costs < 4 KB per layer.
 *   State for these ops: float32[L][pad4(d)], row l at H_ADDR + 4 * l * pad4(d).
 *
 * Other buffers: x and h float32[pad4(d)], logits float32[pad4(V)], embeddings uint16[V][d].
 * All offsets are functions of (d, I, V, packing): mmfree_csim exports them, python/mmfree/layout.py
 * mirrors them (tests check both agree).
 */
#ifndef MMFREE_LAYOUT_H
#define MMFREE_LAYOUT_H

#include <stdint.h>
#include "mmfree_regs.h"

namespace mmfree {

static const int WORD_BYTES = 16;   /* rows are padded to whole 128-bit words */
static const int N_ALPHA = 8;

/* projection indices (order of the codes in a layer blob and of alpha[]) */
enum Proj { P_I = 0, P_F = 1, P_G = 2, P_O = 3, P_GATE_UP = 4, P_DOWN = 5, N_PROJ = 6 };

/* parameter vectors of a layer blob, in order */
enum LayerVec { V_ATTN_NORM = 0, V_MLP_NORM, V_G_NORM, V_LB, V_GAIN_I, V_GAIN_F, V_GAIN_G, V_GAIN_O,
                V_GAIN_GATE_UP, V_GAIN_DOWN, N_LAYER_VEC };
/* parameter vectors of a head blob */
enum HeadVec { V_FINAL_NORM = 0, V_GAIN_HEAD = 1, N_HEAD_VEC };

inline int codes_per_byte(int packing) { return packing == MMFREE_PACK_BASE3 ? 5 : 4; }
inline int codes_per_word(int packing) { return WORD_BYTES * codes_per_byte(packing); }
inline uint64_t row_bytes(int k, int packing) {
    int cpw = codes_per_word(packing);
    return (uint64_t)((k + cpw - 1) / cpw) * WORD_BYTES;
}
inline int pad4(int n) { return (n + 3) & ~3; }

static const int ROW_GROUP = 12;    /* rows of a projection padded to a multiple of this */
static const int HEAD_ROWS = 1536;  /* lm_head rows per product (a multiple of ROW_GROUP) */
inline int pad_rows(int rows) { return (rows + ROW_GROUP - 1) / ROW_GROUP * ROW_GROUP; }

inline int proj_rows(int p, int d, int inter) { return p == P_GATE_UP ? 2 * inter : d; }
inline int proj_cols(int p, int d, int inter) { return p == P_DOWN ? inter : d; }

/* byte offset of projection p's codes in a layer blob */
inline uint64_t layer_codes_offset(int p, int d, int inter, int packing) {
    uint64_t off = 0;
    for (int i = 0; i < p; i++) off += (uint64_t)pad_rows(proj_rows(i, d, inter)) * row_bytes(proj_cols(i, d, inter), packing);
    return off;
}
inline uint64_t layer_params_offset(int d, int inter, int packing) { return layer_codes_offset(N_PROJ, d, inter, packing); }
inline int layer_vec_len(int v, int d, int inter) { return v == V_GAIN_DOWN ? inter : d; }
/* float index of vector v inside the params block */
inline int layer_vec_index(int v, int d, int inter) {
    int off = N_ALPHA;
    for (int i = 0; i < v; i++) off += pad4(layer_vec_len(i, d, inter));
    return off;
}
inline int layer_params_floats(int d, int inter) { return layer_vec_index(N_LAYER_VEC, d, inter); }
inline uint64_t layer_blob_bytes(int d, int inter, int packing) {
    return layer_params_offset(d, inter, packing) + 4ull * (uint64_t)layer_params_floats(d, inter);
}

inline uint64_t head_params_offset(int d, int vocab, int packing) { return (uint64_t)pad_rows(vocab) * row_bytes(d, packing); }
inline int head_vec_index(int v, int d) { return N_ALPHA + v * pad4(d); }
inline int head_params_floats(int d) { return head_vec_index(N_HEAD_VEC, d); }
inline uint64_t head_blob_bytes(int d, int vocab, int packing) {
    return head_params_offset(d, vocab, packing) + 4ull * (uint64_t)head_params_floats(d);
}

/* weights arena (OP_BODY, OP_TOKEN) */
static const uint64_t ARENA_ALIGN = 4096;
inline uint64_t layer_stride(int d, int inter, int packing) {
    return (layer_blob_bytes(d, inter, packing) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}
inline uint64_t arena_layer_offset(int layer, int d, int inter, int packing) {
    return (uint64_t)layer * layer_stride(d, inter, packing);
}
inline uint64_t arena_head_offset(int layers, int d, int inter, int packing) {
    return arena_layer_offset(layers, d, inter, packing);
}
inline uint64_t arena_bytes(int layers, int d, int inter, int vocab, int packing) {
    return arena_head_offset(layers, d, inter, packing) + head_blob_bytes(d, vocab, packing);
}

inline uint64_t vec_bytes(int n) { return 4ull * (uint64_t)pad4(n); }         /* x, h, logits */
inline uint64_t state_bytes(int layers, int d) { return (uint64_t)layers * vec_bytes(d); } /* h of BODY, TOKEN */
inline uint64_t emb_bytes(int d, int vocab) { return 2ull * (uint64_t)d * (uint64_t)vocab; }

}  // namespace mmfree

#endif /* MMFREE_LAYOUT_H */
