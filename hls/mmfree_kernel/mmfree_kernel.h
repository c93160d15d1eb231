/*
 * mmfree_kernel: one HLS IP for embedding, HGRN-Bit layers and the lm_head (one op or one whole token per call).
 * Register map: hls/include/mmfree_regs.h. DDR layout: hls/include/mmfree_layout.h.
 */
#ifndef MMFREE_KERNEL_H
#define MMFREE_KERNEL_H

#include <stdint.h>
#include "mmfree_matvec.h"

/* weight ports w0..w(MMFREE_WEIGHT_PORTS-1): MMFREE_WPORT_PARAMS (hls/include/mmfree_matvec.h) */
void mmfree_kernel(uint32_t op, uint32_t d, uint32_t inter, uint32_t vocab, uint32_t packing, uint32_t token,
                   uint32_t layers, mmfree::ioport_t x, mmfree::ioport_t h, mmfree::embport_t emb, mmfree::ioport_t out,
                   MMFREE_WPORT_PARAMS);

#endif /* MMFREE_KERNEL_H */
