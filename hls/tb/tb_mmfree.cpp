/*
 * Testbench: mmfree_kernel against golden vectors, bit for bit, every intermediate.
 *
 *   tb_mmfree [--outputs-only] FILE.mmv [FILE.mmv ...]      returns 0 when every file passes, 1 otherwise
 *
 * --outputs-only: compare the buffers after the call (x_out, h_out, out) and the guard zones only, not
 * the intermediates. C/RTL co-simulation runs the testbench's main() on the RTL's outputs, with no C
 * trace of the kernel's body (UG1399, "C/RTL Co-Simulation"), so cosim passes this flag
 * (hls/scripts/run_vitis_hls.sh); tests/test_csim_kernel.py runs the same mode with g++.
 * Under MMFREE_COSIM every buffer is at least its m_axi argument's depth (MMFREE_DEPTH_*, from the
 * generated mmfree_cosim.h): the cosim wrapper copies `depth` elements in and out.
 *
 * Each file (written by tests/test_csim_kernel.py from GoldenModel traces) holds one kernel call:
 *   "regs"  u32 [op, d, inter, vocab, packing, token, layers]   (layers: LAYERS register, 1 if absent)
 *   inputs  "x", "h", "out" (f32), "emb" (u16), "blob" (u8: layer blob, head blob, or for OP_BODY and
 *           OP_TOKEN the weights arena, mmfree_layout.h arena_*); for BODY/TOKEN "h" is the
 *           [layers][pad4(d)] state buffer
 *   "expect/<name>"  every intermediate of golden's trace ("i.q", "i.acc", "forget", "state", ...);
 *           for BODY/TOKEN (embed, every layer, head in one call) layer-qualified as golden names them:
 *           "embed.x", "layers.<l>.i.q", "layers.<l>.state", ..., "lm_head.acc" (the tb counts the
 *           kernel's trace order: embed's "x" first, then each layer ending with its "x")
 *   "expect/x_out", "expect/h_out", "expect/out"   buffers after the call
 * Entry format (little-endian): u32 name length, name, u32 dtype (0 f32, 1 i32, 2 i8, 3 u8,
 * 4 u16, 5 u32), u64 count, count elements. The file starts with the 8 bytes "MMFVEC1\n".
 * Buffers carry a guard zone after their extent, which the kernel must leave untouched.
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mmfree_kernel.h"
#include "mmfree_layout.h"
#include "mmfree_trace.h"

using namespace mmfree;

namespace {

const int ELEM[] = {4, 4, 1, 1, 2, 4};
const size_t GUARD = 64;

struct Entry {
    int dtype;
    uint64_t count;
    std::vector<uint8_t> data;
    std::vector<uint8_t> seen;
};

struct Vectors {
    std::map<std::string, Entry> e;
    bool has(const std::string &n) const { return e.count(n) != 0; }
};

bool load(const char *path, Vectors &v) {
    FILE *f = std::fopen(path, "rb");
    if (!f) {
        std::printf("ERROR: cannot open %s\n", path);
        return false;
    }
    char magic[8];
    bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, "MMFVEC1\n", 8) == 0;
    while (ok) {
        uint32_t len;
        if (std::fread(&len, 4, 1, f) != 1) break;
        std::string name(len, '\0');
        Entry en;
        uint32_t dt;
        ok = std::fread(&name[0], 1, len, f) == len && std::fread(&dt, 4, 1, f) == 1 &&
             std::fread(&en.count, 8, 1, f) == 1 && dt < 6;
        if (!ok) break;
        en.dtype = (int)dt;
        en.data.resize(en.count * ELEM[dt]);
        ok = en.data.empty() || std::fread(&en.data[0], 1, en.data.size(), f) == en.data.size();
        en.seen.assign(en.count, 0);
        v.e[name] = en;
    }
    std::fclose(f);
    if (!ok) std::printf("ERROR: %s is not a valid vector file\n", path);
    return ok;
}

struct Checker {
    Vectors *v;
    long mismatches;
    long compared;
    std::vector<std::string> unexpected;
    bool whole;  /* OP_BODY / OP_TOKEN: qualify layer-level keys with the call's phase */
    int phase;   /* -1: embed; l: layer l (advanced after each "x" of the embed or of a layer) */
};

void report(const std::string &name, int dtype, uint64_t i, const uint8_t *got, const uint8_t *want) {
    if (dtype == MMFREE_T_F32) {
        float g, w;
        std::memcpy(&g, got, 4);
        std::memcpy(&w, want, 4);
        std::printf("ERROR: %s[%llu] = %.9g (0x%08x), expected %.9g (0x%08x)\n", name.c_str(), (unsigned long long)i,
                    g, *(const uint32_t *)got, w, *(const uint32_t *)want);
    } else if (dtype == MMFREE_T_I32) {
        std::printf("ERROR: %s[%llu] = %d, expected %d\n", name.c_str(), (unsigned long long)i, *(const int32_t *)got,
                    *(const int32_t *)want);
    } else {
        std::printf("ERROR: %s[%llu] = %d, expected %d\n", name.c_str(), (unsigned long long)i, (int)*(const int8_t *)got,
                    (int)*(const int8_t *)want);
    }
}

