// Activation statistics kernel: one tensor's values -> min/max/absmax/counts and an exact |x| histogram.
//
// Two passes over the data:
//   1. min, max, zero and non-finite counts (SSE2, or AVX2 where the CPU has it). absMax = max(-min, max) over
//      finite values.
//   2. binning: idx = floor(|x| * bins / range). bins / range is a power of two, so the product is exact in
//      float32 (or float64 when the scale is not a normal float32) and the index is the exact floor.
// With AVX2, once the range of a tensor's accumulator covers the data, a block is scanned and indexed in one pass
// at that range (ScanIndicesAvx2), and takes the two passes only when it is not finite or reaches past the range.
// Counts go to 2 interleaved uint32 sub-histograms so that runs of equal values (the zeros of a ReLU) do not
// serialise on one counter; they are summed into the float64 state at the end. Integer sums commute, so the
// result is bit-identical whatever the split of the data into calls.
#include "stats/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define TRTCALIB_SSE2 1
#endif
// AVX2 versions of the two vector loops, chosen at run time (GCC and Clang on x86-64; the build targets plain
// x86-64). The same IEEE operations on twice as many values per instruction: the results are bit-identical.
#if defined(TRTCALIB_SSE2) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TRTCALIB_AVX2 1
#define TRTCALIB_TARGET_AVX2 __attribute__((target("avx2")))
#endif

namespace trtcalib {

namespace {

// Two lanes: enough to keep runs of one value from serialising on a counter, and half the cache footprint of
// four (measured on MobileNetV2's activations: 4% faster than four, 8% faster than one).
constexpr uint32_t kLanes = 2;
constexpr uint32_t kLanePad = 16;  // keeps the lanes off the same cache sets
constexpr size_t kBlock = 2048;    // values per index block (8 KiB of indices, stays in L1)
constexpr size_t kScanBlock = 16384;  // values scanned then binned together (64 KiB: still in L2 when binned)
// A lane counts at most kChunk / kLanes values per flush, far below 2^32.
constexpr size_t kChunk = size_t(1) << 30;

#ifdef TRTCALIB_AVX2
// TRT_CALIB_SIMD=sse2 keeps the SSE2 loops (to compare the two; they give the same bytes).
bool DetectAvx2() {
  const char* force = std::getenv("TRT_CALIB_SIMD");
  if (force && std::strcmp(force, "sse2") == 0) return false;
  return __builtin_cpu_supports("avx2");
}
const bool kUseAvx2 = DetectAvx2();
#endif

struct Summary {
  uint64_t finite = 0;
  uint64_t nan = 0;
  uint64_t posInf = 0;
  uint64_t negInf = 0;
  uint64_t zeros = 0;
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
};

inline uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

#ifdef TRTCALIB_AVX2
// ScanFast's vector loop, 16 values a step; returns how many values it took (a multiple of 16).
TRTCALIB_TARGET_AVX2 size_t ScanFastAvx2(const float* d, size_t n, float& lmn, float& lmx, uint64_t& z, uint64_t& nf) {
  size_t i = 0;
  const __m256i absMask = _mm256_set1_epi32(0x7fffffff);
  const __m256i maxFinite = _mm256_set1_epi32(0x7f7fffff);
  const __m256 zero = _mm256_setzero_ps();
  __m256 vmn0 = _mm256_set1_ps(lmn), vmn1 = vmn0, vmx0 = _mm256_set1_ps(lmx), vmx1 = vmx0;
  while (n - i >= 16) {
    const size_t steps = std::min<size_t>((n - i) / 16, size_t(1) << 28);
    __m256i vz = _mm256_setzero_si256(), vnf = _mm256_setzero_si256();
    for (size_t s = 0; s < steps; ++s, i += 16) {
      const __m256 a = _mm256_loadu_ps(d + i);
      const __m256 b = _mm256_loadu_ps(d + i + 8);
      // minps(x, m) returns m when x is NaN, as in the SSE2 loop.
      vmn0 = _mm256_min_ps(a, vmn0);
      vmn1 = _mm256_min_ps(b, vmn1);
      vmx0 = _mm256_max_ps(a, vmx0);
      vmx1 = _mm256_max_ps(b, vmx1);
      vz = _mm256_sub_epi32(vz, _mm256_castps_si256(_mm256_cmp_ps(a, zero, _CMP_EQ_OQ)));
      vz = _mm256_sub_epi32(vz, _mm256_castps_si256(_mm256_cmp_ps(b, zero, _CMP_EQ_OQ)));
      vnf = _mm256_sub_epi32(vnf, _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(a), absMask), maxFinite));
      vnf = _mm256_sub_epi32(vnf, _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(b), absMask), maxFinite));
    }
    alignas(32) int32_t cz[8], cnf[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(cz), vz);
    _mm256_store_si256(reinterpret_cast<__m256i*>(cnf), vnf);
    for (int k = 0; k < 8; ++k) {
      z += uint32_t(cz[k]);
      nf += uint32_t(cnf[k]);
    }
  }
  alignas(32) float fmn[16], fmx[16];
  _mm256_store_ps(fmn, vmn0);
  _mm256_store_ps(fmn + 8, vmn1);
  _mm256_store_ps(fmx, vmx0);
  _mm256_store_ps(fmx + 8, vmx1);
  for (int k = 0; k < 16; ++k) {
    lmn = fmn[k] < lmn ? fmn[k] : lmn;
    lmx = fmx[k] > lmx ? fmx[k] : lmx;
  }
  return i;
}
#endif

