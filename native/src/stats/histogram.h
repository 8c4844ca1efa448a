// Activation statistics of one tensor: the pure C++ core, no N-API (runs on worker threads).
//
// State layout (shared with src/stats/collector.ts, which owns the memory as two Float64Arrays):
//   header[0] count        finite values seen
//   header[1] nanCount
//   header[2] posInfCount
//   header[3] negInfCount
//   header[4] zeroCount    values == 0 (+0 or -0); also counted in hist[0]
//   header[5] min          over finite values (+inf when none)
//   header[6] max          over finite values (-inf when none)
//   header[7] absMax       max |x| over finite values (0 when none)
//   header[8] range        0, or the smallest power of two strictly greater than absMax
//   hist[bins]             counts of |x| in [i*range/bins, (i+1)*range/bins); bins is a power of two
//
// Every count is an integer held in a double (exact up to 2^53). Bin indices are computed exactly
// (|x| * bins / range is a multiplication by a power of two) and widening the range merges bins in pairs,
// so the result depends only on the multiset of values: not on batch size, order, or thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace trtcalib {

enum HeaderField : int {
  kCount = 0,
  kNanCount = 1,
  kPosInfCount = 2,
  kNegInfCount = 3,
  kZeroCount = 4,
  kMin = 5,
  kMax = 6,
  kAbsMax = 7,
  kRange = 8,
  kHeaderSize = 9,
};

// Adds n float32 values to the state. `bins` must be a power of two in [2, 2^24].
void AccumulateFloat32(double* header, double* hist, uint32_t bins, const float* data, size_t n);
// Adds clamp(x, lo, hi) for n float32 values x (NaN stays NaN): the statistics of Clip(x, lo, hi) or Relu(x)
// (lo 0, hi +inf) counted from x itself, value for value the same as counting the op's output.
void AccumulateFloat32Clamped(double* header, double* hist, uint32_t bins, const float* data, size_t n, float lo, float hi);
// Both at once, reading the data once: x into (header, hist) and clamp(x, lo, hi) into (clampHeader, clampHist),
// each state exactly as the two calls above would leave it. Each value is binned once.
void AccumulateFloat32WithClamp(double* header, double* hist, double* clampHeader, double* clampHist, uint32_t bins, const float* data, size_t n, float lo, float hi);
// Adds n zeros (a constant-0 Pad's padding): the same state as counting n zero values.
void AccumulateZeros(double* header, double* hist, uint64_t n);
// Adds n IEEE half-precision values (raw 16-bit patterns) to the state.
void AccumulateFloat16(double* header, double* hist, uint32_t bins, const uint16_t* data, size_t n);

// Widens the state's range to newRange (a power of two >= the current range) by merging bins exactly.
void GrowRange(double* header, double* hist, uint32_t bins, double newRange);

// Adds the state (fromHeader, fromHist) into (header, hist): the state that counting both states' values into one
// would have left (every field is a count, a min/max or a range that widens by merging bins exactly).
void MergeState(double* header, double* hist, const double* fromHeader, const double* fromHist, uint32_t bins);

// The smallest power of two strictly greater than absMax (0 for absMax == 0).
double RangeFor(double absMax);

float HalfToFloat(uint16_t h);

}  // namespace trtcalib
