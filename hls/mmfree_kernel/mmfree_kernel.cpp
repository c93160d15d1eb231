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
 * Every op is the same sequence with parts switched off: embed (EMBED, BODY, TOKEN), a layer loop (1
 * layer for LAYER, LAYERS for BODY and TOKEN, none otherwise), the head (HEAD, TOKEN). So each
 * datapath has one call site: one layer, one head, and inside them one instance of each building
 * block (ALLOCATION function limit=1 where a block serves several projections).
 * The sequence is golden.py's GoldenModel.layer / head / embed, operation for operation.
 *   OP_IDENT  nothing but the identity block, which every call writes first (mmfree_regs.h MMFREE_REG_ID_*)
 * Registers outside their bounds (d > MAX_D, ...) make the call return without touching memory.
 */
#include "mmfree_kernel.h"
#include "mmfree_layout.h"
#include "mmfree_vector.h"

using namespace mmfree;

namespace {

/* on-chip buffers; banks in mmfree_kernel() (ARRAY_PARTITION, BIND_STORAGE) */
qslot_t q_buf[MMFREE_TOKENS][MAX_BEATS];                   /* activations, one word per beat */
vf x_buf[MAX_D], h_buf[MAX_D];                               /* residual stream, this layer's state */
vf yi_buf[MAX_D], yf_buf[MAX_D], yg_buf[MAX_D], o_buf[MAX_D]; /* token mixer */
vf gate_buf[MAX_I], up_buf[MAX_I], z_buf[MAX_I];             /* channel mixer */
vf prm_buf[MAX_PRM / 4][4];                                  /* this blob's params, rows of 4 floats */
vf prm_b[MAX_PRM / 4][4];                                    /* a second copy (norm_scan reads 4 vectors) */
vf out_buf[HEAD_ROWS];                                       /* one chunk of logits */
vf ext_buf[MMFREE_TOKENS > 1 ? MMFREE_TOKENS - 1 : 1][EXT_ROWS]; /* products for tokens 1..T-1 (census T > 1) */
#ifndef __SYNTHESIS__
int8_t q_trace[MAX_K];
int32_t acc_trace[MAX_OUT];
vf out_trace[MAX_OUT];
vf f_trace[MAX_D];
#endif

/* params block of a blob -> prm_buf, one unconditional burst on port 0 */
void load_params(wport_t w0, uint64_t byte_off, int nfloats) {
#pragma HLS INLINE off
    MMFREE_FUNC("load_params");
    const uint64_t base = byte_off / PORT_BYTES;
    const int nbeats = (nfloats * 4 + PORT_BYTES - 1) / PORT_BYTES;
    MMFREE_COUNT(MMFREE_CYC_MEM, nbeats);
    for (int i = 0; i < nbeats; i++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_PRM/FLOATS_PER_BEAT
        const word_t v = w0[base + (uint64_t)i];
        for (int j = 0; j < FLOATS_PER_BEAT; j++) {
#pragma HLS UNROLL
            const int e = i * FLOATS_PER_BEAT + j;
            const vf f = bits_to_f32((uint32_t)v.range(32 * j + 31, 32 * j).to_uint());
            prm_buf[e >> 2][e & 3] = f;
            prm_b[e >> 2][e & 3] = f;
        }
    }
}

/* float32[n] from DDR words, from element offset off (a multiple of FLOATS_PER_BEAT) */
void read_vec(ioport_t src, int off, int n, vf dst[MAX_D]) {
#pragma HLS INLINE off
    MMFREE_FUNC("read_vec");
    const int nbeats = (n + FLOATS_PER_BEAT - 1) / FLOATS_PER_BEAT;
    MMFREE_COUNT(MMFREE_CYC_MEM, nbeats);
    for (int i = 0; i < nbeats; i++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
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
void write_vec(ioport_t dst, int off, const vf src[], int n) {
#pragma HLS INLINE off
    MMFREE_FUNC("write_vec");
    const int nbeats = (n + FLOATS_PER_BEAT - 1) / FLOATS_PER_BEAT;
    MMFREE_COUNT(MMFREE_CYC_MEM, nbeats);
    for (int i = 0; i < nbeats; i++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_OUT/FLOATS_PER_BEAT
        word_t v = 0;
        for (int j = 0; j < FLOATS_PER_BEAT; j++) {
#pragma HLS UNROLL
            const int k = i * FLOATS_PER_BEAT + j;
            v.range(32 * j + 31, 32 * j) = k < n ? f32_to_bits(src[k]) : 0u;
        }
        dst[off / FLOATS_PER_BEAT + i] = v;
    }
}

/* golden.bitlinear for one token, its input side: int8 codes of (v * gain) * (127 / m) into q_buf, m the
 * absmax of v * gain (computed by the pass that produced or last read v) */
void bitlinear_in(const char *name, const vf v[], int g4, vf m, int k, int packing) {
#pragma HLS INLINE off
    MMFREE_FUNC("bitlinear_in");
    const int lanes = lanes_per_beat(packing);
#ifndef __SYNTHESIS__
    quantize_mul<FLOAT_LANES>(v, prm_buf, g4, k, quant_scale(m), lanes, beats_per_row(k, packing), q_buf[0], q_trace);
    MMFREE_TRACE(name, "absmax", MMFREE_T_F32, &m, 0, 1);
    MMFREE_TRACE(name, "q", MMFREE_T_I8, q_trace, 0, (uint64_t)k);
#else
    (void)name;
    quantize_mul<FLOAT_LANES>(v, prm_buf, g4, k, quant_scale(m), lanes, beats_per_row(k, packing), q_buf[0], 0);
#endif
}

/* its product side: rows [row0, row0 + rows) of a matrix at byte offset `off` (k columns), scaled at the
 * row end into out / out_hi as `mode` says (MvMode) */
void bitlinear_rows(const char *name, MMFREE_WPORT_PARAMS, uint64_t off, int row0, int rows, int k, int packing,
                    vf scale, vf out[], vf out_hi[], int mode) {
#pragma HLS INLINE off
    MMFREE_FUNC("bitlinear_rows");
    const uint64_t base = off / PORT_BYTES + (uint64_t)row0 * (uint64_t)beats_per_row(k, packing);
    vf sc[MMFREE_TOKENS];
    for (int t = 0; t < MMFREE_TOKENS; t++) sc[t] = scale;
    MvOut mo = {out, out_hi, mode};
#ifndef __SYNTHESIS__
    ternary_matvec<MMFREE_TOKENS>(MMFREE_WPORT_ARGS, base, rows, k, packing, q_buf, sc, mo, ext_buf, acc_trace, out_trace);
    MMFREE_TRACE(name, "acc", MMFREE_T_I32, acc_trace, (uint64_t)row0, (uint64_t)rows);
    MMFREE_TRACE(name, "out", MMFREE_T_F32, out_trace, (uint64_t)row0, (uint64_t)rows);
#else
    (void)name;
    ternary_matvec<MMFREE_TOKENS>(MMFREE_WPORT_ARGS, base, rows, k, packing, q_buf, sc, mo, ext_buf, 0, 0);
#endif
}

/* one projection: codes of v * gain, the output scale, the product */
void bitlinear(const char *name, MMFREE_WPORT_PARAMS, uint64_t off, int rows, int k, int packing, const vf v[],
               int g4, vf m, vf alpha, vf rscale, vf out[], vf out_hi[], int mode) {
#pragma HLS INLINE off
    MMFREE_FUNC("bitlinear");
    bitlinear_in(name, v, g4, m, k, packing);
    const vf scale = out_scale(alpha, m, rscale);
    MMFREE_TRACE(name, "scale", MMFREE_T_F32, &scale, 0, 1);
    bitlinear_rows(name, MMFREE_WPORT_ARGS, off, 0, rows, k, packing, scale, out, out_hi, mode);
}

void op_embed(int d, int token, embport_t emb, ioport_t x) {
#pragma HLS INLINE
    MMFREE_FUNC("op_embed");
    MMFREE_COUNT(MMFREE_CYC_MEM, d);
    for (int k = 0; k < d; k++) {
#pragma HLS PIPELINE II=1
        MMFREE_ITER();
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_D
        x_buf[k] = bits_to_f32((uint32_t)(uint16_t)emb[(uint64_t)token * (uint64_t)d + (uint64_t)k] << 16);
    }
    MMFREE_TRACE("", "x", MMFREE_T_F32, x_buf, 0, (uint64_t)d);
    write_vec(x, 0, x_buf, d);
}

/* One layer on x_buf. wb: byte offset of its blob on the weight ports (0 for OP_LAYER, l * layer_stride in
 * the arena); hoff: float offset of its state row in h (0 for OP_LAYER, l * pad4(d) for BODY/TOKEN).
 * x stays on chip from layer to layer: read from DDR only by OP_LAYER (x_in), written after the last. */
void op_layer(int d, int inter, int packing, uint64_t wb, ioport_t x, ioport_t h, int hoff, bool x_in, bool x_out,
              MMFREE_WPORT_PARAMS) {
#pragma HLS INLINE
    MMFREE_FUNC("op_layer");
    load_params(w0, wb + layer_params_offset(d, inter, packing), layer_params_floats(d, inter));
    const int attn_norm = layer_vec_index(V_ATTN_NORM, d, inter) / 4;
    const int mlp_norm = layer_vec_index(V_MLP_NORM, d, inter) / 4;
    const int g_norm = layer_vec_index(V_G_NORM, d, inter) / 4;
    const int lb = layer_vec_index(V_LB, d, inter) / 4;
    const int gain_i = layer_vec_index(V_GAIN_I, d, inter) / 4;
    const int gain_f = layer_vec_index(V_GAIN_F, d, inter) / 4;
    const int gain_g = layer_vec_index(V_GAIN_G, d, inter) / 4;
    const int gain_o = layer_vec_index(V_GAIN_O, d, inter) / 4;
    const int gain_gu = layer_vec_index(V_GAIN_GATE_UP, d, inter) / 4;
    const int gain_down = layer_vec_index(V_GAIN_DOWN, d, inter) / 4;
    if (x_in) read_vec(x, 0, d, x_buf);
    read_vec(h, hoff, d, h_buf);
    vf m[3];

    /* token mixer: i, f, g from a = RMSNorm(x) * attn_norm (gains folded; r_x * r_a scales) */
    const vf rs = norm_scan<FLOAT_LANES>(x_buf, prm_buf, prm_b, attn_norm, gain_i, gain_f, gain_g, d, m);
    bitlinear("i", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_I, d, inter, packing), d, d, packing, x_buf, gain_i,
              m[0], prm_buf[P_I >> 2][P_I & 3], rs, yi_buf, yi_buf, MV_STORE);
    bitlinear("f", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_F, d, inter, packing), d, d, packing, x_buf, gain_f,
              m[1], prm_buf[P_F >> 2][P_F & 3], rs, yf_buf, yf_buf, MV_STORE);
    bitlinear("g", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_G, d, inter, packing), d, d, packing, x_buf, gain_g,
              m[2], prm_buf[P_G >> 2][P_G & 3], rs, yg_buf, yg_buf, MV_STORE);
    vf m_o;
#ifndef __SYNTHESIS__
    gate_pass<SIGMOID_LANES>(G_MLGRU, yf_buf, yi_buf, prm_buf, lb, lb, 0.0f, h_buf, o_buf, f_trace, d, m_o);
    MMFREE_TRACE("", "forget", MMFREE_T_F32, f_trace, 0, (uint64_t)d);
#else
    gate_pass<SIGMOID_LANES>(G_MLGRU, yf_buf, yi_buf, prm_buf, lb, lb, 0.0f, h_buf, o_buf, 0, d, m_o);
#endif
    MMFREE_TRACE("", "state", MMFREE_T_F32, h_buf, 0, (uint64_t)d);
    const vf r_g = rms_factor<FLOAT_LANES>(yg_buf, d);
    const vf r_o = gate_pass<SIGMOID_LANES>(G_OUT, yg_buf, yg_buf, prm_buf, g_norm, gain_o, r_g, h_buf, o_buf, 0, d, m_o);
    MMFREE_TRACE("", "o_in", MMFREE_T_F32, o_buf, 0, (uint64_t)d);
    bitlinear("o", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_O, d, inter, packing), d, d, packing, o_buf, gain_o,
              m_o, prm_buf[P_O >> 2][P_O & 3], r_o, x_buf, x_buf, MV_ADD);   /* x += o(...) at the row end */

    /* channel mixer: [gate | up] = BitLinear(RMSNorm(x) * mlp_norm); x += down(silu(gate) * up) */
    const vf rs2 = norm_scan<FLOAT_LANES>(x_buf, prm_buf, prm_b, mlp_norm, gain_gu, gain_gu, gain_gu, d, m);
    bitlinear("gate_up", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_GATE_UP, d, inter, packing), 2 * inter, d,
              packing, x_buf, gain_gu, m[0], prm_buf[P_GATE_UP >> 2][P_GATE_UP & 3], rs2, gate_buf, up_buf, MV_PAIRS);
    vf m_d;
    const vf r_z = gate_pass<SIGMOID_LANES>(G_SWIGLU, gate_buf, up_buf, prm_buf, 0, gain_down, 0.0f, h_buf, z_buf, 0,
                                            inter, m_d);
    MMFREE_TRACE("", "z", MMFREE_T_F32, z_buf, 0, (uint64_t)inter);
    bitlinear("down", MMFREE_WPORT_ARGS, wb + layer_codes_offset(P_DOWN, d, inter, packing), d, inter, packing, z_buf,
              gain_down, m_d, prm_buf[P_DOWN >> 2][P_DOWN & 3], r_z, x_buf, x_buf, MV_ADD);  /* x += down(...) */
    MMFREE_TRACE("", "x", MMFREE_T_F32, x_buf, 0, (uint64_t)d);

    if (x_out) write_vec(x, 0, x_buf, d);
    write_vec(h, hoff, h_buf, d);
}

