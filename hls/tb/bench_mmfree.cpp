// C-simulation speed: one 370M-shaped layer (d 1024, I 2816), random codes, through mmfree_kernel; ns per weight.
//   make -C hls bench [BOARD=kv260] && build/csim/kv260/bench_mmfree [reps]   (min and median of reps calls)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include "mmfree_kernel.h"
#include "mmfree_layout.h"
using namespace mmfree;
#define BENCH_W_(P, W) , w /* the blob on every weight port */
int main(int argc, char **argv) {
    const int d = 1024, I = 2816, reps = argc > 1 ? atoi(argv[1]) : 20;
    for (int packing = 0; packing < 2; packing++) {
        const uint64_t bb = layer_blob_bytes(d, I, packing);
        std::vector<uint8_t> raw(bb + 64);
        uint8_t *blob = raw.data() + (64 - ((uintptr_t)raw.data() % 64)) % 64;
        uint32_t s = 12345;
        for (uint64_t i = 0; i < bb; i++) { s = s * 1664525u + 1013904223u; blob[i] = (uint8_t)((s >> 24) % (packing ? 243 : 256)); }
        float *prm = (float *)(blob + layer_params_offset(d, I, packing));
        const int nf = layer_params_floats(d, I);
        for (int i = 0; i < nf; i++) prm[i] = i < 8 ? 0.01f : 1.0f;
        std::vector<float> x(pad4(d) + 16), h(pad4(d) + 16, 0.0f);
        std::vector<double> t;
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < d; i++) { s = s * 1664525u + 1013904223u; x[i] = ((s >> 8) & 0xffff) / 32768.0f - 1.0f; }
            auto t0 = std::chrono::steady_clock::now();
            const word_t *w = (const word_t *)blob;
            uint32_t idr[8];
            mmfree_kernel(1, d, I, 32000, packing, 0, 1, (word_t *)x.data(), (word_t *)h.data(), 0, 0,
                          w MMFREE_WPORTS_AFTER0(BENCH_W_), MMFREE_ID_ARGS(idr));
            t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(t.begin(), t.end());
        const double wts = 4.0 * d * d + 2.0 * I * d + (double)d * I;
        std::printf("%s ports %d layer ms min %.2f med %.2f  ns/weight min %.2f med %.2f\n", packing ? "base3" : "2bit ", PORTS,
                    1e3 * t[0], 1e3 * t[t.size() / 2], 1e9 * t[0] / wts, 1e9 * t[t.size() / 2] / wts);
    }
    return 0;
}
