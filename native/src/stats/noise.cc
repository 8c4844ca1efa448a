// TensorNoise.add (src/sensitivity/noise.ts) in C++: the same IEEE double operations in the same order, so the sums
// are bit for bit the JavaScript loop's (test/unit/noise-native.test.ts), whichever path the FP32 pass of
// sensitivity analysis takes (the collector's counting nodes, or onnxruntime-node's outputs and the JS loop).
//
// Per image, from zero: every sum over the values in four lanes (element i into lane i % 4), reduced as
// (l0 + l1) + (l2 + l3); the FP16 sample summed in order; then added to the totals in image order. int8: q = round
// half even (x / s) by x * (1 / s) + 1.5 * 2^52 - 1.5 * 2^52, saturated to [-128, 127]. float16 rounding of every 8th
// value by Veltkamp's splitting (normal range) or a round-half-even on the 2^-24 grid (subnormal range).
// The AVX2 loop computes the four lanes at once with the same operations (separate multiplies and adds, the build
// has -ffp-contract=off), so it gives the same bits as the scalar one. It assumes finite values (no masks) and
// notes any other; an image with one is summed again by the scalar loop, which skips them.
#include "stats/noise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TRTCALIB_NOISE_AVX2 1
#endif

namespace trtcalib {

namespace {

constexpr double kFp16Max = 65504.0;
constexpr double kFp16MinNormal = 6.103515625e-05;             // 2^-14
constexpr double kFp16SubnormalStep = 5.9604644775390625e-08;  // 2^-24
constexpr double kVeltkamp11 = 4398046511105.0;                // 2^42 + 1
constexpr double kRoundMagic = 6755399441055744.0;             // 1.5 * 2^52
constexpr size_t kStride = 8;                                  // FP16_SAMPLE_STRIDE

struct Lanes {
  double sig[4] = {0, 0, 0, 0};
  double err[4] = {0, 0, 0, 0};
  double absMax = 0;
  uint64_t overflow = 0, saturated = 0, nonFinite = 0;
};

// Elements [from, n) of the call, scalar.
void ScalarPart(Lanes& l, const float* d, size_t from, size_t n, bool quant, double inv, double scale) {
  for (size_t i = from; i < n; i++) {
    const double x = d[i];
    if (!(x - x == 0)) {
      l.nonFinite++;
      continue;
    }
    const double a = x < 0 ? -x : x;
    if (a > l.absMax) l.absMax = a;
    l.sig[i & 3] += x * x;
    if (a > kFp16Max) l.overflow++;
    if (quant) {
      double q = x * inv + kRoundMagic - kRoundMagic;
      if (q > 127) {
        q = 127;
        l.saturated++;
      } else if (q < -128) {
        q = -128;
        l.saturated++;
      }
      const double e = x - q * scale;
      l.err[i & 3] += e * e;
    }
  }
}

#ifdef TRTCALIB_NOISE_AVX2
bool HasAvx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// Elements [from, from + (count & ~3)) of finite values (from a multiple of 4), the lanes continuing: false (lanes
// untouched) when some value is not finite.
__attribute__((target("avx2"))) bool VectorPart(Lanes& l, const float* base, size_t from, size_t count, bool quant, double inv, double scale) {
  const float* d = base + from;
  const size_t end = count & ~size_t(3);
  __m256d sig = _mm256_loadu_pd(l.sig), err = _mm256_loadu_pd(l.err), mx = _mm256_setzero_pd(), bad = _mm256_setzero_pd();
  const __m256d zero = _mm256_setzero_pd();
  const __m256d signMask = _mm256_set1_pd(-0.0);
  const __m256d fp16Max = _mm256_set1_pd(kFp16Max);
  const __m256d vinv = _mm256_set1_pd(inv), vscale = _mm256_set1_pd(scale), magic = _mm256_set1_pd(kRoundMagic);
  const __m256d hi = _mm256_set1_pd(127.0), lo = _mm256_set1_pd(-128.0);
  // Counters as 64-bit lanes: a true comparison is all ones (-1), subtracted.
  __m256i overflow = _mm256_setzero_si256(), saturated = _mm256_setzero_si256();
  for (size_t i = 0; i < end; i += 4) {
    const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(d + i));
    bad = _mm256_or_pd(bad, _mm256_cmp_pd(_mm256_sub_pd(x, x), zero, _CMP_NEQ_UQ));
    const __m256d a = _mm256_andnot_pd(signMask, x);
    mx = _mm256_max_pd(mx, a);
    sig = _mm256_add_pd(sig, _mm256_mul_pd(x, x));
    overflow = _mm256_sub_epi64(overflow, _mm256_castpd_si256(_mm256_cmp_pd(a, fp16Max, _CMP_GT_OQ)));
    if (quant) {
      const __m256d q0 = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(x, vinv), magic), magic);
      saturated = _mm256_sub_epi64(saturated, _mm256_castpd_si256(_mm256_cmp_pd(q0, hi, _CMP_GT_OQ)));
      saturated = _mm256_sub_epi64(saturated, _mm256_castpd_si256(_mm256_cmp_pd(q0, lo, _CMP_LT_OQ)));
      // q0 is an integer (or +-0): min and max clamp it exactly as the scalar comparisons do.
      const __m256d q = _mm256_min_pd(_mm256_max_pd(q0, lo), hi);
      const __m256d e = _mm256_sub_pd(x, _mm256_mul_pd(q, vscale));
      err = _mm256_add_pd(err, _mm256_mul_pd(e, e));
    }
  }
  if (_mm256_movemask_pd(bad) != 0) return false;
  _mm256_storeu_pd(l.sig, sig);
  _mm256_storeu_pd(l.err, err);
  alignas(32) double m[4];
  alignas(32) int64_t o[4], s[4];
  _mm256_store_pd(m, mx);
  _mm256_store_si256(reinterpret_cast<__m256i*>(o), overflow);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), saturated);
  for (int k = 0; k < 4; ++k) {
    l.absMax = m[k] > l.absMax ? m[k] : l.absMax;
    l.overflow += uint64_t(o[k]);
    l.saturated += uint64_t(s[k]);
  }
  return true;
}
#endif

