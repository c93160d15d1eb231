/*
 * mmfree_kernel top function (Vitis HLS; VLNV xilinx.com:hls:mmfree_kernel:1.0).
 *
 *   OP_EMBED  x = bf16->f32(emb[token])
 *   OP_LAYER  one HGRN-Bit layer for one token: reads x, h and the layer blob; writes x, h
 *   OP_HEAD   out = lm_head(RMSNorm(x) * norm) logits, from the head blob
 *   OP_BODY   EMBED, then layers 0..LAYERS-1 from the weights arena (layer l at l * layer_stride), state
 *             row l at H + l * pad4(d) floats: a prompt token in one call
 *   OP_TOKEN  BODY, then HEAD from the arena (at LAYERS * layer_stride): a decode token in one call
 *
 * BODY and TOKEN call the same op_embed / op_layer / op_head as the single ops, with a base byte
 * offset into the weight ports (every projection stays one flattened II=1 loop per port, its linear
 * address starting at that base) and a base row of the state buffer.
 * The sequence is golden.py's GoldenModel.layer / head / embed, operation for operation.
 *   OP_IDENT  nothing but the identity block, which every call writes first (mmfree_regs.h MMFREE_REG_ID_*)
 * Registers outside their bounds (d > MAX_D, ...) make the call return without touching memory.
 */
#include "mmfree_kernel.h"
#include "mmfree_layout.h"
#include "mmfree_vector.h"

using namespace mmfree;

