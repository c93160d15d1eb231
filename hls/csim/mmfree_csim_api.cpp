/*
 * Plain C ABI of the C-simulated mmfree_kernel, for the emulator (python/mmfree/csim.py, ctypes).
 *
 *   int mmfree_csim_call(uint32_t *regs, size_t nregs, resolve, ctx)
 *
 * regs is an image of the s_axilite register file: regs[offset / 4] holds the 32-bit word at
 * byte offset `offset` (hls/include/mmfree_regs.h). The kernel's output registers, the identity block
 * MMFREE_REG_ID_* (written by every call, OP_IDENT included: it resolves no address and checks no
 * other register), are written back into the image, with their ap_vld bits at offset + 4. Each address register the op uses is turned
 * into a host pointer by resolve(addr, nbytes, ctx), nbytes being the extent the op touches
 * (computed from d, I, V, packing); resolve returns NULL for an address outside every buffer.
 * Then the same top function that Vitis HLS synthesizes is called.
 *
 * Weight registers: a build resolves W0..W(PORTS-1), the registers its ports have (the driver writes
 * the blob address into each of them); each must resolve to a buffer holding the whole blob, or the
 * call fails naming it. W registers beyond the build's ports (W4, W5 on a 4-port build, W2..W5 on
 * PYNQ-Z2) are not read: they may hold anything, 0 included, as on the hardware, which has no such
 * registers.
 *
 * Whole-token ops (OP_BODY, OP_TOKEN): LAYERS must be 1..MMFREE_MAX_LAYERS; the W registers hold the
 * weights arena (mmfree_layout.h), resolved with the extent the op reads: (LAYERS - 1) * layer_stride
 * + layer_blob_bytes for BODY, arena_bytes (LAYERS layers + head) for TOKEN; H_ADDR with
 * state_bytes(LAYERS, d) (row l at H_ADDR + 4 * l * pad4(d)); EMB and X as for EMBED; OUT (TOKEN)
 * as for HEAD. A buffer too short for that extent fails the call naming its register.
 *
 * Returns 0 on success, or an error code (mmfree_csim_strerror explains it):
 *   MMFREE_CSIM_EREGS    register image shorter than MMFREE_REG_SPAN
 *   MMFREE_CSIM_EOP      unknown op
 *   MMFREE_CSIM_EDIMS    d, I, V, packing outside 1..maxima of this build
 *   MMFREE_CSIM_ETOKEN   token >= V
 *   MMFREE_CSIM_ELAYERS  LAYERS outside 1..MMFREE_MAX_LAYERS (BODY, TOKEN)
 *   0x1000 + OFFSET      the address register at OFFSET could not be resolved (outside every buffer)
 *   0x2000 + OFFSET      the address register at OFFSET is not 16-byte aligned
 */
#include <stddef.h>
#include <stdint.h>

#include "mmfree_kernel.h"
#include "mmfree_layout.h"
#include "mmfree_trace.h"

#define MMFREE_CSIM_EREGS  1
#define MMFREE_CSIM_EOP    2
#define MMFREE_CSIM_EDIMS  3
#define MMFREE_CSIM_ETOKEN 4
#define MMFREE_CSIM_ELAYERS 5
#define MMFREE_CSIM_EADDR  0x1000
#define MMFREE_CSIM_EALIGN 0x2000

using namespace mmfree;

#define MMFREE_CSIM_W_(P, W) , (const word_t *)w[P]

typedef void *(*mmfree_resolve_fn)(uint64_t addr, uint64_t nbytes, void *ctx);

static uint64_t reg64(const uint32_t *regs, int off) {
    return (uint64_t)regs[off / 4] | ((uint64_t)regs[off / 4 + 1] << 32);
}

static int resolve_reg(const uint32_t *regs, int off, uint64_t nbytes, mmfree_resolve_fn resolve, void *ctx,
                       void **out) {
    const uint64_t addr = reg64(regs, off);
    if (addr % 16 != 0) return MMFREE_CSIM_EALIGN + off;
    void *p = resolve(addr, nbytes, ctx);
    if (!p) return MMFREE_CSIM_EADDR + off;
    *out = p;
    return 0;
}

