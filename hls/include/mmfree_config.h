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

/* cycle-model constants (model, not vendor-tool numbers; see docs/hardware.md) */
#define MMFREE_VEC_LANES   16  /* vector unit lanes = numerics.VEC_LANES */
#define MMFREE_MV_DEPTH    12  /* matvec pipeline: burst start, decode, 64/80-lane adder tree, accumulate */
#define MMFREE_VEC_DEPTH   24  /* elementwise pass: fmul, fdiv (sigmoid), exp2 polynomial, quantize */
#define MMFREE_RED_II       4  /* 16-lane float reduction: one row of 16 per fadd latency */
#define MMFREE_RED_DEPTH   20  /* reduction fill + 4-level lane tree + rsqrt */
#define MMFREE_MEM_DEPTH   40  /* DDR read latency before the first beat of a burst */
#define MMFREE_CALL_CYCLES 8   /* per kernel call: ap_ctrl_hs start/done handshake, scalar register reads */

#ifndef MMFREE_CLOCK_KHZ
#error "mmfree_board.h must define MMFREE_CLOCK_KHZ (generate it with hls/scripts/gen_board_header.py)"
#endif
/* identity block values (hls/include/mmfree_regs.h, MMFREE_REG_ID_*) */
#define MMFREE_ID_CONFIG_VALUE                                              \
    (((uint32_t)MMFREE_WEIGHT_PORTS << MMFREE_ID_CONFIG_PORTS_SHIFT) |      \
     ((uint32_t)MMFREE_PORT_BITS << MMFREE_ID_CONFIG_PORT_BITS_SHIFT) |     \
     ((uint32_t)MMFREE_VEC_LANES << MMFREE_ID_CONFIG_LANES_SHIFT))

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
static const int MAX_RPP = (MAX_ROWS + PORTS - 1) / PORTS;            /* rows per port */
static const int HEAD_CHUNK = (MAX_ROWS / 4) * 4;                     /* lm_head rows per product */
static const int MAX_PRM = 8 + 9 * ((MAX_D + 3) / 4 * 4) + (MAX_I + 3) / 4 * 4; /* layer params (floats) */

}  // namespace mmfree

#endif /* MMFREE_CONFIG_H */