namespace {

const int MAX_PRM_BEATS = (MAX_PRM * 4 + PORT_BYTES - 1) / PORT_BYTES;

/* One port's share of a params burst: beats [P*per, min(nbeats, (P+1)*per)) through its own bundle. */
template <int P>
inline void prm_port(const word_t *w, uint64_t base, int per, int nbeats, int i, float *prm) {
#pragma HLS INLINE
    const int idx = P * per + i;
    if (idx < nbeats) {
        const word_t v = w[base + (uint64_t)idx];
        for (int j = 0; j < FLOATS_PER_BEAT; j++) {
#pragma HLS UNROLL
            prm[idx * FLOATS_PER_BEAT + j] = bits_to_f32((uint32_t)v.range(32 * j + 31, 32 * j).to_uint());
        }
    }
}

#define MMFREE_PRM_PORT_(P, W) prm_port<P>(W, base, per, nbeats, i, prm);

/* params block of a blob -> on-chip floats, all weight ports in parallel */
void load_params(MMFREE_WPORT_PARAMS, uint64_t byte_off, int nfloats, float *prm) {
    const uint64_t base = byte_off / PORT_BYTES;
    const int nbeats = (nfloats * 4 + PORT_BYTES - 1) / PORT_BYTES;
    const int per = (nbeats + PORTS - 1) / PORTS;
    MMFREE_COUNT(MMFREE_CYC_MEM, per);
    for (int i = 0; i < per; i++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_PRM_BEATS
        MMFREE_EACH_WPORT(MMFREE_PRM_PORT_)
    }
}

#undef MMFREE_PRM_PORT_

/* float32[n] from DDR words, from element offset off (a multiple of FLOATS_PER_BEAT) */
void read_vec(const word_t *src, int off, int n, float *dst) {
    const int nbeats = (n + FLOATS_PER_BEAT - 1) / FLOATS_PER_BEAT;
    MMFREE_COUNT(MMFREE_CYC_MEM, nbeats);
    for (int i = 0; i < nbeats; i++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D/FLOATS_PER_BEAT
        const word_t v = src[off / FLOATS_PER_BEAT + i];
        for (int j = 0; j < FLOATS_PER_BEAT; j++) {
#pragma HLS UNROLL
            const int k = i * FLOATS_PER_BEAT + j;
            if (k < n) dst[k] = bits_to_f32((uint32_t)v.range(32 * j + 31, 32 * j).to_uint());
        }
    }
}

/* float32[n] to DDR words at element offset off (a multiple of FLOATS_PER_BEAT); pad floats 0 */
void write_vec(word_t *dst, int off, const float *src, int n) {
    const int nbeats = (n + FLOATS_PER_BEAT - 1) / FLOATS_PER_BEAT;
    MMFREE_COUNT(MMFREE_CYC_MEM, nbeats);
    for (int i = 0; i < nbeats; i++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=HEAD_CHUNK/FLOATS_PER_BEAT
        word_t v = 0;
        for (int j = 0; j < FLOATS_PER_BEAT; j++) {
#pragma HLS UNROLL
            const int k = i * FLOATS_PER_BEAT + j;
            v.range(32 * j + 31, 32 * j) = k < n ? f32_to_bits(src[k]) : 0u;
        }
        dst[off / FLOATS_PER_BEAT + i] = v;
    }
}

int8_t q_buf[MAX_BEATS][MAX_LANES];
int32_t acc_buf[PORTS][MAX_RPP];
#ifndef __SYNTHESIS__
int8_t q_trace[MAX_K];
#endif

/* golden.bitlinear for one token: absmax, quantize, ternary product, out = acc * scale.
 * Rows [row0, row0 + rows) of a matrix at byte offset `off` with k columns. */
float bitlinear_in(const char *name, const float *v, const float *g, int k, int packing) {
    const float m = absmax_mul(v, g, k);
    const int lanes = lanes_per_beat(packing);
    const int kp = beats_per_row(k, packing) * lanes;
#ifndef __SYNTHESIS__
    quantize_mul(v, g, k, quant_scale(m), lanes, kp, q_buf, q_trace);
    MMFREE_TRACE(name, "absmax", MMFREE_T_F32, &m, 0, 1);
    MMFREE_TRACE(name, "q", MMFREE_T_I8, q_trace, 0, (uint64_t)k);
#else
    quantize_mul(v, g, k, quant_scale(m), lanes, kp, q_buf, 0);
#endif
    return m;
}

void bitlinear_rows(const char *name, MMFREE_WPORT_PARAMS, uint64_t off, int row0, int rows, int k, int packing,
                    float scale, float *out) {
    const uint64_t base = off / PORT_BYTES + (uint64_t)row0 * (uint64_t)beats_per_row(k, packing);
    ternary_matvec(MMFREE_WPORT_ARGS, base, rows, k, packing, q_buf, acc_buf);
    scale_out(acc_buf, rows, scale, out);
#ifndef __SYNTHESIS__
    if (MMFREE_TRACE_ON()) {
        const int rpp = (rows + PORTS - 1) / PORTS;
        for (int p = 0, r = 0, k = 0; k < rows; k++) {
            MMFREE_TRACE(name, "acc", MMFREE_T_I32, &acc_buf[p][r], (uint64_t)(row0 + k), 1);
            if (++r == rpp) {
                r = 0;
                ++p;
            }
        }
        MMFREE_TRACE(name, "out", MMFREE_T_F32, out, (uint64_t)row0, (uint64_t)rows);
    }
#else
    (void)name;
#endif
}

float bitlinear(const char *name, MMFREE_WPORT_PARAMS, uint64_t off, int rows, int k, int packing, const float *v,
                const float *g, float alpha, float rscale, float *out) {
    const float m = bitlinear_in(name, v, g, k, packing);
    const float scale = out_scale(alpha, m, rscale);
    MMFREE_TRACE(name, "scale", MMFREE_T_F32, &scale, 0, 1);
    bitlinear_rows(name, MMFREE_WPORT_ARGS, off, 0, rows, k, packing, scale, out);
    return scale;
}

float x_buf[MAX_D], h_buf[MAX_D], yi_buf[MAX_D], yf_buf[MAX_D], yg_buf[MAX_D], o_buf[MAX_D], y_buf[MAX_D];
float gu_buf[2 * MAX_I], z_buf[MAX_I], prm_buf[MAX_PRM];
float out_buf[HEAD_CHUNK];
#ifndef __SYNTHESIS__
float f_trace[MAX_D];
#endif

void op_embed(int d, int token, const uint16_t *emb, word_t *x) {
    MMFREE_COUNT(MMFREE_CYC_MEM, d);
    for (int k = 0; k < d; k++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D
        x_buf[k] = bits_to_f32((uint32_t)emb[(uint64_t)token * (uint64_t)d + (uint64_t)k] << 16);
    }
    MMFREE_TRACE("", "x", MMFREE_T_F32, x_buf, 0, (uint64_t)d);
    write_vec(x, 0, x_buf, d);
}

/* One layer. wb: byte offset of its blob on the weight ports (0 for OP_LAYER, l * layer_stride in the
 * arena); hoff: float offset of its state row in h (0 for OP_LAYER, l * pad4(d) for BODY/TOKEN). */
void op_layer(int d, int inter, int packing, uint64_t wb, word_t *x, word_t *h, int hoff, MMFREE_WPORT_PARAMS) {
    float *prm = prm_buf;
    load_params(MMFREE_WPORT_ARGS, wb + layer_params_offset(d, inter, packing), layer_params_floats(d, inter), prm);
    const float *alpha = prm;
    const float *attn_norm = prm + layer_vec_index(V_ATTN_NORM, d, inter);
    const float *mlp_norm = prm + layer_vec_index(V_MLP_NORM, d, inter);
    const float *g_norm = prm + layer_vec_index(V_G_NORM, d, inter);
    const float *lb = prm + layer_vec_index(V_LB, d, inter);
    const float *gain_i = prm + layer_vec_index(V_GAIN_I, d, inter);
    const float *gain_f = prm + layer_vec_index(V_GAIN_F, d, inter);
    const float *gain_g = prm + layer_vec_index(V_GAIN_G, d, inter);
    const float *gain_o = prm + layer_vec_index(V_GAIN_O, d, inter);
    const float *gain_gu = prm + layer_vec_index(V_GAIN_GATE_UP, d, inter);
    const float *gain_down = prm + layer_vec_index(V_GAIN_DOWN, d, inter);
    read_vec(x, 0, d, x_buf);
    read_vec(h, hoff, d, h_buf);

    /* token mixer: i, f, g from a = RMSNorm(x) * attn_norm (gains folded; r_x * r_a scales) */
    const float rs = block_rscale(x_buf, attn_norm, d);
    bitlinear("i", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_I, d, inter, packing), d, d, packing, x_buf, gain_i, alpha[P_I], rs, yi_buf);
    bitlinear("f", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_F, d, inter, packing), d, d, packing, x_buf, gain_f, alpha[P_F], rs, yf_buf);
    bitlinear("g", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_G, d, inter, packing), d, d, packing, x_buf, gain_g, alpha[P_G], rs, yg_buf);
