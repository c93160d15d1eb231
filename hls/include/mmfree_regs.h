/*
 * mmfree_kernel register map (s_axilite, ap_ctrl_hs): the one definition.
 *
 * The top function's INTERFACE pragmas use these offsets (hls/mmfree_kernel/mmfree_kernel.cpp),
 * the C-simulation ABI reads a register-file image at these offsets (hls/csim/mmfree_csim_api.cpp),
 * and the Python driver parses this file (python/mmfree/csim.py: parse_regs). Keep one
 * `#define NAME 0xOFFSET` per line; stable from version 1 on: new registers only get new offsets
 * (version 2 added W4_ADDR, W5_ADDR for the six weight ports of Zynq UltraScale+ boards; version 3
 * added LAYERS and the whole-token ops BODY and TOKEN: one kernel call per token; version 4 added the
 * identity block at 0xc0..0xfc and OP_IDENT).
 *
 * Every address register is 64 bits: low word at OFFSET, high word at OFFSET + 4.
 */
#ifndef MMFREE_REGS_H
#define MMFREE_REGS_H

#define MMFREE_REGS_VERSION 4

/* ap_ctrl_hs block (Vitis HLS standard) */
#define MMFREE_REG_CTRL        0x00  /* bit0 ap_start, bit1 ap_done, bit2 ap_idle, bit3 ap_ready, bit7 auto_restart */
#define MMFREE_REG_GIE         0x04  /* global interrupt enable */
#define MMFREE_REG_IER         0x08  /* bit0 ap_done, bit1 ap_ready */
#define MMFREE_REG_ISR         0x0c  /* toggle-on-write */

/* 32-bit scalars */
#define MMFREE_REG_OP          0x10  /* MMFREE_OP_* */
#define MMFREE_REG_D           0x18  /* hidden size d, 1..MMFREE_MAX_D */
#define MMFREE_REG_INTER       0x20  /* intermediate size I, 1..MMFREE_MAX_INTER */
#define MMFREE_REG_VOCAB       0x28  /* vocabulary V, 1..MMFREE_MAX_VOCAB */
#define MMFREE_REG_PACKING     0x30  /* MMFREE_PACK_2BIT or MMFREE_PACK_BASE3 */
#define MMFREE_REG_TOKEN       0x38  /* token id for OP_EMBED, OP_BODY, OP_TOKEN: 0..V-1 */

/* 64-bit addresses (physical, as pynq allocate().device_address) */
#define MMFREE_REG_X_ADDR      0x40  /* float32[d]: residual stream (EMBED writes, LAYER reads+writes, HEAD reads) */
#define MMFREE_REG_H_ADDR      0x4c  /* LAYER: float32[pad4(d)], this layer's recurrent state (reads+writes);
                                        BODY, TOKEN: row 0 of float32[LAYERS][pad4(d)], row l at
                                        H_ADDR + 4 * l * pad4(d) (every layer's state) */
#define MMFREE_REG_EMB_ADDR    0x58  /* uint16 bf16 bits [V][d]: embedding table (EMBED reads) */
#define MMFREE_REG_OUT_ADDR    0x64  /* float32[V]: logits (HEAD writes) */
/* Weight ports: a build has MMFREE_WEIGHT_PORTS of them (boards.json weight_ports: 6 on KV260 and
 * ZCU104, 2 on PYNQ-Z2). The driver writes the same blob address into W0..W(ports-1); the kernel
 * has no registers for the ports it lacks (writes there are ignored, the C-sim ABI ignores them). */
#define MMFREE_REG_W0_ADDR     0x70  /* layer blob (LAYER), head blob (HEAD) or the weights arena (BODY, TOKEN:
                                        mmfree_layout.h arena_*), weight port 0 */
#define MMFREE_REG_W1_ADDR     0x7c  /* the same blob address again, weight port 1 */
#define MMFREE_REG_W2_ADDR     0x88  /* same, port 2 (boards with >= 3 weight ports) */
#define MMFREE_REG_W3_ADDR     0x94  /* same, port 3 (boards with >= 4 weight ports) */
#define MMFREE_REG_W4_ADDR     0xa0  /* same, port 4 (boards with >= 5 weight ports) */
#define MMFREE_REG_W5_ADDR     0xac  /* same, port 5 (boards with 6 weight ports) */


/* 32-bit scalar, version 3 */
#define MMFREE_REG_LAYERS      0xb8  /* number of layers L for OP_BODY and OP_TOKEN, 1..MMFREE_MAX_LAYERS (board header) */

/* Identity block, version 4: read-only words the kernel writes at the top of EVERY call, whatever the op
 * and even when the other registers are out of range (output scalars on s_axilite: data word at the
 * offset, its ap_vld bit, clear on read, at offset + 4). Vitis HLS has no constant read-only register,
 * so after the bitstream loads these read 0 until the first call: the driver opens with one OP_IDENT
 * call (it touches no memory; a kernel older than version 4 ignores the unknown op and returns), then
 * reads the block. A magic other than MMFREE_ID_MAGIC means a stale (version <= 3) or foreign overlay. */
#define MMFREE_REG_ID_MAGIC      0xc0  /* MMFREE_ID_MAGIC */
#define MMFREE_REG_ID_VERSION    0xc8  /* MMFREE_REGS_VERSION the kernel was built from */
#define MMFREE_REG_ID_CONFIG     0xd0  /* weight ports [7:0], port bits [15:8], float lanes [23:16], sigmoid lanes [31:24] */
#define MMFREE_REG_ID_MAX_D      0xd8  /* compiled MMFREE_MAX_D */
#define MMFREE_REG_ID_MAX_INTER  0xe0  /* compiled MMFREE_MAX_INTER */
#define MMFREE_REG_ID_MAX_VOCAB  0xe8  /* compiled MMFREE_MAX_VOCAB */
#define MMFREE_REG_ID_MAX_LAYERS 0xf0  /* compiled MMFREE_MAX_LAYERS */
#define MMFREE_REG_ID_CLOCK_KHZ  0xf8  /* the build's clock target in kHz (boards.json clock_mhz) */

#define MMFREE_ID_MAGIC 0x4d4d4652     /* "MMFR" */
#define MMFREE_ID_CONFIG_PORTS_SHIFT     0
#define MMFREE_ID_CONFIG_PORT_BITS_SHIFT 8
#define MMFREE_ID_CONFIG_LANES_SHIFT     16
#define MMFREE_ID_CONFIG_SIG_LANES_SHIFT 24

#define MMFREE_REG_SPAN        0x100 /* bytes of the register file (8 address bits) */
#define MMFREE_MAX_WEIGHT_PORT_REGS 6

/* ops */
#define MMFREE_OP_EMBED 0  /* x = bf16->f32(emb[token]) */
#define MMFREE_OP_LAYER 1  /* one HGRN-Bit layer for one token: x, h updated in place */
#define MMFREE_OP_HEAD  2  /* out = lm_head(RMSNorm(x)) logits */
#define MMFREE_OP_BODY  3  /* EMBED of TOKEN, then layers 0..LAYERS-1 in order from the arena (a prompt token) */
#define MMFREE_OP_TOKEN 4  /* BODY, then HEAD from the arena: one whole decode token, logits in OUT */
#define MMFREE_OP_IDENT 5  /* only the identity block (every call writes it); no memory access */

/* packings (python/mmfree/packed.py) */
#define MMFREE_PACK_2BIT  0
#define MMFREE_PACK_BASE3 1

#endif /* MMFREE_REGS_H */