// Pass 1 without branches. Infinities do enter min/max here; the caller rescans with ScanCareful when
// `nonFinite` is not 0 (rare), so the fast path never pays for the checks.
void ScanFast(const float* d, size_t n, float& mn, float& mx, uint64_t& zeros, uint64_t& nonFinite) {
  size_t i = 0;
  float lmn = mn, lmx = mx;
  uint64_t z = 0, nf = 0;
#ifdef TRTCALIB_AVX2
  if (kUseAvx2) i = ScanFastAvx2(d, n, lmn, lmx, z, nf);
#endif
#ifdef TRTCALIB_SSE2
  if (i == 0) {
    const __m128i absMask = _mm_set1_epi32(0x7fffffff);
    const __m128i maxFinite = _mm_set1_epi32(0x7f7fffff);
    const __m128 zero = _mm_setzero_ps();
    __m128 vmn0 = _mm_set1_ps(lmn), vmn1 = vmn0, vmx0 = _mm_set1_ps(lmx), vmx1 = vmx0;
    while (n - i >= 8) {
      // int32 lane counters: flush before they could overflow.
      const size_t steps = std::min<size_t>((n - i) / 8, size_t(1) << 28);
      __m128i vz = _mm_setzero_si128(), vnf = _mm_setzero_si128();
      for (size_t s = 0; s < steps; ++s, i += 8) {
        const __m128 a = _mm_loadu_ps(d + i);
        const __m128 b = _mm_loadu_ps(d + i + 4);
        // minps(x, m) returns m when x is NaN: NaN never enters the running min/max.
        vmn0 = _mm_min_ps(a, vmn0);
        vmn1 = _mm_min_ps(b, vmn1);
        vmx0 = _mm_max_ps(a, vmx0);
        vmx1 = _mm_max_ps(b, vmx1);
        vz = _mm_sub_epi32(vz, _mm_castps_si128(_mm_cmpeq_ps(a, zero)));
        vz = _mm_sub_epi32(vz, _mm_castps_si128(_mm_cmpeq_ps(b, zero)));
        vnf = _mm_sub_epi32(vnf, _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(a), absMask), maxFinite));
        vnf = _mm_sub_epi32(vnf, _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(b), absMask), maxFinite));
      }
      alignas(16) int32_t cz[4], cnf[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(cz), vz);
      _mm_store_si128(reinterpret_cast<__m128i*>(cnf), vnf);
      for (int k = 0; k < 4; ++k) {
        z += uint32_t(cz[k]);
        nf += uint32_t(cnf[k]);
      }
    }
    alignas(16) float fmn[8], fmx[8];
    _mm_store_ps(fmn, vmn0);
    _mm_store_ps(fmn + 4, vmn1);
    _mm_store_ps(fmx, vmx0);
    _mm_store_ps(fmx + 4, vmx1);
    for (int k = 0; k < 8; ++k) {
      lmn = fmn[k] < lmn ? fmn[k] : lmn;
      lmx = fmx[k] > lmx ? fmx[k] : lmx;
    }
  }
#endif
  for (; i < n; ++i) {
    const float x = d[i];
    lmn = x < lmn ? x : lmn;  // false for NaN: NaN is skipped
    lmx = x > lmx ? x : lmx;
    const uint32_t a = Bits(x) & 0x7fffffffu;
    z += (a == 0);
    nf += (a >= 0x7f800000u);
  }
  mn = lmn;
  mx = lmx;
  zeros += z;
  nonFinite += nf;
}

// Pass 1 with explicit classification of NaN / +Inf / -Inf; min and max over finite values only.
void ScanCareful(const float* d, size_t n, Summary& s) {
  for (size_t i = 0; i < n; ++i) {
    const float x = d[i];
    const uint32_t u = Bits(x);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
      if (a > 0x7f800000u) {
        ++s.nan;
      } else if (u >> 31) {
        ++s.negInf;
      } else {
        ++s.posInf;
      }
      continue;
    }
    ++s.finite;
    s.zeros += (a == 0);
    s.min = x < s.min ? x : s.min;
    s.max = x > s.max ? x : s.max;
  }
}

void Scan(const float* d, size_t n, Summary& s) {
  float mn = s.min, mx = s.max;
  uint64_t zeros = 0, nonFinite = 0;
  ScanFast(d, n, mn, mx, zeros, nonFinite);
  if (nonFinite == 0) {
    s.finite += n;
    s.zeros += zeros;
    s.min = mn;
    s.max = mx;
  } else {
    ScanCareful(d, n, s);
  }
}

// Adds precomputed bin indices to two interleaved lanes (h0, h1), alternating so that runs of one value do not
// serialise on one counter.
inline void IncrementLanes(const int32_t* idx, size_t n, uint32_t* h0, uint32_t* h1) {
  size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    h0[idx[k]]++;
    h1[idx[k + 1]]++;
    h0[idx[k + 2]]++;
    h1[idx[k + 3]]++;
  }
  for (; k < n; ++k) h0[idx[k]]++;
}

#ifdef TRTCALIB_AVX2
// One pass over a block that both scans it (ScanFast's min, max, zeros and non-finite count) and computes its bin
// indices at a range already known (idx[k] = int32(|p[k]| * sf), the scalar loop's float32 multiply and
// truncation). The indices are valid only if the block turns out finite and below that range (the caller checks).
TRTCALIB_TARGET_AVX2 void ScanIndicesAvx2(const float* p, size_t m, float sf, int32_t* idx, float& mn, float& mx, uint64_t& zeros, uint64_t& nonFinite) {
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i maxFinite = _mm256_set1_epi32(0x7f7fffff);
  const __m256 s = _mm256_set1_ps(sf), zero = _mm256_setzero_ps();
  __m256 vmn = _mm256_set1_ps(mn), vmx = _mm256_set1_ps(mx);
  __m256i vz = _mm256_setzero_si256(), vnf = _mm256_setzero_si256();  // at most kBlock / 8 per lane
  size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    const __m256 x = _mm256_loadu_ps(p + k);
    vmn = _mm256_min_ps(x, vmn);
    vmx = _mm256_max_ps(x, vmx);
    vz = _mm256_sub_epi32(vz, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ)));
    const __m256 a = _mm256_and_ps(x, absMask);
    vnf = _mm256_sub_epi32(vnf, _mm256_cmpgt_epi32(_mm256_castps_si256(a), maxFinite));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + k), _mm256_cvttps_epi32(_mm256_mul_ps(a, s)));
  }
  alignas(32) float fmn[8], fmx[8];
  alignas(32) int32_t cz[8], cnf[8];
  _mm256_store_ps(fmn, vmn);
  _mm256_store_ps(fmx, vmx);
  _mm256_store_si256(reinterpret_cast<__m256i*>(cz), vz);
  _mm256_store_si256(reinterpret_cast<__m256i*>(cnf), vnf);
  float lmn = mn, lmx = mx;
  uint64_t z = 0, nf = 0;
  for (int j = 0; j < 8; ++j) {
    lmn = fmn[j] < lmn ? fmn[j] : lmn;
    lmx = fmx[j] > lmx ? fmx[j] : lmx;
    z += uint32_t(cz[j]);
    nf += uint32_t(cnf[j]);
  }
  for (; k < m; ++k) {
    const float x = p[k];
    lmn = x < lmn ? x : lmn;
    lmx = x > lmx ? x : lmx;
    const uint32_t b = Bits(x) & 0x7fffffffu;
    z += (b == 0);
    nf += (b >= 0x7f800000u);
    idx[k] = int32_t(std::fabs(x) * sf);
  }
  mn = lmn;
  mx = lmx;
  zeros += z;
  nonFinite += nf;
}
#endif