#ifndef __SYNTHESIS__
    mlgru(yi_buf, yf_buf, lb, h_buf, f_trace, d);
    MMFREE_TRACE("", "forget", MMFREE_T_F32, f_trace, 0, (uint64_t)d);
#else
    mlgru(yi_buf, yf_buf, lb, h_buf, 0, d);
#endif
    MMFREE_TRACE("", "state", MMFREE_T_F32, h_buf, 0, (uint64_t)d);
    const float r_g = rms_factor(yg_buf, d);
    const float r_o = gate_out(yg_buf, r_g, g_norm, h_buf, o_buf, d);
    MMFREE_TRACE("", "o_in", MMFREE_T_F32, o_buf, 0, (uint64_t)d);
    bitlinear("o", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_O, d, inter, packing), d, d, packing, o_buf, gain_o, alpha[P_O], r_o, y_buf);
    residual(x_buf, y_buf, d);

    /* channel mixer: [gate | up] = BitLinear(RMSNorm(x) * mlp_norm); x += down(silu(gate) * up) */
    const float rs2 = block_rscale(x_buf, mlp_norm, d);
    bitlinear("gate_up", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_GATE_UP, d, inter, packing), 2 * inter, d, packing, x_buf, gain_gu,
              alpha[P_GATE_UP], rs2, gu_buf);
    const float r_z = swiglu(gu_buf, z_buf, inter);
    MMFREE_TRACE("", "z", MMFREE_T_F32, z_buf, 0, (uint64_t)inter);
    bitlinear("down", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_DOWN, d, inter, packing), d, inter, packing, z_buf, gain_down,
              alpha[P_DOWN], r_z, y_buf);
    residual(x_buf, y_buf, d);
    MMFREE_TRACE("", "x", MMFREE_T_F32, x_buf, 0, (uint64_t)d);

    write_vec(x, 0, x_buf, d);
    write_vec(h, hoff, h_buf, d);
}

