/*
 * Counting types of the census build (g++ only, -DMMFREE_CENSUS; never synthesized, never in the emulator).
 *
 * The kernel source is compiled unchanged except for its annotation types (hls/include/mmfree_census.h):
 *   F        a float that records every operator it issues (fadd, fsub, fmul, fdiv, fsqrt, fcmp,
 *            sitofp, fptosi) and every read or write of an element of a watched on-chip array;
 *   E<T>     an element of a watched on-chip integer/word array (reads and writes);
 *   Int<W>   an integer sum that records its adders and their width;
 *   Maxi<T>  an m_axi argument that records each access: bundle, address, loop iteration.
 * A Recorder keeps, per pipelined-loop instance (loop site + chain of call sites) and per function
 * instance, the most operators one iteration (one call) issued, the most distinct accesses one
 * iteration made to one bank of each array, and for every bundle whether each iteration accessed it
 * exactly once at the next address. census_main.cpp writes all of it as JSON; python/mmfree/census.py
 * reads the pragmas, prices it and decides IIs and burst verdicts.
 */
#ifndef MMFREE_CENSUS_TYPES_H
#define MMFREE_CENSUS_TYPES_H

#include <stdint.h>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace census {

struct ArraySpec {           /* banks of one array: from the pragmas, via the generated census_spec.h */
    const char *name;
    const char *type;        /* "none", "cyclic", "block", "complete" */
    int factor;
    int dim;                 /* 1-based; 0 = every dimension */
    int ports;               /* ports per bank: 2 (ram_2p, ram_t2p, rom_2p), 1 (ram_1p, rom_1p) */
};

struct ArrayRec {
    std::string name;
    uintptr_t base;
    size_t elem, n, d0, d1;  /* [d0][d1] elements of elem bytes (d1 = 1 for one dimension) */
    ArraySpec spec;
    bool has_spec;
    bool rom;                /* a const array: every lookup is a port access (data-dependent index, no CSE) */
};

struct BundleStat {
    uint64_t accesses = 0, iters_with = 0, noncontig = 0, max_per_iter = 0;
    uint64_t last = 0;
    bool have_last = false;
};

struct LoopRec {
    std::string site, path;
    uint64_t iters = 0, activations = 0, last_seq = 0;
    std::map<std::string, uint64_t> ops;                 /* max per iteration */
    std::map<std::string, uint64_t> bank_max;            /* array -> most distinct accesses to one bank in one iteration */
    std::map<std::string, BundleStat> rd, wr;
};

struct FuncRec {
    std::string path;
    uint64_t calls = 0;
    std::map<std::string, uint64_t> ops;                 /* max per call, outside pipelined loops */
    std::map<std::string, uint64_t> maxi_outside;        /* bundle accesses outside any pipelined loop */
};

struct Frame;
struct IterGuard;

struct Recorder {
    std::vector<ArrayRec> arrays;
    std::map<uintptr_t, size_t> by_base;
    uintptr_t lo = ~(uintptr_t)0, hi = 0;
    const ArraySpec *specs = 0;
    size_t nspecs = 0;
    std::map<std::string, LoopRec> loops;
    std::map<std::string, FuncRec> funcs;
    std::map<std::string, std::map<const void *, int>> sites;  /* function -> return address -> call site index */
    std::vector<Frame *> frames;
    IterGuard *iter = 0;
    uint64_t seq = 0;

    static Recorder &get() {
        static Recorder r;
        return r;
    }
    std::string path() const;
    void access(const void *p, bool write);
    void op(const char *kind, uint64_t n = 1);
    void maxi(const char *bundle, uint64_t addr, bool write);
};

/* one activation of a function; ops outside pipelined loops go to it */
struct Frame {
    std::string name;
    int site;
    std::map<std::string, uint64_t> ops;
    std::map<std::string, uint64_t> maxi;
    Frame(const char *n, const void *ret) : name(n) {
        Recorder &r = Recorder::get();
        std::map<const void *, int> &s = r.sites[name];
        std::map<const void *, int>::iterator it = s.find(ret);
        if (it == s.end()) it = s.insert(std::make_pair(ret, (int)s.size())).first;
        site = it->second;
        r.frames.push_back(this);
    }
    ~Frame() {
        Recorder &r = Recorder::get();
        FuncRec &f = r.funcs[r.path()];
        f.path = r.path();
        f.calls++;
        for (auto &kv : ops)
            if (kv.second > f.ops[kv.first]) f.ops[kv.first] = kv.second;
        for (auto &kv : maxi) f.maxi_outside[kv.first] += kv.second;
        r.frames.pop_back();
    }
};