// Bins values whose range is known. kCheck: skip non-finite values (only when the data has some).
// kFloat: the scale is a normal float32 and the product is computed in float32 (exact, vectorises);
// otherwise in float64 (also exact).
template <bool kCheck, bool kFloat>
void BinLanes(const float* d, size_t n, uint32_t* lanes, uint32_t stride, double scale) {
  uint32_t* h0 = lanes;
  uint32_t* h1 = lanes + stride;
  if (kCheck) {
    uint32_t* hs[kLanes] = {h0, h1};
    uint32_t lane = 0;
    for (size_t i = 0; i < n; ++i) {
      const float x = d[i];
      if ((Bits(x) & 0x7fffffffu) >= 0x7f800000u) continue;
      const uint32_t idx = kFloat ? uint32_t(std::fabs(x) * float(scale)) : uint32_t(double(std::fabs(x)) * scale);
      hs[lane][idx]++;
      lane = (lane + 1) & (kLanes - 1);
    }
    return;
  }
  int32_t idx[kBlock];
  const float sf = float(scale);
  for (size_t base = 0; base < n; base += kBlock) {
    const size_t m = std::min(kBlock, n - base);
    const float* p = d + base;
    if (kFloat) {
      for (size_t k = 0; k < m; ++k) idx[k] = int32_t(std::fabs(p[k]) * sf);
    } else {
      for (size_t k = 0; k < m; ++k) idx[k] = int32_t(double(std::fabs(p[k])) * scale);
    }
    IncrementLanes(idx, m, h0, h1);
  }
}

// Direct binning into the float64 state, for small inputs where clearing and folding the lanes would cost more.
void BinDirect(const float* d, size_t n, double* hist, double scale, bool check) {
  for (size_t i = 0; i < n; ++i) {
    const float x = d[i];
    if (check && (Bits(x) & 0x7fffffffu) >= 0x7f800000u) continue;
    hist[size_t(double(std::fabs(x)) * scale)] += 1.0;
  }
}

// Re-bins `bins` counts for a range `factor` (a power of two >= 2) times wider: bin j takes bins j*f .. j*f+f-1
// (all into bin 0 when factor >= bins). Acc: the type the sums are made in (uint64 for uint32 lanes, whose sums
// are at most the lane's own count; double for the float64 state).
template <typename T, typename Acc>
void MergeBins(T* h, uint32_t bins, double factor) {
  if (factor >= double(bins)) {
    Acc total = 0;
    for (uint32_t b = 0; b < bins; ++b) total += h[b];
    std::fill(h, h + bins, T(0));
    h[0] = T(total);
    return;
  }
  const uint32_t f = uint32_t(factor);
  for (uint32_t j = 0; j < bins / f; ++j) {
    Acc sum = 0;
    for (uint32_t k = 0; k < f; ++k) sum += h[size_t(j) * f + k];
    h[j] = T(sum);
  }
  std::fill(h + bins / f, h + bins, T(0));
}

void GrowCounts(uint32_t* h, uint32_t bins, double factor) { MergeBins<uint32_t, uint64_t>(h, bins, factor); }

// hist[b >> shift] += l0[b] + l1[b] for b < n: two lanes' counts added to a float64 histogram whose bins are
// 2^shift of the lanes' wide (shift >= 31: all into bin 0). Adding 0.0 changes no count, so the common case
// (same width) runs without a branch and vectorises; wider bins sum their lane bins as integers first. Every sum
// is an exact integer (below 2^53), so the result is the one of adding each count on its own.
void AddLanePair(const uint32_t* l0, const uint32_t* l1, uint32_t n, double* hist, uint32_t shift) {
  if (shift == 0) {
    for (uint32_t b = 0; b < n; ++b) hist[b] += double(uint64_t(l0[b]) + l1[b]);
  } else if (shift >= 31) {
    uint64_t c = 0;
    for (uint32_t b = 0; b < n; ++b) c += uint64_t(l0[b]) + l1[b];
    if (c) hist[0] += double(c);
  } else {
    // 2^shift lane bins per histogram bin: summed as integers, added once.
    const uint32_t f = 1u << shift;
    for (uint32_t j = 0, start = 0; start < n; ++j, start += f) {
      const uint32_t end = std::min(n, start + f);
      uint64_t c = 0;
      for (uint32_t b = start; b < end; ++b) c += uint64_t(l0[b]) + l1[b];
      if (c) hist[j] += double(c);
    }
  }
}

// log2 of a bin-width factor (a power of two >= 1), 31 for "everything into bin 0" (factor >= bins).
uint32_t FactorShift(double factor, uint32_t bins) {
  if (factor >= double(bins)) return 31;
  uint32_t f = uint32_t(factor), shift = 0;
  while (f > 1) {
    f >>= 1;
    ++shift;
  }
  return shift;
}

