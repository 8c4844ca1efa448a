// TensorNoise.add (src/sensitivity/noise.ts) in C++: the same IEEE double operations in the same order, so the sums
// are bit for bit the JavaScript loop's (test/unit/noise-native.test.ts), whichever path the FP32 pass of
// sensitivity analysis takes (the collector's counting nodes, or onnxruntime-node's outputs and the JS loop).
//
// Per image, from zero: the signal and the INT8 noise each in 16 lanes (element i into lane i % 16), reduced by the
// pairwise tree of Reduce16; the FP16 sample (every 8th element, the j-th into lane j % 4) reduced as
// (s0 + s1) + (s2 + s3); then added to the totals in image order. int8: q = round half even (x / s) by
// x * (1 / s) + 1.5 * 2^52 - 1.5 * 2^52, saturated to [-128, 127]. float16 rounding of a sampled value by
// Veltkamp's splitting (normal range) or a round-half-even on the 2^-24 grid (subnormal range).
// Why 16 lanes: with 4 (one AVX2 register), every step waited for the previous step's addition (4 cycles for 4
// values); 16 lanes are 4 independent registers. The range, the FP16 overflow and the non-finite check are taken
// on the float32 values, 8 at a time (exact: |x| and x > 65504 do not round). The AVX2 loop computes the lanes
// with the same operations as the scalar one (separate multiplies and adds, the build has -ffp-contract=off), so it
// gives the same bits. It assumes finite values (no masks) and notes any other; a 4096-value block with one is
// summed again by the scalar loop, which skips them.
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
constexpr size_t kLanes = 16;                                  // lanes of the signal and the INT8 noise
constexpr size_t kSampleLanes = 4;                             // lanes of the FP16 sample's sums
constexpr size_t kBlock = 4096;                                // values per block (16 KiB: in L1 for the sample)

struct Lanes {
  double sig[kLanes] = {};
  double err[kLanes] = {};
  double sampleSig[kSampleLanes] = {};
  double sampleErr[kSampleLanes] = {};
  double absMax = 0;
  uint64_t overflow = 0, saturated = 0, nonFinite = 0;
};

// The pairwise tree over 16 lanes (TensorNoise's reduce16).
double Reduce16(const double* l) {
  return (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) + (((l[8] + l[9]) + (l[10] + l[11])) + ((l[12] + l[13]) + (l[14] + l[15])));
}

// Elements [from, n) of a block, scalar (from a multiple of 16: the lane of element i is i % 16 of the image).
void ScalarPart(Lanes& l, const float* d, size_t from, size_t n, bool quant, double inv, double scale) {
  for (size_t i = from; i < n; i++) {
    const double x = d[i];
    if (!(x - x == 0)) {
      l.nonFinite++;
      continue;
    }
    const double a = x < 0 ? -x : x;
    if (a > l.absMax) l.absMax = a;
    l.sig[i & (kLanes - 1)] += x * x;
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
      l.err[i & (kLanes - 1)] += e * e;
    }
  }
}

// The FP16 sample of elements [from, to) of a block (from a multiple of 32): element i = 8j into lane j % 4.
void SamplePart(Lanes& l, const float* d, size_t from, size_t to) {
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
    const size_t lane = (i / kStride) & (kSampleLanes - 1);
    l.sampleSig[lane] += x * x;
    l.sampleErr[lane] += e * e;
  }
}