/* one iteration of a pipelined loop (MMFREE_ITER) */
struct IterGuard {
    LoopRec *loop;
    std::map<std::string, uint64_t> ops;
    std::map<std::pair<size_t, size_t>, std::set<std::pair<size_t, bool>>> banks; /* (array, bank) -> {(index, write)} */
    std::map<std::string, uint64_t> rd, wr;
    size_t rom_seq = 0;
    IterGuard(const char *file, int line) {
        Recorder &r = Recorder::get();
        const char *base = std::strrchr(file, '/');
        std::string site = std::string(base ? base + 1 : file) + ":" + std::to_string(line);
        std::string key = r.path() + "|" + site;
        loop = &r.loops[key];
        if (loop->site.empty()) {
            loop->site = site;
            loop->path = r.path();
        }
        ++r.seq;
        if (loop->last_seq + 1 != r.seq || loop->iters == 0) {
            loop->activations++;
            for (auto &kv : loop->rd) kv.second.have_last = false;
            for (auto &kv : loop->wr) kv.second.have_last = false;
        }
        loop->last_seq = r.seq;
        loop->iters++;
        r.iter = this;
    }
    ~IterGuard() {
        Recorder &r = Recorder::get();
        for (auto &kv : ops)
            if (kv.second > loop->ops[kv.first]) loop->ops[kv.first] = kv.second;
        for (auto &kv : banks) {
            const std::string &a = r.arrays[kv.first.first].name;
            if (kv.second.size() > loop->bank_max[a]) loop->bank_max[a] = kv.second.size();
        }
        for (auto &kv : rd) {
            BundleStat &b = loop->rd[kv.first];
            b.iters_with++;
            if (kv.second > b.max_per_iter) b.max_per_iter = kv.second;
        }
        for (auto &kv : wr) {
            BundleStat &b = loop->wr[kv.first];
            b.iters_with++;
            if (kv.second > b.max_per_iter) b.max_per_iter = kv.second;
        }
        r.iter = 0;
    }
};

inline std::string Recorder::path() const {
    std::string p;
    for (size_t i = 0; i < frames.size(); i++) {
        if (i) p += "/";
        p += frames[i]->name + "@" + std::to_string(frames[i]->site);
    }
    return p;
}

inline size_t bank_of(const ArrayRec &a, size_t flat) {
    if (!a.has_spec) return 0;
    const ArraySpec &s = a.spec;
    const std::string t = s.type;
    if (t == "none") return 0;
    if (t == "complete" && s.dim == 0) return flat;
    const size_t idx = s.dim == 2 ? flat % a.d1 : flat / a.d1;
    const size_t size = s.dim == 2 ? a.d1 : a.d0;
    if (t == "complete") return idx;
    if (t == "cyclic") return idx % (size_t)s.factor;
    if (t == "block") {
        const size_t per = (size + (size_t)s.factor - 1) / (size_t)s.factor;
        return idx / per;
    }
    return 0;
}

inline void Recorder::access(const void *p, bool write) {
    const uintptr_t a = (uintptr_t)p;
    if (!iter || a < lo || a >= hi) return;
    std::map<uintptr_t, size_t>::iterator it = by_base.upper_bound(a);
    if (it == by_base.begin()) return;
    --it;
    const ArrayRec &ar = arrays[it->second];
    if (a >= ar.base + ar.elem * ar.n) return;
    const size_t flat = (a - ar.base) / ar.elem;
    const size_t key = ar.rom ? flat + ar.n * (++iter->rom_seq) : flat;
    iter->banks[std::make_pair(it->second, bank_of(ar, flat))].insert(std::make_pair(key, write));
}

inline void Recorder::op(const char *kind, uint64_t n) {
    if (iter)
        iter->ops[kind] += n;
    else if (!frames.empty())
        frames.back()->ops[kind] += n;
}

inline void Recorder::maxi(const char *bundle, uint64_t addr, bool write) {
    if (!iter) {
        if (!frames.empty()) frames.back()->maxi[bundle]++;
        return;
    }
    (write ? iter->wr : iter->rd)[bundle]++;
    BundleStat &b = (write ? iter->loop->wr : iter->loop->rd)[bundle];
    b.accesses++;
    if (b.have_last && addr != b.last + 1) b.noncontig++;
    b.last = addr;
    b.have_last = true;
}

inline void op(const char *kind) { Recorder::get().op(kind); }

/* bind a watched on-chip array (MMFREE_ONCHIP) to its banks from the spec table */
template <class T>
void bind_any(const void *base, size_t elem, size_t d0, size_t d1, const char *name, bool rom) {
    Recorder &r = Recorder::get();
    const uintptr_t b = (uintptr_t)base;
    if (r.by_base.count(b)) return;
    ArrayRec a;
    a.name = name;
    a.base = b;
    a.elem = elem;
    a.d0 = d0;
    a.d1 = d1;
    a.n = d0 * d1;
    a.has_spec = false;
    a.rom = rom;
    for (size_t i = 0; i < r.nspecs; i++)
        if (a.name == r.specs[i].name) {
            a.spec = r.specs[i];
            a.has_spec = true;
        }
    r.by_base[b] = r.arrays.size();
    r.arrays.push_back(a);
    if (b < r.lo) r.lo = b;
    if (b + a.elem * a.n > r.hi) r.hi = b + a.elem * a.n;
}
template <class T, size_t N>
void bind_array(T (&a)[N], const char *name) { bind_any<T>(a, sizeof(T), N, 1, name, false); }
template <class T, size_t N>
void bind_array(const T (&a)[N], const char *name) { bind_any<T>(a, sizeof(T), N, 1, name, true); }
template <class T, size_t N, size_t M>
void bind_array(T (&a)[N][M], const char *name) { bind_any<T>(a, sizeof(T), N, M, name, false); }

