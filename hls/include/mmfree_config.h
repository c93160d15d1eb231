/*
 * Compile-time configuration of mmfree_kernel for one board.
 *
 * The board's numbers come from build/<board>/mmfree_board.h, generated from
 * python/mmfree/data/boards.json (hls/scripts/gen_board_header.py): never written here.
 * The pipeline constants below feed the cycle model (python/mmfree/cycles.py parses them).
 */
#ifndef MMFREE_CONFIG_H
#define MMFREE_CONFIG_H

#include "mmfree_board.h"
#include "mmfree_regs.h"

#ifndef MMFREE_MAX_LAYERS
#error "mmfree_board.h must define MMFREE_MAX_LAYERS (generate it with hls/scripts/gen_board_header.py)"
#endif
#ifndef MMFREE_WEIGHT_PORTS
#error "mmfree_board.h must define MMFREE_WEIGHT_PORTS (generate it with hls/scripts/gen_board_header.py)"
#endif
#if MMFREE_WEIGHT_PORTS < 1 || MMFREE_WEIGHT_PORTS > MMFREE_MAX_WEIGHT_PORT_REGS
#error "MMFREE_WEIGHT_PORTS must be 1..6 (one m_axi bundle gmem_wP and one W<P>_ADDR register per port)"
#endif
#if MMFREE_PORT_BITS != 64 && MMFREE_PORT_BITS != 128
#error "MMFREE_PORT_BITS must be 64 or 128"
#endif
#if 12 % MMFREE_WEIGHT_PORTS != 0
#error "MMFREE_WEIGHT_PORTS must divide ROW_GROUP (12): every port streams the same number of rows"
#endif
#ifndef MMFREE_FLOAT_LANES
#error "mmfree_board.h must define MMFREE_FLOAT_LANES (generate it with hls/scripts/gen_board_header.py)"
#endif
#if MMFREE_FLOAT_LANES != 1 && MMFREE_FLOAT_LANES != 4
#error "MMFREE_FLOAT_LANES must be 1 or 4 (parameter rows of 4 floats: a constant bank per lane)"
#endif
#if 16 % MMFREE_SIGMOID_LANES != 0 || MMFREE_SIGMOID_LANES > MMFREE_FLOAT_LANES
#error "MMFREE_SIGMOID_LANES must divide 16 and be at most MMFREE_FLOAT_LANES"
#endif
/* m_axi depths: elements the C/RTL co-simulation wrapper moves per argument. Co-simulation defines
 * MMFREE_COSIM and takes them from mmfree_cosim.h, written by hls/scripts/gen_vectors.py for the shape of
 * its vectors (the testbench allocates at least as much); synthesis ignores them. */
#ifdef MMFREE_COSIM
#include "mmfree_cosim.h"
#endif
#ifndef MMFREE_DEPTH_W
#define MMFREE_DEPTH_W 1024   /* 128-bit words of the weights (arena) */
#define MMFREE_DEPTH_X 64     /* words of x */
#define MMFREE_DEPTH_H 64     /* words of the state */
#define MMFREE_DEPTH_OUT 64   /* words of the logits */
#define MMFREE_DEPTH_EMB 1024 /* 16-bit elements of the embeddings */
#endif
#ifndef MMFREE_TOKENS
#define MMFREE_TOKENS 1 /* activation vectors per weight word (the census builds 2 and 4 as well) */
#endif

/* cycle-model constants (model, not vendor-tool numbers; see docs/hardware.md) */
#define MMFREE_VEC_LANES   16  /* partial sums of a reduction = numerics.VEC_LANES (not hardware lanes) */
#define MMFREE_MV_DEPTH    20  /* matvec pipeline: decode, 64/80-lane adder tree, accumulate, sitofp + fmul */
#define MMFREE_VEC_DEPTH   40  /* quantize: fmul, fmul, round (compares, conversions), word assembly */
#define MMFREE_RED_DEPTH  150  /* reductions and the sigmoid pass: 2 x exp2 polynomial + fdiv, then the lane
                                  tree and rsqrt (fdiv, fsqrt, fdiv): the deepest pass (review of the v1 kernel:
                                  110-190 cycles at 300 MHz) */
#define MMFREE_MEM_DEPTH   80  /* DDR read latency before the first beat of a burst (~300 ns at 250-300 MHz) */
#define MMFREE_CALL_CYCLES 8   /* per kernel call: ap_ctrl_hs start/done handshake, scalar register reads */

#ifndef MMFREE_CLOCK_KHZ
#error "mmfree_board.h must define MMFREE_CLOCK_KHZ (generate it with hls/scripts/gen_board_header.py)"
#endif
/* identity block values (hls/include/mmfree_regs.h, MMFREE_REG_ID_*) */
#define MMFREE_ID_CONFIG_VALUE                                              \
    (((uint32_t)MMFREE_WEIGHT_PORTS << MMFREE_ID_CONFIG_PORTS_SHIFT) |      \
     ((uint32_t)MMFREE_PORT_BITS << MMFREE_ID_CONFIG_PORT_BITS_SHIFT) |     \
     ((uint32_t)MMFREE_FLOAT_LANES << MMFREE_ID_CONFIG_LANES_SHIFT) |       \
     ((uint32_t)MMFREE_SIGMOID_LANES << MMFREE_ID_CONFIG_SIG_LANES_SHIFT))

namespace mmfree {

static const int PORTS = MMFREE_WEIGHT_PORTS;
static const int PORT_BITS = MMFREE_PORT_BITS;
static const int PORT_BYTES = MMFREE_PORT_BITS / 8;
static const int FLOATS_PER_BEAT = PORT_BYTES / 4;
static const int MAX_D = MMFREE_MAX_D;
static const int MAX_I = MMFREE_MAX_INTER;
static const int MAX_V = MMFREE_MAX_VOCAB;
static const int MAX_LAYERS = MMFREE_MAX_LAYERS;
static const int MAX_K = MAX_D > MAX_I ? MAX_D : MAX_I;               /* widest input of a product */
static const int MAX_ROWS = 2 * MAX_I > MAX_D ? 2 * MAX_I : MAX_D;    /* most rows of a layer product */
static const int MAX_LANES = PORT_BYTES * 5;                          /* codes per beat, base-3 */
static const int MIN_LANES = PORT_BYTES * 4;                          /* codes per beat, 2-bit */
static const int MAX_BEATS = (MAX_K + MIN_LANES - 1) / MIN_LANES + (16 / PORT_BYTES); /* beats per row, with padding */
static const int MAX_ROWS_PAD = (MAX_ROWS + 11) / 12 * 12;            /* rows padded to ROW_GROUP */
static const int MAX_RPP = MAX_ROWS_PAD / PORTS;                       /* rows per port */
static const int MAX_OUT = MAX_D > MAX_I ? (MAX_D > 1536 ? MAX_D : 1536) : (MAX_I > 1536 ? MAX_I : 1536);
                                                                       /* most rows one product writes to one array */
static const int EXT_ROWS = MMFREE_TOKENS > 1 ? MAX_OUT : 1;
static const int FLOAT_LANES = MMFREE_FLOAT_LANES;                     /* cheap vector passes: elements per cycle */
static const int SIGMOID_LANES = MMFREE_SIGMOID_LANES;                 /* passes with sigmoids: elements per cycle */
static const int MAX_PRM = 8 + 9 * ((MAX_D + 3) / 4 * 4) + (MAX_I + 3) / 4 * 4; /* layer params (floats) */

}  // namespace mmfree

#endif /* MMFREE_CONFIG_H */