void on_trace(const char *prefix, const char *name, int dtype, const void *data, uint64_t offset, uint64_t count,
              void *ctx) {
    Checker *c = (Checker *)ctx;
    std::string key = std::string(prefix).empty() ? std::string(name) : std::string(prefix) + "." + name;
    if (c->whole && std::string(prefix) != "lm_head") {
        char q[32];
        if (c->phase < 0)
            std::snprintf(q, sizeof q, "embed.");
        else
            std::snprintf(q, sizeof q, "layers.%d.", c->phase);
        key = q + key;
        if (std::string(prefix).empty() && std::string(name) == "x") c->phase++;
    }
    std::map<std::string, Entry>::iterator it = c->v->e.find("expect/" + key);
    if (it == c->v->e.end()) {
        c->unexpected.push_back(key);
        return;
    }
    Entry &en = it->second;
    const int es = ELEM[dtype];
    if (en.dtype != dtype || offset + count > en.count) {
        std::printf("ERROR: %s: trace dtype %d [%llu, %llu) does not fit expected dtype %d count %llu\n", key.c_str(),
                    dtype, (unsigned long long)offset, (unsigned long long)(offset + count), en.dtype,
                    (unsigned long long)en.count);
        c->mismatches++;
        return;
    }
    const uint8_t *got = (const uint8_t *)data;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *want = &en.data[(offset + i) * es];
        en.seen[offset + i] = 1;
        c->compared++;
        if (std::memcmp(got + i * es, want, es) != 0) {
            if (c->mismatches < 8) report(key, dtype, offset + i, got + i * es, want);
            c->mismatches++;
        }
    }
}

/* a buffer with a guard zone after `bytes`, 64-byte aligned */
struct Buf {
    std::vector<uint8_t> raw;
    uint8_t *p;
    size_t bytes;
    void init(size_t n, const Entry *src) {
        bytes = n;
        raw.assign(n + GUARD + 64, 0xa5);
        p = raw.data() + (64 - ((uintptr_t)raw.data() % 64)) % 64;
        std::memset(p, 0, n);
        if (src) std::memcpy(p, src->data.data(), src->data.size() < n ? src->data.size() : n);
    }
    bool guard_ok() const {
        for (size_t i = 0; i < GUARD; i++)
            if (p[bytes + i] != 0xa5) return false;
        return true;
    }
};

/* elements of each m_axi argument the cosim wrapper transfers (0 outside co-simulation) */
#ifdef MMFREE_COSIM
const uint64_t DEPTH_X = MMFREE_DEPTH_X, DEPTH_H = MMFREE_DEPTH_H, DEPTH_OUT = MMFREE_DEPTH_OUT;
const uint64_t DEPTH_EMB = MMFREE_DEPTH_EMB, DEPTH_W = MMFREE_DEPTH_W;
#else
const uint64_t DEPTH_X = 0, DEPTH_H = 0, DEPTH_OUT = 0, DEPTH_EMB = 0, DEPTH_W = 0;
#endif

size_t at_least(size_t bytes, uint64_t depth, size_t elem) { return bytes > depth * elem ? bytes : depth * elem; }

bool outputs_only = false;

long compare_buf(const char *name, const Buf &b, const Entry *want) {
    if (!want) return 0;
    long bad = 0;
    for (uint64_t i = 0; i < want->count; i++) {
        if (std::memcmp(b.p + 4 * i, &want->data[4 * i], 4) != 0) {
            if (bad < 8) report(name, MMFREE_T_F32, i, b.p + 4 * i, &want->data[4 * i]);
            bad++;
        }
    }
    return bad;
}

#define TB_W_(P, W) , w /* every weight port gets the blob's address, as the driver writes it */

