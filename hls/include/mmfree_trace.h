/*
 * C-simulation observation hooks: intermediate traces and loop-trip counters.
 *
 * Under __SYNTHESIS__ every macro here expands to nothing: the synthesized kernel has no trace.
 * In C-simulation a test (hls/tb/, or Python through hls/csim/mmfree_csim_api.cpp) installs a
 * callback that receives each intermediate the golden model's trace exposes, and reads the
 * trip counters after a call to check the cycle model.
 */
#ifndef MMFREE_TRACE_H
#define MMFREE_TRACE_H

#include <stdint.h>

/* loop classes of the cycle model: each counts pipelined-loop iterations and loop entries */
#define MMFREE_CYC_MV   0  /* ternary matvec: flattened rows-per-port x beats loop, II=1 */
#define MMFREE_CYC_VEC  1  /* elementwise vector pass: VEC_LANES elements per iteration, II=1 */
#define MMFREE_CYC_RED  2  /* reduction pass: VEC_LANES per iteration, II=MMFREE_RED_II */
#define MMFREE_CYC_MEM  3  /* DDR burst of params/x/h/logits/embedding: one beat per iteration */
#define MMFREE_CYC_CLASSES 4

/* trace element types */
#define MMFREE_T_F32 0
#define MMFREE_T_I32 1
#define MMFREE_T_I8  2

#ifndef __SYNTHESIS__

/* prefix: projection ("i", "f", "g", "o", "gate_up", "down", "lm_head") or "" for layer-level
 * values; name: "absmax", "q", "acc", "scale", "out" or "forget" (the MLGRU forget gate), "state", "o_in", "z", "x".
 * data[0..count) are elements offset..offset+count of the named vector. */
typedef void (*mmfree_trace_fn)(const char *prefix, const char *name, int dtype, const void *data,
                                uint64_t offset, uint64_t count, void *ctx);

namespace mmfree {
struct CsimState {
    mmfree_trace_fn trace;
    void *ctx;
    uint64_t iters[MMFREE_CYC_CLASSES];
    uint64_t loops[MMFREE_CYC_CLASSES];
};
inline CsimState &csim_state() {
    static CsimState s = {0, 0, {0, 0, 0, 0}, {0, 0, 0, 0}};
    return s;
}
}  // namespace mmfree

#define MMFREE_TRACE(prefix, name, dtype, data, offset, count)                                  \
    do {                                                                                        \
        ::mmfree::CsimState &st_ = ::mmfree::csim_state();                                      \
        if (st_.trace) st_.trace((prefix), (name), (dtype), (data), (offset), (count), st_.ctx); \
    } while (0)
#define MMFREE_TRACE_ON() (::mmfree::csim_state().trace != 0)
#define MMFREE_COUNT(cls, n_)                                                                   \
    do {                                                                                        \
        ::mmfree::csim_state().iters[cls] += (uint64_t)(n_);                                     \
        ::mmfree::csim_state().loops[cls] += 1;                                                 \
    } while (0)

#else

#define MMFREE_TRACE(prefix, name, dtype, data, offset, count) do { } while (0)
#define MMFREE_TRACE_ON() 0
#define MMFREE_COUNT(cls, n_) do { } while (0)

#endif

#endif /* MMFREE_TRACE_H */