extern "C" {

static const int id_offsets[8] = {MMFREE_REG_ID_MAGIC,     MMFREE_REG_ID_VERSION,   MMFREE_REG_ID_CONFIG,
                                  MMFREE_REG_ID_MAX_D,     MMFREE_REG_ID_MAX_INTER, MMFREE_REG_ID_MAX_VOCAB,
                                  MMFREE_REG_ID_MAX_LAYERS, MMFREE_REG_ID_CLOCK_KHZ};

/* the identity words the kernel wrote, into the image (data word + ap_vld at offset + 4) */
static void store_ident(uint32_t *regs, const uint32_t *idr) {
    for (int i = 0; i < 8; i++) {
        regs[id_offsets[i] / 4] = idr[i];
        regs[id_offsets[i] / 4 + 1] = 1u;
    }
}

int mmfree_csim_call(uint32_t *regs, size_t nregs, mmfree_resolve_fn resolve, void *ctx) {
    if (!regs || nregs * 4 < (size_t)MMFREE_REG_SPAN) return MMFREE_CSIM_EREGS;
    const uint32_t op = regs[MMFREE_REG_OP / 4], d = regs[MMFREE_REG_D / 4], inter = regs[MMFREE_REG_INTER / 4];
    const uint32_t vocab = regs[MMFREE_REG_VOCAB / 4], packing = regs[MMFREE_REG_PACKING / 4];
    const uint32_t token = regs[MMFREE_REG_TOKEN / 4], layers = regs[MMFREE_REG_LAYERS / 4];
    uint32_t idr[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (op == MMFREE_OP_IDENT) {
        void *none[MMFREE_MAX_WEIGHT_PORT_REGS] = {0, 0, 0, 0, 0, 0};
        void **w = none;
        mmfree_kernel(op, d, inter, vocab, packing, token, layers, 0, 0, 0, 0,
                      (const word_t *)w[0] MMFREE_WPORTS_AFTER0(MMFREE_CSIM_W_), MMFREE_ID_ARGS(idr));
        store_ident(regs, idr);
        return 0;
    }
    if (op > MMFREE_OP_IDENT) return MMFREE_CSIM_EOP;
    if (d < 1 || d > (uint32_t)MAX_D || inter < 1 || inter > (uint32_t)MAX_I || vocab < 1 ||
        vocab > (uint32_t)MAX_V || packing > 1u)
        return MMFREE_CSIM_EDIMS;
    void *x = 0, *h = 0, *emb = 0, *out = 0;
    void *w[MMFREE_MAX_WEIGHT_PORT_REGS] = {0, 0, 0, 0, 0, 0};
    const int woff[MMFREE_MAX_WEIGHT_PORT_REGS] = {MMFREE_REG_W0_ADDR, MMFREE_REG_W1_ADDR, MMFREE_REG_W2_ADDR,
                                                   MMFREE_REG_W3_ADDR, MMFREE_REG_W4_ADDR, MMFREE_REG_W5_ADDR};
    int e = resolve_reg(regs, MMFREE_REG_X_ADDR, vec_bytes((int)d), resolve, ctx, &x);
    if (e) return e;
    uint64_t wbytes = 0;
    if (op == MMFREE_OP_EMBED) {
        if (token >= vocab) return MMFREE_CSIM_ETOKEN;
        if ((e = resolve_reg(regs, MMFREE_REG_EMB_ADDR, emb_bytes((int)d, (int)vocab), resolve, ctx, &emb))) return e;
    } else if (op == MMFREE_OP_LAYER) {
        if ((e = resolve_reg(regs, MMFREE_REG_H_ADDR, vec_bytes((int)d), resolve, ctx, &h))) return e;
        wbytes = layer_blob_bytes((int)d, (int)inter, (int)packing);
    } else if (op == MMFREE_OP_HEAD) {
        if ((e = resolve_reg(regs, MMFREE_REG_OUT_ADDR, vec_bytes((int)vocab), resolve, ctx, &out))) return e;
        wbytes = head_blob_bytes((int)d, (int)vocab, (int)packing);
    } else {  /* BODY, TOKEN */
        if (layers < 1 || layers > (uint32_t)MAX_LAYERS) return MMFREE_CSIM_ELAYERS;
        if (token >= vocab) return MMFREE_CSIM_ETOKEN;
        const int L = (int)layers, D = (int)d, I = (int)inter, P = (int)packing;
        if ((e = resolve_reg(regs, MMFREE_REG_EMB_ADDR, emb_bytes(D, (int)vocab), resolve, ctx, &emb))) return e;
        if ((e = resolve_reg(regs, MMFREE_REG_H_ADDR, state_bytes(L, D), resolve, ctx, &h))) return e;
        if (op == MMFREE_OP_TOKEN) {
            if ((e = resolve_reg(regs, MMFREE_REG_OUT_ADDR, vec_bytes((int)vocab), resolve, ctx, &out))) return e;
            wbytes = arena_bytes(L, D, I, (int)vocab, P);
        } else {
            wbytes = arena_layer_offset(L - 1, D, I, P) + layer_blob_bytes(D, I, P);
        }
    }
    if (op != MMFREE_OP_EMBED) {
        for (int p = 0; p < PORTS; p++)
            if ((e = resolve_reg(regs, woff[p], wbytes, resolve, ctx, &w[p]))) return e;
    }
    mmfree_kernel(op, d, inter, vocab, packing, token, layers, (word_t *)x, (word_t *)h, (const uint16_t *)emb,
                  (word_t *)out, (const word_t *)w[0] MMFREE_WPORTS_AFTER0(MMFREE_CSIM_W_), MMFREE_ID_ARGS(idr));
    store_ident(regs, idr);
    return 0;
}

const char *mmfree_csim_strerror(int code) {
    switch (code) {
    case 0: return "ok";
    case MMFREE_CSIM_EREGS: return "register image shorter than MMFREE_REG_SPAN";
    case MMFREE_CSIM_EOP: return "unknown op";
    case MMFREE_CSIM_EDIMS: return "d, I, V or packing outside this build's range";
    case MMFREE_CSIM_ETOKEN: return "token id >= vocab";
    case MMFREE_CSIM_ELAYERS: return "register LAYERS (0xb8) outside 1..MMFREE_MAX_LAYERS of this build";
    default: break;
    }
    if (code >= MMFREE_CSIM_EALIGN) return "an address register is not 16-byte aligned";
    if (code >= MMFREE_CSIM_EADDR) return "an address register points outside every buffer";
    return "unknown error";
}

/* trace callback (NULL to turn off) */
void mmfree_csim_set_trace(mmfree_trace_fn fn, void *ctx) {
    csim_state().trace = fn;
    csim_state().ctx = ctx;
}

/* loop-trip counters of the cycle model, per class MMFREE_CYC_*: iterations and loop entries */
int mmfree_csim_counters(uint64_t *iters, uint64_t *loops, int n) {
    for (int c = 0; c < n && c < MMFREE_CYC_CLASSES; c++) {
        iters[c] = csim_state().iters[c];
        loops[c] = csim_state().loops[c];
    }
    return MMFREE_CYC_CLASSES;
}

void mmfree_csim_reset_counters(void) {
    for (int c = 0; c < MMFREE_CYC_CLASSES; c++) csim_state().iters[c] = csim_state().loops[c] = 0;
}

/* compile-time configuration: [regs version, ports, port bits, max d, max I, max V, reduction partials (16),
 * mv depth, vec depth, float lanes, red depth, mem depth, head rows, max layers, call cycles, sigmoid lanes,
 * tokens per weight word] */
int mmfree_csim_config(uint32_t *out, int n) {
    const uint32_t v[] = {MMFREE_REGS_VERSION, (uint32_t)PORTS, (uint32_t)PORT_BITS, (uint32_t)MAX_D, (uint32_t)MAX_I,
                          (uint32_t)MAX_V, MMFREE_VEC_LANES, MMFREE_MV_DEPTH, MMFREE_VEC_DEPTH, MMFREE_FLOAT_LANES,
                          MMFREE_RED_DEPTH, MMFREE_MEM_DEPTH, (uint32_t)HEAD_ROWS, (uint32_t)MAX_LAYERS,
                          MMFREE_CALL_CYCLES, MMFREE_SIGMOID_LANES, MMFREE_TOKENS};
    const int m = (int)(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < n && i < m; i++) out[i] = v[i];
    return m;
}

const char *mmfree_csim_board(void) { return MMFREE_BOARD_NAME; }

/* DDR layout (hls/include/mmfree_layout.h) */
uint64_t mmfree_layer_blob_bytes(int d, int inter, int packing) { return layer_blob_bytes(d, inter, packing); }
uint64_t mmfree_layer_codes_offset(int proj, int d, int inter, int packing) {
    return layer_codes_offset(proj, d, inter, packing);
}
uint64_t mmfree_layer_params_offset(int d, int inter, int packing) { return layer_params_offset(d, inter, packing); }
int mmfree_layer_vec_index(int v, int d, int inter) { return layer_vec_index(v, d, inter); }
uint64_t mmfree_head_blob_bytes(int d, int vocab, int packing) { return head_blob_bytes(d, vocab, packing); }
uint64_t mmfree_head_params_offset(int d, int vocab, int packing) { return head_params_offset(d, vocab, packing); }
int mmfree_head_vec_index(int v, int d) { return head_vec_index(v, d); }
uint64_t mmfree_vec_bytes(int n) { return vec_bytes(n); }
uint64_t mmfree_emb_bytes(int d, int vocab) { return emb_bytes(d, vocab); }
uint64_t mmfree_layer_stride(int d, int inter, int packing) { return layer_stride(d, inter, packing); }
uint64_t mmfree_arena_head_offset(int layers, int d, int inter, int packing) {
    return arena_head_offset(layers, d, inter, packing);
}
uint64_t mmfree_arena_bytes(int layers, int d, int inter, int vocab, int packing) {
    return arena_bytes(layers, d, inter, vocab, packing);
}
uint64_t mmfree_state_bytes(int layers, int d) { return state_bytes(layers, d); }

}  // extern "C"
