// Quantization noise sums of one image's float32 values: src/sensitivity/noise.ts TensorNoise.add, bit for bit.
#pragma once
#include <cstddef>

namespace trtcalib {

// Sums: [signal, int8Noise, fp16SampleSignal, fp16Noise, absMax, fp16Overflow, saturated, count, nonFinite].
// scale <= 0 (or NaN) measures FP16 and the range only.
constexpr size_t kNoiseSums = 9;
// One image's sums, from zero, into `partial` (independent of every other image: images can be summed on
// several threads and merged in order).
void NoiseImage(double* partial, const float* data, size_t n, double scale);
// Adds one image's partial sums into the totals: sums first, then the maximum and the counts.
void MergeNoise(double* sums, const double* partial);
// NoiseImage then MergeNoise.
void NoiseSums(double* sums, const float* data, size_t n, double scale);

}  // namespace trtcalib
