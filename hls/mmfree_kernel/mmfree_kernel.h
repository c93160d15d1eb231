/*
 * mmfree_kernel: one HLS IP for embedding, HGRN-Bit layers and the lm_head (one op or one whole token per call).
 * Register map: hls/include/mmfree_regs.h. DDR layout: hls/include/mmfree_layout.h.
 */
#ifndef MMFREE_KERNEL_H
#define MMFREE_KERNEL_H

#include <stdint.h>
#include "mmfree_matvec.h"

/* identity block outputs (hls/include/mmfree_regs.h MMFREE_REG_ID_*), written at the top of every call */
#define MMFREE_ID_PARAMS                                                                                       \
    uint32_t *id_magic, uint32_t *id_version, uint32_t *id_config, uint32_t *id_max_d, uint32_t *id_max_inter, \
        uint32_t *id_max_vocab, uint32_t *id_max_layers, uint32_t *id_clock_khz
/* callers: the eight words of a uint32_t array A, in MMFREE_REG_ID_* order */
#define MMFREE_ID_ARGS(A) &(A)[0], &(A)[1], &(A)[2], &(A)[3], &(A)[4], &(A)[5], &(A)[6], &(A)[7]

/* weight ports w0..w(MMFREE_WEIGHT_PORTS-1): MMFREE_WPORT_PARAMS (hls/include/mmfree_matvec.h) */
void mmfree_kernel(uint32_t op, uint32_t d, uint32_t inter, uint32_t vocab, uint32_t packing, uint32_t token,
                   uint32_t layers, mmfree::ioport_t x, mmfree::ioport_t h, mmfree::embport_t emb, mmfree::ioport_t out,
                   MMFREE_WPORT_PARAMS, MMFREE_ID_PARAMS);

#endif /* MMFREE_KERNEL_H */