int run_file(const char *path) {
    Vectors v;
    if (!load(path, v)) return 1;
    if (!v.has("regs") || v.e["regs"].count < 6) {
        std::printf("ERROR: %s has no regs\n", path);
        return 1;
    }
    const uint32_t *r = (const uint32_t *)v.e["regs"].data.data();
    const uint32_t op = r[0], d = r[1], inter = r[2], vocab = r[3], packing = r[4], token = r[5];
    const uint32_t layers = v.e["regs"].count >= 7 ? r[6] : 1;
    const bool whole = op == MMFREE_OP_BODY || op == MMFREE_OP_TOKEN;
    if (whole && (layers < 1 || layers > (uint32_t)MAX_LAYERS)) {
        std::printf("ERROR: %s: layers %u outside 1..%d\n", path, layers, MAX_LAYERS);
        return 1;
    }
    Buf x, h, emb, out, blob;
    x.init(at_least(vec_bytes((int)d), DEPTH_X, PORT_BYTES), v.has("x") ? &v.e["x"] : 0);
    h.init(at_least(whole ? state_bytes((int)layers, (int)d) : vec_bytes((int)d), DEPTH_H, PORT_BYTES),
           v.has("h") ? &v.e["h"] : 0);
    out.init(at_least(vec_bytes((int)vocab), DEPTH_OUT, PORT_BYTES), v.has("out") ? &v.e["out"] : 0);
    emb.init(at_least(v.has("emb") ? v.e["emb"].data.size() : 0, DEPTH_EMB, 2), v.has("emb") ? &v.e["emb"] : 0);
    const uint64_t bb =
        whole ? arena_bytes((int)layers, (int)d, (int)inter, (int)vocab, (int)packing)
              : (op == MMFREE_OP_LAYER ? layer_blob_bytes((int)d, (int)inter, (int)packing)
                                       : (op == MMFREE_OP_HEAD ? head_blob_bytes((int)d, (int)vocab, (int)packing) : 0));
    if (op != MMFREE_OP_EMBED && (!v.has("blob") || v.e["blob"].data.size() != bb)) {
        std::printf("ERROR: %s: blob has %llu bytes, layout says %llu\n", path,
                    (unsigned long long)(v.has("blob") ? v.e["blob"].data.size() : 0), (unsigned long long)bb);
        return 1;
    }
    blob.init(at_least(bb, DEPTH_W, PORT_BYTES), v.has("blob") ? &v.e["blob"] : 0);

    Checker c = {&v, 0, 0, std::vector<std::string>(), whole, -1};
    ::mmfree::csim_state().trace = outputs_only ? 0 : on_trace;
    ::mmfree::csim_state().ctx = &c;
    const word_t *w = (const word_t *)blob.p;
    uint32_t idr[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    mmfree_kernel(op, d, inter, vocab, packing, token, layers, (word_t *)x.p, (word_t *)h.p, (const uint16_t *)emb.p,
                  (word_t *)out.p, w MMFREE_WPORTS_AFTER0(TB_W_), MMFREE_ID_ARGS(idr));
    if (idr[0] != MMFREE_ID_MAGIC || idr[1] != MMFREE_REGS_VERSION) {
        std::printf("ERROR: %s: identity block magic 0x%08x version %u, expected 0x%08x version %d\n", path, idr[0],
                    idr[1], MMFREE_ID_MAGIC, MMFREE_REGS_VERSION);
        return 1;
    }
    ::mmfree::csim_state().trace = 0;

    long bad = c.mismatches;
    for (size_t i = 0; i < c.unexpected.size(); i++) {
        std::printf("ERROR: %s: the kernel traced %s, which the golden vectors do not hold\n", path,
                    c.unexpected[i].c_str());
        bad++;
    }
    for (std::map<std::string, Entry>::iterator it = v.e.begin(); it != v.e.end() && !outputs_only; ++it) {
        if (it->first.compare(0, 7, "expect/") != 0 || it->first.find("_out") != std::string::npos ||
            it->first == "expect/out")
            continue;
        uint64_t miss = 0;
        for (uint64_t i = 0; i < it->second.count; i++) miss += it->second.seen[i] ? 0 : 1;
        if (miss) {
            std::printf("ERROR: %s: %llu of %llu elements of %s never produced\n", path, (unsigned long long)miss,
                        (unsigned long long)it->second.count, it->first.c_str());
            bad++;
        }
    }
    bad += compare_buf("x_out", x, v.has("expect/x_out") ? &v.e["expect/x_out"] : 0);
    bad += compare_buf("h_out", h, v.has("expect/h_out") ? &v.e["expect/h_out"] : 0);
    bad += compare_buf("out", out, v.has("expect/out") ? &v.e["expect/out"] : 0);
    c.compared += (v.has("expect/x_out") ? (long)v.e["expect/x_out"].count : 0) +
                  (v.has("expect/h_out") ? (long)v.e["expect/h_out"].count : 0) +
                  (v.has("expect/out") ? (long)v.e["expect/out"].count : 0);
    const char *names[] = {"x", "h", "emb", "out", "blob"};
    const Buf *bufs[] = {&x, &h, &emb, &out, &blob};
    for (int i = 0; i < 5; i++) {
        if (!bufs[i]->guard_ok()) {
            std::printf("ERROR: %s: the kernel wrote past the end of %s\n", path, names[i]);
            bad++;
        }
    }
    std::printf("%s %s: op %u d %u I %u V %u packing %u L %u, %ld values compared\n", bad ? "FAIL" : "PASS", path, op,
                d, inter, vocab, packing, whole ? layers : 1u, c.compared);
    return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
    int first = 1;
    if (argc > 1 && std::strcmp(argv[1], "--outputs-only") == 0) {
        outputs_only = true;
        first = 2;
    }
    if (argc <= first) {
        std::printf("usage: %s [--outputs-only] FILE.mmv [FILE.mmv ...]\n", argv[0]);
        return 1;
    }
    int failed = 0;
    for (int i = first; i < argc; i++) failed += run_file(argv[i]);
    std::printf("%d passed, %d failed (board %s, %d weight ports x %d bits%s)\n", argc - first - failed, failed,
                MMFREE_BOARD_NAME, PORTS, PORT_BITS, outputs_only ? ", outputs only" : "");
    return failed ? 1 : 0;
}
