/*
 * Census annotations: what the census build (hls/census/, `make census`) needs to see the kernel as
 * Vitis HLS would build it, and nothing in any other build.
 *
 *   vf                 the vector unit's scalar type: float, or a counting float in the census build
 *   elem<T>            element type of an on-chip array: T, or a counting element (reads/writes per bank)
 *   wport_t, ioport_t, embport_t
 *                      m_axi pointer arguments: raw pointers, or counting ports (bursts per loop)
 *   msum_t, msum2_t, msum3_t
 *                      the ternary lanes' sums (16 bits: at most 80 x 127), or counting integers (adders by width)
 *   MMFREE_ITER()      first statement of every pipelined loop body, right under its PIPELINE pragma:
 *                      one iteration of that loop (the census pairs it with the pragma's II)
 *   MMFREE_FUNC(name)  first statement of a function whose instances the census tells apart: one
 *                      instance per call site, unless an ALLOCATION pragma shares it
 *   MMFREE_ONCHIP(a)   an on-chip array the census watches; its banks come from the ARRAY_PARTITION /
 *                      ARRAY_RESHAPE / BIND_STORAGE pragmas in the sources, read by python/mmfree/census.py
 *   MMFREE_OP(kind)    one operator the types cannot see: "lane.2bit", "lane.base3" (an add/sub/skip mux
 *                      of an int8), "add32" (a 32-bit accumulator adder)
 *
 * The pragmas stay literal `#pragma HLS ...` lines: they are the one declaration of banks, ports,
 * IIs and sharing, read by Vitis HLS and by the census alike.
 */
#ifndef MMFREE_CENSUS_H
#define MMFREE_CENSUS_H

#include <stdint.h>

#if defined(MMFREE_CENSUS) && !defined(__SYNTHESIS__)

#include "census_types.h"

namespace mmfree {
typedef ::census::F vf;
template <class T> struct elem_of { typedef ::census::E<T> type; };
typedef ::census::Int<16> msum_t;     /* one bus word's sum: at most 80 x 127 */
typedef ::census::Int<16, 2> msum2_t;  /* the 2-bit lanes' sum of a 64-bit half */
typedef ::census::Int<16, 3> msum3_t;  /* the base-3 lanes' sum of a 64-bit half */
}  // namespace mmfree
#define MMFREE_ELEM(T) ::census::E<T>
#define MMFREE_ITER() ::census::IterGuard census_iter_(__FILE__, __LINE__)
#define MMFREE_FUNC(name) ::census::Frame census_frame_(name, __builtin_return_address(0))
#define MMFREE_ONCHIP(a) ::census::bind_array(a, #a)
#define MMFREE_OP(kind) ::census::op(kind)

#else

namespace mmfree {
typedef float vf;
typedef int16_t msum_t;
typedef int16_t msum2_t;
typedef int16_t msum3_t;
}  // namespace mmfree
#define MMFREE_ELEM(T) T
#define MMFREE_ITER() ((void)0)
#define MMFREE_FUNC(name) ((void)0)
#define MMFREE_ONCHIP(a) ((void)0)
#define MMFREE_OP(kind) ((void)0)

#endif

#endif /* MMFREE_CENSUS_H */