/* wb: byte offset of the head blob on the weight ports (0 for OP_HEAD, LAYERS * layer_stride in the arena) */
void op_head(int d, int vocab, int packing, uint64_t wb, const word_t *x, word_t *out, MMFREE_WPORT_PARAMS) {
    float *prm = prm_buf;
    load_params(MMFREE_WPORT_ARGS, wb + head_params_offset(d, vocab, packing), head_params_floats(d), prm);
    const float alpha = prm[0];
    const float *final_norm = prm + head_vec_index(V_FINAL_NORM, d);
    const float *gain = prm + head_vec_index(V_GAIN_HEAD, d);
    read_vec(x, 0, d, x_buf);
    const float rs = block_rscale(x_buf, final_norm, d);
    const float m = bitlinear_in("lm_head", x_buf, gain, d, packing);
    const float scale = out_scale(alpha, m, rs);
    MMFREE_TRACE("lm_head", "scale", MMFREE_T_F32, &scale, 0, 1);
    for (int row0 = 0; row0 < vocab; row0 += HEAD_CHUNK) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=(MAX_V+HEAD_CHUNK-1)/HEAD_CHUNK
        const int rows = vocab - row0 < HEAD_CHUNK ? vocab - row0 : HEAD_CHUNK;
        bitlinear_rows("lm_head", MMFREE_WPORT_ARGS, wb, row0, rows, d, packing, scale, out_buf);
        write_vec(out, row0, out_buf, rows);
    }
}

/* OP_BODY / OP_TOKEN: the same functions in order, the layer loop walking the arena by layer_stride */
void op_body(int d, int inter, int packing, int token, int layers, const uint16_t *emb, word_t *x, word_t *h,
             MMFREE_WPORT_PARAMS) {
    op_embed(d, token, emb, x);
    const uint64_t stride = layer_stride(d, inter, packing);
    const int hrow = pad4(d);
    uint64_t wb = 0;
    int hoff = 0;
    for (int l = 0; l < layers; l++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_LAYERS
        op_layer(d, inter, packing, wb, x, h, hoff, MMFREE_WPORT_ARGS);
        wb += stride;
        hoff += hrow;
    }
}

}  // namespace

