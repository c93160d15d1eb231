/*
 * C-simulation stand-ins for hls::stream and ap_axiu (ap_axi_sdata.h), written for this project.
 * C-simulation only: never on the Vitis HLS include path (the real headers come with the tool).
 * Bounded, and loud: reading an empty stream or writing a full one is an error, so a testbench
 * sees under-reads and depth overflows that the vendor's unbounded C-sim model would hide.
 */
#ifndef MMFREE_CSIM_STREAM_H
#define MMFREE_CSIM_STREAM_H

#ifdef __SYNTHESIS__
#error "mmfree_csim_stream.h is a C-simulation stand-in; use the tool's hls_stream.h and ap_axi_sdata.h"
#endif

#include <cstdio>
#include <cstdlib>
#include <deque>
#include "ap_int.h"

namespace hls {

template <typename T>
class stream {
  public:
    explicit stream(const char *name = "stream", size_t depth = 1u << 20) : name_(name), depth_(depth) {}
    bool empty() const { return q_.empty(); }
    bool full() const { return q_.size() >= depth_; }
    size_t size() const { return q_.size(); }
    void write(const T &v) {
        if (full()) fail("write to a full stream");
        q_.push_back(v);
    }
    T read() {
        if (q_.empty()) fail("read from an empty stream");
        T v = q_.front();
        q_.pop_front();
        return v;
    }
    bool read_nb(T &v) {
        if (q_.empty()) return false;
        v = read();
        return true;
    }
    bool write_nb(const T &v) {
        if (full()) return false;
        write(v);
        return true;
    }
    void operator<<(const T &v) { write(v); }
    void operator>>(T &v) { v = read(); }

  private:
    void fail(const char *what) const {
        std::fprintf(stderr, "hls::stream %s: %s\n", name_, what);
        std::abort();
    }
    const char *name_;
    size_t depth_;
    std::deque<T> q_;
};

}  // namespace hls

/* AXI4-Stream beat with side channels, as the tool's ap_axi_sdata.h defines ap_axiu */
template <int D, int U, int TI, int TD>
struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<(U > 0 ? U : 1)> user;
    ap_uint<1> last;
    ap_uint<(TI > 0 ? TI : 1)> id;
    ap_uint<(TD > 0 ? TD : 1)> dest;
};

#endif /* MMFREE_CSIM_STREAM_H */