#ifdef TRTCALIB_NOISE_AVX2
bool HasAvx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// Elements [0, count & ~31) of a block of finite values, the lanes continuing: false (lanes untouched) when some
// value is not finite. 32 values a step: 16 lanes twice, and 4 samples (elements 0, 8, 16, 24 of the step).
__attribute__((target("avx2"))) bool VectorPart(Lanes& l, const float* d, size_t count, bool quant, double inv, double scale) {
  const size_t end = count & ~size_t(31);
  __m256d sig[4], err[4];
  for (int k = 0; k < 4; ++k) {
    sig[k] = _mm256_loadu_pd(l.sig + 4 * k);
    err[k] = _mm256_loadu_pd(l.err + 4 * k);
  }
  __m256d sampleSig = _mm256_loadu_pd(l.sampleSig), sampleErr = _mm256_loadu_pd(l.sampleErr);
  const __m256 signMask32 = _mm256_set1_ps(-0.0f);
  const __m256 fp16Max32 = _mm256_set1_ps(65504.0f);
  __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  __m256i overflow = _mm256_setzero_si256();  // int32 lanes: at most kBlock / 8 each
  const __m256d signMask = _mm256_set1_pd(-0.0);
  const __m256d fp16Max = _mm256_set1_pd(kFp16Max), minNormal = _mm256_set1_pd(kFp16MinNormal);
  const __m256d veltkamp = _mm256_set1_pd(kVeltkamp11), toGrid = _mm256_set1_pd(1.0 / kFp16SubnormalStep), step = _mm256_set1_pd(kFp16SubnormalStep);
  const __m256d vinv = _mm256_set1_pd(inv), vscale = _mm256_set1_pd(scale), magic = _mm256_set1_pd(kRoundMagic);
  const __m256d hi = _mm256_set1_pd(127.0), lo = _mm256_set1_pd(-128.0);
  const __m128i sampleIndex = _mm_setr_epi32(0, 8, 16, 24);
  __m256i saturated = _mm256_setzero_si256();  // int64 lanes: a true comparison is all ones (-1), subtracted
  for (size_t i = 0; i < end; i += 32) {
    for (int half = 0; half < 2; ++half) {
      const float* p = d + i + 16 * half;
      const __m256 f0 = _mm256_loadu_ps(p), f1 = _mm256_loadu_ps(p + 8);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(f0, f0), _mm256_setzero_ps(), _CMP_NEQ_UQ));
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(f1, f1), _mm256_setzero_ps(), _CMP_NEQ_UQ));
      const __m256 a0 = _mm256_andnot_ps(signMask32, f0), a1 = _mm256_andnot_ps(signMask32, f1);
      mx = _mm256_max_ps(mx, _mm256_max_ps(a0, a1));
      overflow = _mm256_sub_epi32(overflow, _mm256_castps_si256(_mm256_cmp_ps(a0, fp16Max32, _CMP_GT_OQ)));
      overflow = _mm256_sub_epi32(overflow, _mm256_castps_si256(_mm256_cmp_ps(a1, fp16Max32, _CMP_GT_OQ)));
      const __m256d x[4] = {_mm256_cvtps_pd(_mm256_castps256_ps128(f0)), _mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)),
                            _mm256_cvtps_pd(_mm256_castps256_ps128(f1)), _mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1))};
      for (int k = 0; k < 4; ++k) {
        sig[k] = _mm256_add_pd(sig[k], _mm256_mul_pd(x[k], x[k]));
        if (quant) {
          const __m256d q0 = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(x[k], vinv), magic), magic);
          // q0 is an integer (or +-0): min and max clamp it exactly as the scalar comparisons do, and it was
          // saturated exactly when the clamp changed it.
          const __m256d q = _mm256_min_pd(_mm256_max_pd(q0, lo), hi);
          saturated = _mm256_sub_epi64(saturated, _mm256_castpd_si256(_mm256_cmp_pd(q0, q, _CMP_NEQ_OQ)));
          const __m256d e = _mm256_sub_pd(x[k], _mm256_mul_pd(q, vscale));
          err[k] = _mm256_add_pd(err[k], _mm256_mul_pd(e, e));
        }
      }
    }
    // The step's 4 samples, lanes 0..3. Sampled values beyond FP16's range add +0 (the sums are >= +0: the same as
    // skipping them).
    const __m256d x = _mm256_cvtps_pd(_mm_i32gather_ps(d + i, sampleIndex, 4));
    const __m256d a = _mm256_andnot_pd(signMask, x);
    const __m256d inRange = _mm256_cmp_pd(a, fp16Max, _CMP_LE_OQ);
    const __m256d t = _mm256_mul_pd(veltkamp, x);
    const __m256d normal = _mm256_sub_pd(t, _mm256_sub_pd(t, x));
    const __m256d sub = _mm256_mul_pd(_mm256_round_pd(_mm256_mul_pd(x, toGrid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), step);
    const __m256d r = _mm256_blendv_pd(sub, normal, _mm256_cmp_pd(a, minNormal, _CMP_GE_OQ));
    const __m256d e = _mm256_sub_pd(x, r);
    sampleSig = _mm256_add_pd(sampleSig, _mm256_and_pd(inRange, _mm256_mul_pd(x, x)));
    sampleErr = _mm256_add_pd(sampleErr, _mm256_and_pd(inRange, _mm256_mul_pd(e, e)));
  }
  if (_mm256_movemask_ps(bad) != 0) return false;
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_pd(l.sig + 4 * k, sig[k]);
    _mm256_storeu_pd(l.err + 4 * k, err[k]);
  }
  _mm256_storeu_pd(l.sampleSig, sampleSig);
  _mm256_storeu_pd(l.sampleErr, sampleErr);
  alignas(32) float m[8];
  alignas(32) int32_t o[8];
  alignas(32) int64_t s[4];
  _mm256_store_ps(m, mx);
  _mm256_store_si256(reinterpret_cast<__m256i*>(o), overflow);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), saturated);
  for (int k = 0; k < 8; ++k) {
    l.absMax = double(m[k]) > l.absMax ? double(m[k]) : l.absMax;
    l.overflow += uint32_t(o[k]);
  }
  for (int k = 0; k < 4; ++k) l.saturated += uint64_t(s[k]);
  return true;
}
#endif

// One image's sums over n values delivered block by block: block(from, to) points at values [from, to) (blocks of
// kBlock, from a multiple of kBlock: the lanes (i % 16) and the sample's (i / 8 % 4) read the same elements locally).
template <typename Block>
void NoiseImageBlocks(double* partial, size_t n, double scale, Block block) {
  const bool quant = scale > 0;
  const double inv = quant ? 1.0 / scale : 0;
  Lanes l;
#ifdef TRTCALIB_NOISE_AVX2
  const bool avx2 = HasAvx2();
#endif
  for (size_t from = 0; from < n; from += kBlock) {
    const size_t m = std::min(n, from + kBlock) - from;
    const float* p = block(from, from + m);
    size_t done = 0;
#ifdef TRTCALIB_NOISE_AVX2
    if (avx2 && VectorPart(l, p, m, quant, inv, scale)) done = m & ~size_t(31);
#endif
    ScalarPart(l, p, done, m, quant, inv, scale);
    SamplePart(l, p, done, m);
  }
  partial[0] = Reduce16(l.sig);
  partial[1] = Reduce16(l.err);
  partial[2] = (l.sampleSig[0] + l.sampleSig[1]) + (l.sampleSig[2] + l.sampleSig[3]);
  partial[3] = (l.sampleErr[0] + l.sampleErr[1]) + (l.sampleErr[2] + l.sampleErr[3]);
  partial[4] = l.absMax;
  partial[5] = double(l.overflow);
  partial[6] = double(l.saturated);
  partial[7] = double(n) - double(l.nonFinite);
  partial[8] = double(l.nonFinite);
}

static_assert(kBlock % 32 == 0, "blocks keep the lanes and the sample's lanes of the image");

}  // namespace

void NoiseImage(double* partial, const float* d, size_t n, double scale) {
  NoiseImageBlocks(partial, n, scale, [d](size_t from, size_t) { return d + from; });
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