static_assert(kLanes == 2, "AddLanePair adds two lanes");

class Lanes {
 public:
  explicit Lanes(uint32_t bins) : bins_(bins), stride_(bins + kLanePad), data_(size_t(kLanes) * stride_, 0u) {}
  uint32_t* data() { return data_.data(); }
  uint32_t stride() const { return stride_; }
  // Re-bins every lane for a range `factor` (a power of two) times wider: bin j takes bins j*f .. j*f+f-1.
  void Grow(double factor) {
    for (uint32_t l = 0; l < kLanes; ++l) GrowCounts(data_.data() + size_t(l) * stride_, bins_, factor);
  }
  // Adds the lane sums to hist, whose range is `factor` (a power of two >= 1) times the lanes' range; clears.
  void FlushInto(double* hist, double factor = 1) {
    uint32_t* h = data_.data();
    AddLanePair(h, h + stride_, bins_, hist, FactorShift(factor, bins_));
    std::fill(data_.begin(), data_.end(), 0u);
  }

 private:
  uint32_t bins_;
  uint32_t stride_;
  std::vector<uint32_t> data_;
};

bool IsNormalFloatScale(double scale) {
  return scale >= double(std::numeric_limits<float>::min()) && scale <= double(std::numeric_limits<float>::max());
}

// Counts, min and max of a summary into the header; returns the batch's absMax (0 when it has no non-zero value).
double ApplyCounts(double* header, const Summary& s) {
  header[kCount] += double(s.finite);
  header[kNanCount] += double(s.nan);
  header[kPosInfCount] += double(s.posInf);
  header[kNegInfCount] += double(s.negInf);
  header[kZeroCount] += double(s.zeros);
  if (s.finite == 0) return 0;
  // Zeros are reported as +0 whatever their sign, so that min/max do not depend on the order of -0 and +0.
  const double mn = s.min == 0 ? 0.0 : double(s.min);
  const double mx = s.max == 0 ? 0.0 : double(s.max);
  if (mn < header[kMin]) header[kMin] = mn;
  if (mx > header[kMax]) header[kMax] = mx;
  const double batchAbsMax = std::max(-mn, mx);
  if (batchAbsMax > header[kAbsMax]) header[kAbsMax] = batchAbsMax;
  return batchAbsMax;
}

void Merge(Summary& into, const Summary& b) {
  into.finite += b.finite;
  into.nan += b.nan;
  into.posInf += b.posInf;
  into.negInf += b.negInf;
  into.zeros += b.zeros;
  if (b.min < into.min) into.min = b.min;
  if (b.max > into.max) into.max = b.max;
}

bool UseLanes(size_t n, uint32_t bins) { return n >= size_t(bins) * 2; }

// Small inputs: scan everything, widen the state, bin straight into the float64 histogram.
void AccumulateSmall(double* header, double* hist, uint32_t bins, const float* d, size_t n) {
  Summary s;
  Scan(d, n, s);
  const double batchAbsMax = ApplyCounts(header, s);
  if (s.finite == 0) return;
  if (batchAbsMax == 0) {
    hist[0] += double(s.finite);  // all zeros: bin 0 under any range
    return;
  }
  const double range = RangeFor(header[kAbsMax]);
  if (range > header[kRange]) GrowRange(header, hist, bins, range);
  BinDirect(d, n, hist, double(bins) / header[kRange], s.finite != n);
}

// Large inputs, one block at a time (each block is scanned and then binned while it is still in cache, so the
// data is read from memory once). The lanes bin at a local range that starts at the state's and doubles as
// blocks need; at the end the state is widened to cover both and the lanes are folded in.
class BlockAccumulator {
 public:
  BlockAccumulator(double* header, double* hist, uint32_t bins)
      : header_(header), hist_(hist), bins_(bins), range_(header[kRange]), lanes_(bins) {}

  void Add(const float* d, size_t m) {
#ifdef TRTCALIB_AVX2
    // Once the range covers the data (from the second image on, as a rule), each block is read once.
    const size_t fused = kUseAvx2 ? AddFused(d, m) : 0;
    if (fused == m) return;
    d += fused;
    m -= fused;
#endif
    Summary b;
    Scan(d, m, b);
    Merge(total_, b);
    if (b.finite == 0) return;
    const double mn = b.min == 0 ? 0.0 : double(b.min);
    const double absMax = std::max(-mn, double(b.max));
    if (absMax == 0) {
      zerosUnbinned_ += b.finite;  // all zeros: bin 0 under any range
      return;
    }
    const double need = RangeFor(absMax);
    if (need > range_) {
      if (range_ > 0) lanes_.Grow(need / range_);
      range_ = need;
    }
    const double scale = double(bins_) / range_;
    const bool check = b.finite != m;
    const bool f = IsNormalFloatScale(scale);
    if (check) {
      if (f) BinLanes<true, true>(d, m, lanes_.data(), lanes_.stride(), scale);
      else BinLanes<true, false>(d, m, lanes_.data(), lanes_.stride(), scale);
    } else {
      if (f) BinLanes<false, true>(d, m, lanes_.data(), lanes_.stride(), scale);
      else BinLanes<false, false>(d, m, lanes_.data(), lanes_.stride(), scale);
    }
    sinceFlush_ += m;
    if (sinceFlush_ >= kChunk) Flush();  // keep every lane far below 2^32
  }

  void Finish() {
    ApplyCounts(header_, total_);
    Flush();
    hist_[0] += double(zerosUnbinned_);
  }

