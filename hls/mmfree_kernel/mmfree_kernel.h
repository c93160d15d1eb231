/*
 * mmfree_kernel: one HLS IP for embedding, HGRN-Bit layers and the lm_head (one token per call).
 * Register map: hls/include/mmfree_regs.h. DDR layout: hls/include/mmfree_layout.h.
 */
#ifndef MMFREE_KERNEL_H
#define MMFREE_KERNEL_H

#include <stdint.h>
#include "mmfree_matvec.h"

#if MMFREE_WEIGHT_PORTS > 2
#define MMFREE_W23_PARAMS , const mmfree::word_t *w2, const mmfree::word_t *w3
#define MMFREE_W23_ARGS(a, b) , (a), (b)
#else
#define MMFREE_W23_PARAMS
#define MMFREE_W23_ARGS(a, b)
#endif
#if MMFREE_WEIGHT_PORTS > 1
#define MMFREE_W1_PARAM , const mmfree::word_t *w1
#define MMFREE_W1_ARG(a) , (a)
#else
#define MMFREE_W1_PARAM
#define MMFREE_W1_ARG(a)
#endif

void mmfree_kernel(uint32_t op, uint32_t d, uint32_t inter, uint32_t vocab, uint32_t packing, uint32_t token,
                   mmfree::word_t *x, mmfree::word_t *h, const uint16_t *emb, mmfree::word_t *out,
                   const mmfree::word_t *w0 MMFREE_W1_PARAM MMFREE_W23_PARAMS);

#endif /* MMFREE_KERNEL_H */