/* counting float: same size and layout as float */
struct F {
    float v;
    static F raw(float x) {
        F f;
        f.v = x;
        return f;
    }
    F() : v(0.0f) {}
    F(float x) : v(x) {}
    F(double x) : v((float)x) {}
    explicit F(int x) : v((float)x) { op("sitofp"); }
    explicit F(uint32_t x) : v((float)x) { op("sitofp"); }
    explicit F(int64_t x) : v((float)x) { op("sitofp"); }
    F(const F &o) : v(o.v) { Recorder::get().access(&o, false); }
    F &operator=(const F &o) {
        Recorder::get().access(&o, false);
        v = o.v;
        Recorder::get().access(this, true);
        return *this;
    }
    explicit operator int() const {
        Recorder::get().access(this, false);
        op("fptosi");
        return (int)v;
    }
    float get() const {
        Recorder::get().access(this, false);
        return v;
    }
    F operator-() const {
        op("fneg");
        return raw(-get());
    }
};
inline F fbin(const F &a, const F &b, const char *k, float r) {
    Recorder::get().access(&a, false);
    Recorder::get().access(&b, false);
    op(k);
    return F::raw(r);
}
inline F operator+(const F &a, const F &b) { return fbin(a, b, "fadd", a.v + b.v); }
inline F operator-(const F &a, const F &b) { return fbin(a, b, "fsub", a.v - b.v); }
inline F operator*(const F &a, const F &b) { return fbin(a, b, "fmul", a.v * b.v); }
inline F operator/(const F &a, const F &b) { return fbin(a, b, "fdiv", a.v / b.v); }
inline bool fcmp(const F &a, const F &b) {
    Recorder::get().access(&a, false);
    Recorder::get().access(&b, false);
    op("fcmp");
    return true;
}
inline bool operator<(const F &a, const F &b) { return fcmp(a, b) && a.v < b.v; }
inline bool operator>(const F &a, const F &b) { return fcmp(a, b) && a.v > b.v; }
inline bool operator<=(const F &a, const F &b) { return fcmp(a, b) && a.v <= b.v; }
inline bool operator>=(const F &a, const F &b) { return fcmp(a, b) && a.v >= b.v; }
inline bool operator==(const F &a, const F &b) { return fcmp(a, b) && a.v == b.v; }
inline bool operator!=(const F &a, const F &b) { return fcmp(a, b) && a.v != b.v; }
inline F census_sqrt(const F &a) {
    Recorder::get().access(&a, false);
    op("fsqrt");
    return F::raw(std::sqrt(a.v));
}

/* counting element of an on-chip integer or bus-word array: same size and layout as T */
template <class T>
struct E {
    T v;
    E() : v() {}
    E(const T &x) : v(x) {}
    E(const E &o) : v(o.v) { Recorder::get().access(&o, false); }
    E &operator=(const E &o) {
        Recorder::get().access(&o, false);
        v = o.v;
        Recorder::get().access(this, true);
        return *this;
    }
    E &operator=(const T &x) {
        v = x;
        Recorder::get().access(this, true);
        return *this;
    }
    operator T() const {
        Recorder::get().access(this, false);
        return v;
    }
};

/* counting integer sum of W bits: each + or - is one W-bit adder */
template <int W, int TAG = 0>
struct Int {
    int64_t v;
    Int() : v(0) {}
    Int(int64_t x) : v(x) {}
    Int &operator+=(int64_t x) {
        op(adder());
        v += x;
        return *this;
    }
    Int &operator-=(int64_t x) {
        op(adder());
        v -= x;
        return *this;
    }
    operator int32_t() const { return (int32_t)v; }
    Int &operator=(int64_t x) {
        v = x;
        return *this;
    }
    static const char *adder() {
        static const std::string s = "add" + std::to_string(W) + (TAG == 2 ? ".2bit" : TAG == 3 ? ".base3" : "");
        return s.c_str();
    }
};

/* counting m_axi argument */
template <class T>
struct Maxi {
    T *p;
    const char *bundle;
    struct Ref {
        const Maxi *m;
        uint64_t i;
        operator T() const {
            Recorder::get().maxi(m->bundle, i, false);
            return m->p[i];
        }
        Ref &operator=(const T &x) {
            Recorder::get().maxi(m->bundle, i, true);
            m->p[i] = x;
            return *this;
        }
    };
    Maxi() : p(0), bundle("") {}
    Maxi(T *q, const char *b) : p(q), bundle(b) {}
    Ref operator[](uint64_t i) const {
        Ref r = {this, i};
        return r;
    }
};

}  // namespace census

#endif /* MMFREE_CENSUS_TYPES_H */