 private:
#ifdef TRTCALIB_AVX2
  // The leading kBlock-value blocks of d that are finite and below the current range, scanned and indexed in one
  // pass (ScanIndicesAvx2) and counted: the same counts, range and summary as Scan then BinLanes, which take the
  // rest. Returns how many values it counted.
  size_t AddFused(const float* d, size_t m) {
    if (!(range_ > 0)) return 0;
    const double scale = double(bins_) / range_;
    if (!IsNormalFloatScale(scale)) return 0;
    const float sf = float(scale);
    int32_t idx[kBlock];
    size_t base = 0;
    for (; base < m; base += kBlock) {
      const size_t n = std::min(kBlock, m - base);
      Summary b;
      uint64_t nonFinite = 0;
      ScanIndicesAvx2(d + base, n, sf, idx, b.min, b.max, b.zeros, nonFinite);
      if (nonFinite != 0) break;
      const double absMax = std::max(b.min == 0 ? 0.0 : -double(b.min), double(b.max));
      if (!(absMax < range_)) break;  // the range must grow first: Scan and BinLanes do it
      b.finite = n;
      Merge(total_, b);
      IncrementLanes(idx, n, lanes_.data(), lanes_.data() + lanes_.stride());
      sinceFlush_ += n;
      if (sinceFlush_ >= kChunk) Flush();
    }
    return std::min(base, m);  // the last block may be shorter than kBlock
  }
#endif

  void Flush() {
    if (range_ > 0) {
      const double target = std::max(RangeFor(header_[kAbsMax]), range_);
      if (target > header_[kRange]) GrowRange(header_, hist_, bins_, target);
      lanes_.FlushInto(hist_, header_[kRange] / range_);
    }
    sinceFlush_ = 0;
  }

  double* header_;
  double* hist_;
  uint32_t bins_;
  double range_;
  Lanes lanes_;
  Summary total_;
  uint64_t zerosUnbinned_ = 0;
  size_t sinceFlush_ = 0;
};

struct HalfTable {
  float v[65536];
  HalfTable() {
    for (uint32_t h = 0; h < 65536; ++h) v[h] = Convert(uint16_t(h));
  }
  static float Convert(uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) {
      u = sign | 0x7f800000u | (man << 13);  // Inf or NaN (payload kept)
    } else if (exp != 0) {
      u = sign | ((exp + 112) << 23) | (man << 13);
    } else {
      // zero or subnormal: man * 2^-24, exact in float32
      const float f = float(man) * 5.9604644775390625e-8f;
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

const HalfTable& Halves() {
  static const HalfTable table;
  return table;
}

}  // namespace

float HalfToFloat(uint16_t h) { return Halves().v[h]; }

double RangeFor(double absMax) {
  if (!(absMax > 0)) return 0;
  int e = 0;
  std::frexp(absMax, &e);  // absMax = f * 2^e, f in [0.5, 1): 2^e > absMax >= 2^(e-1)
  return std::ldexp(1.0, e);
}

void GrowRange(double* header, double* hist, uint32_t bins, double newRange) {
  const double old = header[kRange];
  header[kRange] = newRange;
  if (old == 0) return;  // only zeros so far: they are in bin 0 under any range
  MergeBins<double, double>(hist, bins, newRange / old);
}

void MergeState(double* header, double* hist, const double* fromHeader, const double* fromHist, uint32_t bins) {
  for (int k : {kCount, kNanCount, kPosInfCount, kNegInfCount, kZeroCount}) header[k] += fromHeader[k];
  if (fromHeader[kMin] < header[kMin]) header[kMin] = fromHeader[kMin];
  if (fromHeader[kMax] > header[kMax]) header[kMax] = fromHeader[kMax];
  if (fromHeader[kAbsMax] > header[kAbsMax]) header[kAbsMax] = fromHeader[kAbsMax];
  const double range = std::max(header[kRange], fromHeader[kRange]);
  if (range > header[kRange]) GrowRange(header, hist, bins, range);
  if (fromHeader[kRange] == range || fromHeader[kRange] == 0) {
    for (uint32_t b = 0; b < bins; ++b) hist[b] += fromHist[b];
    return;
  }
  std::vector<double> wide(fromHist, fromHist + bins);
  MergeBins<double, double>(wide.data(), bins, range / fromHeader[kRange]);
  for (uint32_t b = 0; b < bins; ++b) hist[b] += wide[b];
}

void AccumulateFloat32(double* header, double* hist, uint32_t bins, const float* data, size_t n) {
  if (!UseLanes(n, bins)) {
    AccumulateSmall(header, hist, bins, data, n);
    return;
  }
  BlockAccumulator acc(header, hist, bins);
  for (size_t off = 0; off < n; off += kScanBlock) acc.Add(data + off, std::min(kScanBlock, n - off));
  acc.Finish();
}

// clamp(x, lo, hi) with NaN passed through unchanged, as onnxruntime's Clip leaves it.
void ClampInto(const float* src, size_t m, float lo, float hi, float* dst) {
  size_t i = 0;
#ifdef TRTCALIB_SSE2
  // maxps/minps return their second operand when either is NaN: with x second, a NaN x comes out as itself.
  const __m128 vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
  for (; i + 4 <= m; i += 4) _mm_storeu_ps(dst + i, _mm_min_ps(vhi, _mm_max_ps(vlo, _mm_loadu_ps(src + i))));
#endif
  for (; i < m; i++) {
    const float v = src[i];
    dst[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

void AccumulateFloat32Clamped(double* header, double* hist, uint32_t bins, const float* data, size_t n, float lo, float hi) {
  // Clamped block by block into a scratch buffer that stays in L2 and counted by one accumulator, as float16 data
  // is converted: the result is that of counting the clamped tensor, read from memory once.
  std::vector<float> scratch(UseLanes(n, bins) ? std::min(n, kScanBlock) : n);
  if (!UseLanes(n, bins)) {
    ClampInto(data, n, lo, hi, scratch.data());
    AccumulateSmall(header, hist, bins, scratch.data(), n);
    return;
  }
  BlockAccumulator acc(header, hist, bins);
  for (size_t off = 0; off < n; off += kScanBlock) {
    const size_t m = std::min(kScanBlock, n - off);
    ClampInto(data + off, m, lo, hi, scratch.data());
    acc.Add(scratch.data(), m);
  }
  acc.Finish();
}

namespace {

#ifdef TRTCALIB_AVX2
// ClampPairAccumulator::BinBlock's vector loop (float scales), 8 values a step: bin indices into idx, values below
// lo and above hi counted. Returns how many values it took (a multiple of 8).
TRTCALIB_TARGET_AVX2 size_t PairIndicesAvx2(const float* p, size_t n, float lo, float hi, float fIn, float fOut, int32_t inOffset,
                                            int32_t* idx, uint32_t& nb, uint32_t& na) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vIn = _mm256_set1_ps(fIn), vOut = _mm256_set1_ps(fOut);
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i vOffset = _mm256_set1_epi32(inOffset);
  __m256i cb = _mm256_setzero_si256(), ca = _mm256_setzero_si256();
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256 x = _mm256_loadu_ps(p + k);
    const __m256 lt = _mm256_cmp_ps(x, vlo, _CMP_LT_OS);
    const __m256 gt = _mm256_cmp_ps(x, vhi, _CMP_GT_OS);
    const __m256 out = _mm256_or_ps(lt, gt);
    const __m256 scale = _mm256_blendv_ps(vIn, vOut, out);
    const __m256i bin = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_and_ps(x, absMask), scale));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + k), _mm256_add_epi32(bin, _mm256_andnot_si256(_mm256_castps_si256(out), vOffset)));
    cb = _mm256_sub_epi32(cb, _mm256_castps_si256(lt));
    ca = _mm256_sub_epi32(ca, _mm256_castps_si256(gt));
  }
  alignas(32) uint32_t b8[8], a8[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(b8), cb);
  _mm256_store_si256(reinterpret_cast<__m256i*>(a8), ca);
  for (int j = 0; j < 8; ++j) {
    nb += b8[j];
    na += a8[j];
  }
  return k;
}
#endif

