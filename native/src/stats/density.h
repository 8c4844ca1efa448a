// percentile and mse amax of src/calibrators/{density,percentile,mse}.ts in C++, operation for operation the same
// (so the same doubles: no fused multiply-add, the same order of every sum), to run on worker threads. The
// TypeScript files document the method; this is the arithmetic only.
#pragma once
#include <cstdint>
#include <vector>

namespace trtcalib {

struct HistogramFields {
  double count;
  double zeroCount;
  double absMax;
  double range;
  const double* hist;
  uint32_t bins;
};

class HistogramDensity {
 public:
  explicit HistogramDensity(const HistogramFields& s);
  // [count, sum x, sum x^2] of the non-zero values below t (t >= 0).
  void Moments(double t, double out[3]) const;
  double Quantile(double rank, double zeroCount) const;
  double nonZero() const { return nonZero_; }

 private:
  double Lo(int b) const { return b * width_; }
  double Hi(int b) const { return b == top_ ? absMax_ : (b + 1) * width_; }
  double absMax_;
  double width_;
  int top_;
  double nonZero_ = 0;
  std::vector<double> n_, p0_, p1_, p2_;
};

double PercentileAmax(const HistogramFields& s, double percentile, const HistogramDensity& d);
double MseAmax(const HistogramFields& s, const HistogramDensity& d, double qmax, int candidates, int startBin);

}  // namespace trtcalib