/* wb: byte offset of the head blob on the weight ports (0 for OP_HEAD, LAYERS * layer_stride in the arena);
 * x_in: read x from DDR (OP_HEAD), else x_buf holds it (OP_TOKEN) */
void op_head(int d, int vocab, int packing, uint64_t wb, bool x_in, ioport_t x, ioport_t out, MMFREE_WPORT_PARAMS) {
#pragma HLS INLINE
    MMFREE_FUNC("op_head");
    load_params(w0, wb + head_params_offset(d, vocab, packing), head_params_floats(d));
    const int final_norm = head_vec_index(V_FINAL_NORM, d) / 4;
    const int gain = head_vec_index(V_GAIN_HEAD, d) / 4;
    if (x_in) read_vec(x, 0, d, x_buf);
    vf m[3];
    const vf rs = norm_scan<FLOAT_LANES>(x_buf, prm_buf, prm_b, final_norm, gain, gain, gain, d, m);
    bitlinear_in("lm_head", x_buf, gain, m[0], d, packing);
    const vf scale = out_scale(prm_buf[0][0], m[0], rs);
    MMFREE_TRACE("lm_head", "scale", MMFREE_T_F32, &scale, 0, 1);
    for (int row0 = 0; row0 < vocab; row0 += HEAD_ROWS) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=(MAX_V+HEAD_ROWS-1)/HEAD_ROWS
        const int rows = vocab - row0 < HEAD_ROWS ? vocab - row0 : HEAD_ROWS;
        bitlinear_rows("lm_head", MMFREE_WPORT_ARGS, wb, row0, rows, d, packing, scale, out_buf, out_buf, MV_STORE);
        write_vec(out, row0, out_buf, rows);
    }
}

}  // namespace