// Root and clamp statistics in one pass (AccumulateFloat32WithClamp). Each value is binned once: values inside
// [lo, hi] (which the clamp keeps) at the clamp's range, the others at the root's; the clamp counts the others as
// lo or hi. The lanes hold both halves side by side: [outside bins | inside bins] per lane.
class ClampPairAccumulator {
 public:
  ClampPairAccumulator(double* rootHeader, double* rootHist, double* clampHeader, double* clampHist, uint32_t bins, float lo, float hi)
      : rh_(rootHeader), rhist_(rootHist), ch_(clampHeader), chist_(clampHist), bins_(bins), lo_(lo), hi_(hi),
        stride_(2 * bins + kLanePad), lanes_(size_t(kLanes) * stride_, 0u), rangeOut_(rootHeader[kRange]) {}

  void Add(const float* d, size_t m) {
    Summary b;
    Scan(d, m, b);
    Merge(rootTotal_, b);
    if (b.finite == m) AddFinite(d, m, b);
    else AddChecked(d, m, b);
    sinceFlush_ += m;
    if (sinceFlush_ >= kChunk) Flush();
  }

  void Finish() {
    ApplyCounts(rh_, rootTotal_);
    ApplyCounts(ch_, clampTotal_);
    Flush();
  }

 private:
  float Clamp(float v) const { return v < lo_ ? lo_ : (v > hi_ ? hi_ : v); }

  static double AbsMaxOf(const Summary& s) {
    if (s.finite == 0) return 0;
    const double mn = s.min == 0 ? 0.0 : double(s.min);
    const double mx = s.max == 0 ? 0.0 : double(s.max);
    return std::max(-mn, mx);
  }

  void Need(double absOut, double absIn) {
    const double out = RangeFor(absOut), in = RangeFor(absIn);
    if (out > rangeOut_) {
      if (rangeOut_ > 0) GrowPart(0, out / rangeOut_, topOut_);
      rangeOut_ = out;
    }
    if (in > rangeIn_) {
      if (rangeIn_ > 0) GrowPart(bins_, in / rangeIn_, topIn_);
      rangeIn_ = in;
    }
    // Highest bins this block can reach in each half (|x| < range: below bins).
    if (rangeOut_ > 0) topOut_ = std::max(topOut_, int64_t(absOut * (double(bins_) / rangeOut_)));
    else topOut_ = std::max<int64_t>(topOut_, 0);
    if (rangeIn_ > 0) topIn_ = std::max(topIn_, int64_t(absIn * (double(bins_) / rangeIn_)));
    else topIn_ = std::max<int64_t>(topIn_, 0);
  }

  // The clamp of a summary's finite values (clamp is monotone: the clamped min and max are those of the clamp).
  Summary ClampOfFinite(const Summary& b) const {
    Summary c;
    c.finite = b.finite;
    c.min = Clamp(b.min);
    c.max = Clamp(b.max);
    return c;
  }

  // Widens both halves for a block whose root summary is b and whose clamp summary (finite values) is c; returns
  // the scales of the outside and inside halves (0 while a half's range is 0: it then holds only zeros).
  std::pair<double, double> Prepare(const Summary& b, const Summary& c) {
    Need(AbsMaxOf(b), AbsMaxOf(c));
    return {rangeOut_ > 0 ? double(bins_) / rangeOut_ : 0.0, rangeIn_ > 0 ? double(bins_) / rangeIn_ : 0.0};
  }

  // A block without NaN or infinities: the clamp's summary follows from the root's.
  void AddFinite(const float* d, size_t m, const Summary& b) {
    if (m == 0) return;
    Summary c = ClampOfFinite(b);
    const auto [sOut, sIn] = Prepare(b, c);
    uint64_t below = 0, above = 0;
    if ((sOut == 0 || IsNormalFloatScale(sOut)) && (sIn == 0 || IsNormalFloatScale(sIn))) {
      BinBlock<true>(d, m, sOut, sIn, below, above);
    } else {
      BinBlock<false>(d, m, sOut, sIn, below, above);
    }
    // clamp(x) == 0: a zero inside [lo, hi], or a value clamped to a bound that is 0.
    c.zeros = (lo_ <= 0 && 0 <= hi_ ? b.zeros : 0) + (lo_ == 0 ? below : 0) + (hi_ == 0 ? above : 0);
    Merge(clampTotal_, c);
    below_ += below;
    above_ += above;
    if (below) boundsAbsMax_ = std::max(boundsAbsMax_, double(std::fabs(lo_)));
    if (above) boundsAbsMax_ = std::max(boundsAbsMax_, double(std::fabs(hi_)));
  }

