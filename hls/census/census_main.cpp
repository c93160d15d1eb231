/*
 * Census run: every op of mmfree_kernel, both packings, on a small odd shape, with the counting types of
 * census_types.h; prints what it saw as one JSON object (python/mmfree/census.py reads and prices it).
 *
 *   census_main D INTER VOCAB LAYERS
 *
 * Built by `make census` with -DMMFREE_CENSUS and the generated census_spec.h (banks of each watched
 * array and the bundle of each m_axi argument, both read from the kernel's pragmas). Values do not
 * matter to the census, only which operators run and which memories they touch: the weights are
 * pseudo-random codes, the parameters plausible constants.
 */
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "census_spec.h"
#include "mmfree_kernel.h"
#include "mmfree_layout.h"

using namespace mmfree;

namespace {

template <class T>
T *aligned(std::vector<uint8_t> &raw, uint64_t bytes) {
    raw.assign(bytes + 128, 0);
    return (T *)(raw.data() + (64 - ((uintptr_t)raw.data() % 64)) % 64);
}

void fill_floats(uint8_t *p, int n, float alpha) {
    float *f = (float *)p;
    for (int i = 0; i < n; i++) f[i] = i < N_ALPHA ? alpha : 0.5f + 0.001f * (float)(i % 97);
}

void json_map(const std::map<std::string, uint64_t> &m) {
    std::printf("{");
    bool first = true;
    for (const auto &kv : m) {
        std::printf("%s\"%s\": %llu", first ? "" : ", ", kv.first.c_str(), (unsigned long long)kv.second);
        first = false;
    }
    std::printf("}");
}

void json_bundles(const std::map<std::string, census::BundleStat> &m) {
    std::printf("{");
    bool first = true;
    for (const auto &kv : m) {
        const census::BundleStat &b = kv.second;
        std::printf("%s\"%s\": {\"accesses\": %llu, \"iters_with\": %llu, \"max_per_iter\": %llu, \"noncontig\": %llu}",
                    first ? "" : ", ", kv.first.c_str(), (unsigned long long)b.accesses, (unsigned long long)b.iters_with,
                    (unsigned long long)b.max_per_iter, (unsigned long long)b.noncontig);
        first = false;
    }
    std::printf("}");
}

}  // namespace

#define CENSUS_W_(P, W) , wport_t((const word_t *)arena, CENSUS_BUNDLE_##W)

int main(int argc, char **argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: census_main D INTER VOCAB LAYERS\n");
        return 2;
    }
    const int d = std::atoi(argv[1]), inter = std::atoi(argv[2]), vocab = std::atoi(argv[3]), L = std::atoi(argv[4]);
    if (d < 1 || d > MAX_D || inter < 1 || inter > MAX_I || vocab < 1 || vocab > MAX_V || L < 1 || L > MAX_LAYERS) {
        std::fprintf(stderr, "census_main: shape outside this build's maxima\n");
        return 2;
    }
    census::Recorder::get().specs = CENSUS_ARRAY_SPECS;
    census::Recorder::get().nspecs = sizeof(CENSUS_ARRAY_SPECS) / sizeof(CENSUS_ARRAY_SPECS[0]);
    std::vector<uint8_t> r_arena, r_x, r_h, r_out, r_emb;
    uint32_t idr[8];
    for (int packing = 0; packing < 2; packing++) {
        const uint64_t ab = arena_bytes(L, d, inter, vocab, packing);
        uint8_t *arena = aligned<uint8_t>(r_arena, ab);
        uint32_t s = 12345u + (uint32_t)packing;
        for (uint64_t i = 0; i < ab; i++) {
            s = s * 1664525u + 1013904223u;
            arena[i] = (uint8_t)((s >> 24) % (packing ? 243u : 256u));
        }
        for (int l = 0; l < L; l++) {
            uint8_t *blob = arena + arena_layer_offset(l, d, inter, packing);
            fill_floats(blob + layer_params_offset(d, inter, packing), layer_params_floats(d, inter), 0.02f);
        }
        uint8_t *head = arena + arena_head_offset(L, d, inter, packing);
        fill_floats(head + head_params_offset(d, vocab, packing), head_params_floats(d), 0.02f);
        word_t *x = aligned<word_t>(r_x, vec_bytes(d));
        word_t *h = aligned<word_t>(r_h, state_bytes(L, d));
        word_t *out = aligned<word_t>(r_out, vec_bytes(vocab));
        uint16_t *emb = aligned<uint16_t>(r_emb, emb_bytes(d, vocab));
        for (uint64_t i = 0; i < (uint64_t)d * (uint64_t)vocab; i++) emb[i] = (uint16_t)(0x3c00u + (i % 251u)); /* bf16 ~ 0.0078..0.016 */
        const ioport_t px(x, CENSUS_BUNDLE_x), ph(h, CENSUS_BUNDLE_h), pout(out, CENSUS_BUNDLE_out);
        const embport_t pemb(emb, CENSUS_BUNDLE_emb);
        for (uint32_t op = MMFREE_OP_EMBED; op <= MMFREE_OP_TOKEN; op++)
            for (int t = 0; t < 2; t++)
                mmfree_kernel(op, (uint32_t)d, (uint32_t)inter, (uint32_t)vocab, (uint32_t)packing, (uint32_t)(3 + t),
                              (uint32_t)L, px, ph, pemb, pout, wport_t((const word_t *)arena, CENSUS_BUNDLE_w0)
                              MMFREE_WPORTS_AFTER0(CENSUS_W_), MMFREE_ID_ARGS(idr));
    }
    const census::Recorder &r = census::Recorder::get();
    std::printf("{\"shape\": {\"d\": %d, \"inter\": %d, \"vocab\": %d, \"layers\": %d},\n", d, inter, vocab, L);
    std::printf(" \"arrays\": [");
    for (size_t i = 0; i < r.arrays.size(); i++) {
        const census::ArrayRec &a = r.arrays[i];
        std::printf("%s\n  {\"name\": \"%s\", \"elem_bytes\": %zu, \"dims\": [%zu, %zu], \"spec\": %s, \"rom\": %s}",
                    i ? "," : "", a.name.c_str(), a.elem, a.d0, a.d1, a.has_spec ? "true" : "false",
                    a.rom ? "true" : "false");
    }
    std::printf("],\n \"loops\": [");
    bool first = true;
    for (const auto &kv : r.loops) {
        const census::LoopRec &l = kv.second;
        std::printf("%s\n  {\"site\": \"%s\", \"path\": \"%s\", \"iters\": %llu, \"activations\": %llu, \"ops\": ",
                    first ? "" : ",", l.site.c_str(), l.path.c_str(), (unsigned long long)l.iters,
                    (unsigned long long)l.activations);
        json_map(l.ops);
        std::printf(", \"bank_max\": ");
        json_map(l.bank_max);
        std::printf(", \"reads\": ");
        json_bundles(l.rd);
        std::printf(", \"writes\": ");
        json_bundles(l.wr);
        std::printf("}");
        first = false;
    }
    std::printf("],\n \"funcs\": [");
    first = true;
    for (const auto &kv : r.funcs) {
        const census::FuncRec &f = kv.second;
        std::printf("%s\n  {\"path\": \"%s\", \"calls\": %llu, \"ops\": ", first ? "" : ",", f.path.c_str(),
                    (unsigned long long)f.calls);
        json_map(f.ops);
        std::printf(", \"maxi_outside\": ");
        json_map(f.maxi_outside);
        std::printf("}");
        first = false;
    }
    std::printf("]}\n");
    return 0;
}