void mmfree_kernel(uint32_t op, uint32_t d, uint32_t inter, uint32_t vocab, uint32_t packing, uint32_t token,
                   uint32_t layers, ioport_t x, ioport_t h, embport_t emb, ioport_t out,
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
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gmem_io depth=MMFREE_DEPTH_X max_read_burst_length=16 max_write_burst_length=16 num_read_outstanding=4 num_write_outstanding=4
#pragma HLS INTERFACE s_axilite port=x offset=0x40 bundle=control
#pragma HLS INTERFACE m_axi port=h offset=slave bundle=gmem_io depth=MMFREE_DEPTH_H max_read_burst_length=16 max_write_burst_length=16 num_read_outstanding=4 num_write_outstanding=4
#pragma HLS INTERFACE s_axilite port=h offset=0x4c bundle=control
#pragma HLS INTERFACE m_axi port=emb offset=slave bundle=gmem_emb depth=MMFREE_DEPTH_EMB max_read_burst_length=16 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=emb offset=0x58 bundle=control
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=gmem_io depth=MMFREE_DEPTH_OUT max_read_burst_length=16 max_write_burst_length=16 num_read_outstanding=4 num_write_outstanding=4
#pragma HLS INTERFACE s_axilite port=out offset=0x64 bundle=control
#pragma HLS INTERFACE m_axi port=w0 offset=slave bundle=gmem_w0 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=w0 offset=0x70 bundle=control
#if MMFREE_WEIGHT_PORTS > 1
#pragma HLS INTERFACE m_axi port=w1 offset=slave bundle=gmem_w1 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=w1 offset=0x7c bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 2
#pragma HLS INTERFACE m_axi port=w2 offset=slave bundle=gmem_w2 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=w2 offset=0x88 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 3
#pragma HLS INTERFACE m_axi port=w3 offset=slave bundle=gmem_w3 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=w3 offset=0x94 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 4
#pragma HLS INTERFACE m_axi port=w4 offset=slave bundle=gmem_w4 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
#pragma HLS INTERFACE s_axilite port=w4 offset=0xa0 bundle=control
#endif
#if MMFREE_WEIGHT_PORTS > 5
#pragma HLS INTERFACE m_axi port=w5 offset=slave bundle=gmem_w5 depth=MMFREE_DEPTH_W max_read_burst_length=64 num_read_outstanding=4
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
    /* m_axi FIFOs: a weight port streams one beat per cycle; DDR answers the first beat of a burst ~100-150
     * cycles after the request (MMFREE_MEM_DEPTH is the model's figure), so 4 outstanding x 64-beat bursts
     * (256 beats in flight) cover the bandwidth-latency product with margin: 1 BRAM36 per port, where
     * 8 x 256 needed 8. x/h/logits/embedding rows are short: 4 x 16. */
    /* banks: every on-chip array read or written several words per cycle (the census checks each loop) */
#pragma HLS ARRAY_PARTITION variable=q_buf type=complete dim=1
#pragma HLS ARRAY_PARTITION variable=BASE3_LUT type=complete dim=1
#pragma HLS ARRAY_PARTITION variable=x_buf type=cyclic factor=MMFREE_X_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=h_buf type=cyclic factor=MMFREE_X_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=yi_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=yf_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=yg_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=o_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=gate_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=up_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=z_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=prm_buf type=complete dim=2
#pragma HLS ARRAY_PARTITION variable=prm_b type=complete dim=2
#pragma HLS ARRAY_PARTITION variable=out_buf type=cyclic factor=MMFREE_Y_BANKS dim=1
#pragma HLS ARRAY_PARTITION variable=ext_buf type=complete dim=1
#pragma HLS ARRAY_PARTITION variable=ext_buf type=cyclic factor=MMFREE_Y_BANKS dim=2
#pragma HLS BIND_STORAGE variable=prm_buf type=ram_2p impl=MMFREE_BIG_RAM
#pragma HLS BIND_STORAGE variable=prm_b type=ram_2p impl=MMFREE_BIG_RAM
#pragma HLS BIND_STORAGE variable=gate_buf type=ram_2p impl=MMFREE_BIG_RAM
#pragma HLS BIND_STORAGE variable=up_buf type=ram_2p impl=MMFREE_BIG_RAM
#pragma HLS BIND_STORAGE variable=z_buf type=ram_2p impl=MMFREE_BIG_RAM
    /* one instance of each building block, whichever projection calls it */
#pragma HLS ALLOCATION function instances=bitlinear limit=1
#pragma HLS ALLOCATION function instances=bitlinear_in limit=1
#pragma HLS ALLOCATION function instances=bitlinear_rows limit=1
#pragma HLS ALLOCATION function instances=load_params limit=1
#pragma HLS ALLOCATION function instances=read_vec limit=1
#pragma HLS ALLOCATION function instances=write_vec limit=1
#pragma HLS ALLOCATION function instances=norm_scan limit=1
    MMFREE_FUNC("mmfree_kernel");
    MMFREE_ONCHIP(q_buf);
    MMFREE_ONCHIP(BASE3_LUT);
    MMFREE_ONCHIP(x_buf);
    MMFREE_ONCHIP(h_buf);
    MMFREE_ONCHIP(yi_buf);
    MMFREE_ONCHIP(yf_buf);
    MMFREE_ONCHIP(yg_buf);
    MMFREE_ONCHIP(o_buf);
    MMFREE_ONCHIP(gate_buf);
    MMFREE_ONCHIP(up_buf);
    MMFREE_ONCHIP(z_buf);
    MMFREE_ONCHIP(prm_buf);
    MMFREE_ONCHIP(prm_b);
    MMFREE_ONCHIP(out_buf);
#if MMFREE_TOKENS > 1
    MMFREE_ONCHIP(ext_buf);
#endif
    if (d < 1 || d > (uint32_t)MAX_D || inter < 1 || inter > (uint32_t)MAX_I || vocab < 1 || vocab > (uint32_t)MAX_V ||
        packing > 1u || op > MMFREE_OP_TOKEN)
        return;
    const bool whole = op == MMFREE_OP_BODY || op == MMFREE_OP_TOKEN;
    if (whole && (layers < 1 || layers > (uint32_t)MAX_LAYERS)) return;
    if ((whole || op == MMFREE_OP_EMBED) && token >= vocab) return;
    const int nl = op == MMFREE_OP_LAYER ? 1 : whole ? (int)layers : 0;
    const uint64_t stride = layer_stride((int)d, (int)inter, (int)packing);
    if (whole || op == MMFREE_OP_EMBED) op_embed((int)d, (int)token, emb, x);
    uint64_t wb = 0;
    int hoff = 0;
    for (int l = 0; l < nl; l++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=MAX_LAYERS
        op_layer((int)d, (int)inter, (int)packing, wb, x, h, hoff, op == MMFREE_OP_LAYER, l == nl - 1,
                 MMFREE_WPORT_ARGS);
        wb += stride;
        hoff += pad4((int)d);
    }
    if (op == MMFREE_OP_HEAD || op == MMFREE_OP_TOKEN)
        op_head((int)d, (int)vocab, (int)packing, op == MMFREE_OP_TOKEN ? wb : 0, op == MMFREE_OP_HEAD, x, out,
                MMFREE_WPORT_ARGS);
}