// The FP16 sample of elements [from, to): every kStride-th element of the image (from is a multiple of kStride).
void SamplePart(const float* d, size_t from, size_t to, double& sampleSignal, double& f16) {
  for (size_t i = from; i < to; i += kStride) {
    const double x = d[i];
    const double a = x < 0 ? -x : x;
    if (!(x - x == 0) || a > kFp16Max) continue;
    double r;
    if (a >= kFp16MinNormal) {
      const double t = kVeltkamp11 * x;
      r = t - (t - x);
    } else {
      r = std::nearbyint(x / kFp16SubnormalStep) * kFp16SubnormalStep;  // round half to even, as the JS
    }
    const double e = x - r;
    sampleSignal += x * x;
    f16 += e * e;
  }
}

}  // namespace

void NoiseImage(double* partial, const float* d, size_t n, double scale) {
  const bool quant = scale > 0;
  const double inv = quant ? 1.0 / scale : 0;
  Lanes l;
  double sampleSignal = 0, f16 = 0;
  // Block by block (16 KiB, in L1 for the sample's second look), in order: the same additions as one loop.
  constexpr size_t kBlock = 4096;
#ifdef TRTCALIB_NOISE_AVX2
  const bool avx2 = HasAvx2();
#endif
  for (size_t from = 0; from < n; from += kBlock) {
    const size_t to = std::min(n, from + kBlock);
    size_t done = from;
#ifdef TRTCALIB_NOISE_AVX2
    if (avx2 && VectorPart(l, d, from, to - from, quant, inv, scale)) done = from + ((to - from) & ~size_t(3));
#endif
    ScalarPart(l, d, done, to, quant, inv, scale);
    SamplePart(d, from, to, sampleSignal, f16);
  }
  partial[0] = (l.sig[0] + l.sig[1]) + (l.sig[2] + l.sig[3]);
  partial[1] = (l.err[0] + l.err[1]) + (l.err[2] + l.err[3]);
  partial[2] = sampleSignal;
  partial[3] = f16;
  partial[4] = l.absMax;
  partial[5] = double(l.overflow);
  partial[6] = double(l.saturated);
  partial[7] = double(n) - double(l.nonFinite);
  partial[8] = double(l.nonFinite);
}

void MergeNoise(double* sums, const double* p) {
  for (int k : {0, 1, 2, 3, 5, 6, 7, 8}) sums[k] += p[k];
  if (p[4] > sums[4]) sums[4] = p[4];
}

void NoiseSums(double* sums, const float* d, size_t n, double scale) {
  double partial[kNoiseSums];
  NoiseImage(partial, d, n, scale);
  MergeNoise(sums, partial);
}

}  // namespace trtcalib