  template <bool kFloat>
  void BinBlock(const float* d, size_t m, double sOut, double sIn, uint64_t& below, uint64_t& above) {
    int32_t idx[kBlock];
    const float lo = lo_, hi = hi_;
    const float fOut = float(sOut), fIn = float(sIn);
    const int32_t inOffset = int32_t(bins_);
    uint32_t* h0 = lanes_.data();
    uint32_t* h1 = h0 + stride_;
    for (size_t base = 0; base < m; base += kBlock) {
      const size_t n = std::min(kBlock, m - base);
      const float* p = d + base;
      uint32_t nb = 0, na = 0;
      size_t k = 0;
#ifdef TRTCALIB_AVX2
      if (kFloat && kUseAvx2) k = PairIndicesAvx2(p, n, lo, hi, fIn, fOut, inOffset, idx, nb, na);
#endif
#ifdef TRTCALIB_SSE2
      if (kFloat && k == 0) {
        // Branch-free: data around 0 makes inside/outside a coin flip for the branch predictor.
        const __m128 vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi), vIn = _mm_set1_ps(fIn), vOut = _mm_set1_ps(fOut);
        const __m128 absMask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        const __m128i vOffset = _mm_set1_epi32(inOffset);
        __m128i cb = _mm_setzero_si128(), ca = _mm_setzero_si128();
        for (; k + 4 <= n; k += 4) {
          const __m128 x = _mm_loadu_ps(p + k);
          const __m128 lt = _mm_cmplt_ps(x, vlo);
          const __m128 gt = _mm_cmpgt_ps(x, vhi);
          const __m128 out = _mm_or_ps(lt, gt);
          const __m128 scale = _mm_or_ps(_mm_and_ps(out, vOut), _mm_andnot_ps(out, vIn));
          const __m128i bin = _mm_cvttps_epi32(_mm_mul_ps(_mm_and_ps(x, absMask), scale));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + k), _mm_add_epi32(bin, _mm_andnot_si128(_mm_castps_si128(out), vOffset)));
          cb = _mm_sub_epi32(cb, _mm_castps_si128(lt));
          ca = _mm_sub_epi32(ca, _mm_castps_si128(gt));
        }
        alignas(16) uint32_t b4[4], a4[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(b4), cb);
        _mm_store_si128(reinterpret_cast<__m128i*>(a4), ca);
        nb = b4[0] + b4[1] + b4[2] + b4[3];
        na = a4[0] + a4[1] + a4[2] + a4[3];
      }