void mmfree_kernel(uint32_t op, uint32_t d, uint32_t inter, uint32_t vocab, uint32_t packing, uint32_t token,
                   uint32_t layers, word_t *x, word_t *h, const uint16_t *emb, word_t *out,
                   MMFREE_WPORT_PARAMS, uint32_t *id_magic, uint32_t *id_version, uint32_t *id_config,
                   uint32_t *id_max_d, uint32_t *id_max_inter, uint32_t *id_max_vocab, uint32_t *id_max_layers,
                   uint32_t *id_clock_khz) {
#pragma HLS INTERFACE s_axilite port=return bundle=control
#pragma HLS INTERFACE s_axilite port=op offset=0x10 bundle=control
#pragma HLS INTERFACE s_axilite port=d offset=0x18 bundle=control
#pragma HLS INTERFACE s_axilite port=inter offset=0x20 bundle=control
#pragma HLS INTERFACE s_axilite port=vocab offset=0x28 bundle=control
#pragma HLS INTERFACE s_axilite port=packing offset=0x30 bundle=control
#pragma HLS INTERFACE s_axilite port=token offset=0x38 bundle=control
#pragma HLS INTERFACE s_axilite port=layers offset=0xb8 bundle=control
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gmem_io depth=2560 max_read_burst_length=256 max_write_burst_length=256
#pragma HLS INTERFACE s_axilite port=x offset=0x40 bundle=control
#pragma HLS INTERFACE m_axi port=h offset=slave bundle=gmem_io depth=2560 max_read_burst_length=256 max_write_burst_length=256
#pragma HLS INTERFACE s_axilite port=h offset=0x4c bundle=control
#pragma HLS INTERFACE m_axi port=emb offset=slave bundle=gmem_emb depth=81920000 max_read_burst_length=256
#pragma HLS INTERFACE s_axilite port=emb offset=0x58 bundle=control
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=gmem_io depth=32000 max_read_burst_length=256 max_write_burst_length=256
#pragma HLS INTERFACE s_axilite port=out offset=0x64 bundle=control
#pragma HLS INTERFACE m_axi port=w0 offset=slave bundle=gmem_w0 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w0 offset=0x70 bundle=control
#if MMFREE_WEIGHT_PORTS > 1
#pragma HLS INTERFACE m_axi port=w1 offset=slave bundle=gmem_w1 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w1 offset=0x7c bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 2
#pragma HLS INTERFACE m_axi port=w2 offset=slave bundle=gmem_w2 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w2 offset=0x88 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 3
#pragma HLS INTERFACE m_axi port=w3 offset=slave bundle=gmem_w3 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w3 offset=0x94 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 4
#pragma HLS INTERFACE m_axi port=w4 offset=slave bundle=gmem_w4 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w4 offset=0xa0 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 5
#pragma HLS INTERFACE m_axi port=w5 offset=slave bundle=gmem_w5 depth=8388608 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE s_axilite port=w5 offset=0xac bundle=control
#endif
#pragma HLS INTERFACE s_axilite port=id_magic offset=0xc0 bundle=control
#pragma HLS INTERFACE s_axilite port=id_version offset=0xc8 bundle=control
#pragma HLS INTERFACE s_axilite port=id_config offset=0xd0 bundle=control
#pragma HLS INTERFACE s_axilite port=id_max_d offset=0xd8 bundle=control
#pragma HLS INTERFACE s_axilite port=id_max_inter offset=0xe0 bundle=control
#pragma HLS INTERFACE s_axilite port=id_max_vocab offset=0xe8 bundle=control
#pragma HLS INTERFACE s_axilite port=id_max_layers offset=0xf0 bundle=control
#pragma HLS INTERFACE s_axilite port=id_clock_khz offset=0xf8 bundle=control
    /* identity block: every call, before any check (OP_IDENT does nothing else) */
    *id_magic = MMFREE_ID_MAGIC;
    *id_version = MMFREE_REGS_VERSION;
    *id_config = MMFREE_ID_CONFIG_VALUE;
    *id_max_d = (uint32_t)MAX_D;
    *id_max_inter = (uint32_t)MAX_I;
    *id_max_vocab = (uint32_t)MAX_V;
    *id_max_layers = (uint32_t)MAX_LAYERS;
    *id_clock_khz = MMFREE_CLOCK_KHZ;
    if (d < 1 || d > (uint32_t)MAX_D || inter < 1 || inter > (uint32_t)MAX_I || vocab < 1 || vocab > (uint32_t)MAX_V ||
        packing > 1u)
        return;
    if (op == MMFREE_OP_EMBED) {
        if (token < vocab) op_embed((int)d, (int)token, emb, x);
    } else if (op == MMFREE_OP_LAYER) {
        op_layer((int)d, (int)inter, (int)packing, 0, x, h, 0, MMFREE_WPORT_ARGS);
    } else if (op == MMFREE_OP_HEAD) {
        op_head((int)d, (int)vocab, (int)packing, 0, x, out, MMFREE_WPORT_ARGS);
    } else if (op == MMFREE_OP_BODY || op == MMFREE_OP_TOKEN) {
        if (token >= vocab || layers < 1 || layers > (uint32_t)MAX_LAYERS) return;
        op_body((int)d, (int)inter, (int)packing, (int)token, (int)layers, emb, x, h, MMFREE_WPORT_ARGS);
        if (op == MMFREE_OP_TOKEN)
            op_head((int)d, (int)vocab, (int)packing, arena_head_offset((int)layers, (int)d, (int)inter, (int)packing),
                    x, out, MMFREE_WPORT_ARGS);
    }
}