#endif
      for (; k < n; ++k) {
        const float x = p[k];
        const float a = std::fabs(x);
        const bool lt = x < lo, gt = x > hi;
        const bool in = !(lt | gt);
        nb += lt;
        na += gt;
        const int32_t bin = kFloat ? int32_t(a * (in ? fIn : fOut)) : int32_t(double(a) * (in ? sIn : sOut));
        idx[k] = bin + (in ? inOffset : 0);
      }
      below += nb;
      above += na;
      IncrementLanes(idx, n, h0, h1);
    }
  }

  // A block with NaN or infinities (rare): the clamp's summary from the clamped values themselves.
  void AddChecked(const float* d, size_t m, const Summary& b) {
    std::vector<float> clamped(m);
    ClampInto(d, m, lo_, hi_, clamped.data());
    Summary c;
    ScanCareful(clamped.data(), m, c);
    // The inside half's range from the finite values only: an infinity clamped to a finite bound is counted as
    // that bound (below_/above_), and must not widen the range the root later merges the inside half at.
    const auto [sOut, sIn] = Prepare(b, ClampOfFinite(b));
    uint32_t* h = lanes_.data();
    for (size_t i = 0; i < m; ++i) {
      const float x = d[i];
      if (x != x) continue;  // NaN: counted in both summaries, binned in neither
      const bool finite = (Bits(x) & 0x7fffffffu) < 0x7f800000u;
      if (x < lo_) {
        if (std::isfinite(lo_)) {  // the clamp's value is lo (else -inf, counted by its summary)
          below_++;
          boundsAbsMax_ = std::max(boundsAbsMax_, double(std::fabs(lo_)));
        }
        if (finite) h[size_t(double(std::fabs(x)) * sOut)]++;
      } else if (x > hi_) {
        if (std::isfinite(hi_)) {
          above_++;
          boundsAbsMax_ = std::max(boundsAbsMax_, double(std::fabs(hi_)));
        }
        if (finite) h[size_t(double(std::fabs(x)) * sOut)]++;
      } else if (finite) {
        h[bins_ + size_t(double(std::fabs(x)) * sIn)]++;
      }
    }
    Merge(clampTotal_, c);
  }

  // Re-bins one half for a range `factor` times wider; `top` (the highest bin in use, -1 for none) follows.
  void GrowPart(uint32_t offset, double factor, int64_t& top) {
    if (top < 0) return;
    const uint32_t used = uint32_t(top) + 1;
    const uint32_t f = factor >= double(bins_) ? bins_ : uint32_t(factor);
    for (uint32_t l = 0; l < kLanes; ++l) {
      uint32_t* h = lanes_.data() + size_t(l) * stride_ + offset;
      for (uint32_t j = 0; j <= (used - 1) / f; ++j) {
        uint32_t sum = 0;
        for (uint32_t k = j * f; k < std::min(used, (j + 1) * f); ++k) sum += h[k];
        h[j] = sum;
      }
      std::fill(h + (used - 1) / f + 1, h + used, 0u);
    }
    top = (used - 1) / f;
  }

  // Adds bins 0..top of one half of the lanes to hist, whose range is `factor` (a power of two >= 1) times the
  // half's.
  void AddPart(uint32_t offset, double* hist, double factor, int64_t top) const {
    if (top < 0) return;
    const uint32_t* h = lanes_.data() + offset;
    AddLanePair(h, h + stride_, uint32_t(top) + 1, hist, FactorShift(factor, bins_));
  }

  bool PartEmpty(uint32_t offset, int64_t top) const {
    for (uint32_t l = 0; l < kLanes; ++l) {
      const uint32_t* h = lanes_.data() + size_t(l) * stride_ + offset;
      for (uint32_t b = 0; int64_t(b) <= top; ++b) {
        if (h[b]) return false;
      }
    }
    return true;
  }

  static void PlaceValue(double* header, double* hist, uint32_t bins, float value, uint64_t count) {
    if (count == 0) return;
    const double range = header[kRange];
    hist[range > 0 ? size_t(double(std::fabs(value)) * (double(bins) / range)) : 0] += double(count);
  }

  void Flush() {
    // The clamp: inside values, then the values clamped to lo and hi.
    // (ch_'s absMax is updated only in Finish; a flush within a call also needs room for the bounds placed.)
    const double clampTarget = std::max({RangeFor(ch_[kAbsMax]), rangeIn_, RangeFor(boundsAbsMax_)});
    if (clampTarget > ch_[kRange]) GrowRange(ch_, chist_, bins_, clampTarget);
    const bool insideEmpty = PartEmpty(bins_, topIn_);
    // A half whose range is still 0 holds only zeros (bin 0 under any range): factor 1.
    if (!insideEmpty) AddPart(bins_, chist_, rangeIn_ > 0 ? ch_[kRange] / rangeIn_ : 1, topIn_);
    PlaceValue(ch_, chist_, bins_, lo_, below_);
    PlaceValue(ch_, chist_, bins_, hi_, above_);
    below_ = above_ = 0;
    // The root: the outside values and the inside ones, whose range cannot exceed the root's (an inside value v
    // bounds |clamp(x)| by max(|x|, |v|) over the data).
    const double rootTarget = std::max(RangeFor(rh_[kAbsMax]), rangeOut_);
    if (rootTarget > rh_[kRange]) GrowRange(rh_, rhist_, bins_, rootTarget);
    AddPart(0, rhist_, rangeOut_ > 0 ? rh_[kRange] / rangeOut_ : 1, topOut_);
    if (!insideEmpty) {
      if (rangeIn_ > rh_[kRange] && rangeIn_ > 0) throw std::logic_error("clamp statistics: inside range exceeds the root's");
      AddPart(bins_, rhist_, rangeIn_ > 0 ? rh_[kRange] / rangeIn_ : 1, topIn_);
    }
    // Only the bins in use were touched: clear those.
    for (uint32_t l = 0; l < kLanes; ++l) {
      uint32_t* h = lanes_.data() + size_t(l) * stride_;
      if (topOut_ >= 0) std::fill(h, h + topOut_ + 1, 0u);
      if (topIn_ >= 0) std::fill(h + bins_, h + bins_ + topIn_ + 1, 0u);
    }
    topOut_ = topIn_ = -1;
    sinceFlush_ = 0;
  }

  double* rh_;
  double* rhist_;
  double* ch_;
  double* chist_;
  uint32_t bins_;
  float lo_;
  float hi_;
  uint32_t stride_;
  std::vector<uint32_t> lanes_;
  double rangeOut_;
  // The inside half's range starts at 0, not at the clamp state's: that may exceed the root's range (an infinity
  // clamped to a finite bound widens the clamp, not the root), while this call's inside values never do.
  double rangeIn_ = 0;
  Summary rootTotal_;
  Summary clampTotal_;
  uint64_t below_ = 0;
  uint64_t above_ = 0;
  double boundsAbsMax_ = 0;  // |lo| / |hi| when values were clamped to them
  int64_t topOut_ = -1;      // highest bin in use in each half of the lanes (-1: none): flushes stop there
  int64_t topIn_ = -1;
  size_t sinceFlush_ = 0;
};

}  // namespace

void AccumulateFloat32WithClamp(double* header, double* hist, double* clampHeader, double* clampHist, uint32_t bins, const float* data, size_t n, float lo, float hi) {
  if (!UseLanes(n, bins)) {
    AccumulateFloat32(header, hist, bins, data, n);
    AccumulateFloat32Clamped(clampHeader, clampHist, bins, data, n, lo, hi);
    return;
  }
  ClampPairAccumulator acc(header, hist, clampHeader, clampHist, bins, lo, hi);
  for (size_t off = 0; off < n; off += kScanBlock) acc.Add(data + off, std::min(kScanBlock, n - off));
  acc.Finish();
}

void AccumulateZeros(double* header, double* hist, uint64_t n) {
  if (n == 0) return;
  Summary s;
  s.finite = n;
  s.zeros = n;
  s.min = 0;
  s.max = 0;
  ApplyCounts(header, s);
  hist[0] += double(n);  // all zeros: bin 0 under any range, as AccumulateSmall counts them
}

void AccumulateFloat16(double* header, double* hist, uint32_t bins, const uint16_t* data, size_t n) {
  const float* table = Halves().v;
  std::vector<float> buf(UseLanes(n, bins) ? std::min(n, kScanBlock) : n);
  auto convert = [&](size_t off, size_t m) {
    for (size_t k = 0; k < m; ++k) buf[k] = table[data[off + k]];
  };
  if (!UseLanes(n, bins)) {
    convert(0, n);
    AccumulateSmall(header, hist, bins, buf.data(), n);
    return;
  }
  BlockAccumulator acc(header, hist, bins);
  for (size_t off = 0; off < n; off += kScanBlock) {
    const size_t m = std::min(kScanBlock, n - off);
    convert(off, m);
    acc.Add(buf.data(), m);
  }
  acc.Finish();
}

}  // namespace trtcalib
