#include "stats/density.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trtcalib {

HistogramDensity::HistogramDensity(const HistogramFields& s) : absMax_(s.absMax) {
  width_ = s.range / s.bins;
  top_ = s.absMax > 0 ? int(std::floor((s.absMax * s.bins) / s.range)) : 0;
  const int used = top_ + 1;
  n_.assign(used, 0.0);
  for (int b = 0; b < used; b++) n_[b] = s.hist[b];
  n_[0] -= s.zeroCount;
  p0_.assign(used + 1, 0.0);
  p1_.assign(used + 1, 0.0);
  p2_.assign(used + 1, 0.0);
  double nonZero = 0;
  for (int b = 0; b < used; b++) {
    const double c = n_[b];
    const double lo = Lo(b);
    const double hi = Hi(b);
    const double mid = (lo + hi) / 2;
    const double w = hi - lo;
    p0_[b + 1] = p0_[b] + c;
    p1_[b + 1] = p1_[b] + c * mid;
    p2_[b + 1] = p2_[b] + c * (mid * mid + (w * w) / 12);
    nonZero += c;
  }
  nonZero_ = nonZero;
}

void HistogramDensity::Moments(double t, double out[3]) const {
  if (!(absMax_ > 0) || t <= 0) {
    out[0] = out[1] = out[2] = 0;
    return;
  }
  if (t >= absMax_) {
    const int u = top_ + 1;
    out[0] = p0_[u];
    out[1] = p1_[u];
    out[2] = p2_[u];
    return;
  }
  const int b = int(std::min(double(top_), std::floor(t / width_)));
  double m0 = p0_[b];
  double m1 = p1_[b];
  double m2 = p2_[b];
  const double c = n_[b];
  const double lo = Lo(b);
  const double hi = Hi(b);
  if (c > 0 && hi > lo && t > lo) {
    const double f = (t - lo) / (hi - lo);
    const double part = c * f;
    m0 += part;
    m1 += (part * (lo + t)) / 2;
    m2 += (part * (lo * lo + lo * t + t * t)) / 3;
  }
  out[0] = m0;
  out[1] = m1;
  out[2] = m2;
}

double HistogramDensity::Quantile(double rank, double zeroCount) const {
  if (rank <= zeroCount || !(absMax_ > 0)) return 0;
  double cum = zeroCount;
  for (int b = 0; b <= top_; b++) {
    const double c = n_[b];
    if (c > 0 && cum + c >= rank) {
      const double lo = Lo(b);
      const double hi = Hi(b);
      const double f = (rank - cum) / c;
      return f >= 1 ? hi : lo + f * (hi - lo);
    }
    cum += c;
  }
  return absMax_;
}

double PercentileAmax(const HistogramFields& s, double p, const HistogramDensity& d) {
  if (s.count == 0 || !(s.absMax > 0)) return 0;
  if (p == 100) return s.absMax;
  const double rank = (s.count * p) / 100;
  if (rank <= s.zeroCount) return d.Quantile(s.zeroCount + (d.nonZero() * p) / 100, s.zeroCount);
  return d.Quantile(rank, s.zeroCount);
}

double MseAmax(const HistogramFields& s, const HistogramDensity& d, double qmax, int candidates, int startBin) {
  if (s.count == 0 || !(s.absMax > 0)) return 0;
  double best = std::numeric_limits<double>::infinity();
  double amax = s.absMax;
  double all[3], low[3], high[3];
  d.Moments(std::numeric_limits<double>::infinity(), all);
  for (int i = startBin; i <= candidates; i++) {
    const double A = (i * s.absMax) / candidates;
    // expectedSquaredError (src/calibrators/mse.ts)
    const double st = A / qmax;
    d.Moments(st / 2, low);
    d.Moments(A - st / 2, high);
    const double rounding = ((st * st) / 12) * (high[0] - low[0]);
    const double c0 = all[0] - high[0];
    const double c1 = all[1] - high[1];
    const double c2 = all[2] - high[2];
    const double clipping = c2 - 2 * A * c1 + A * A * c0;
    // Math.max(0, clipping) in mse.ts: NaN stays NaN
    const double e = low[2] + rounding + (clipping != clipping ? clipping : std::max(0.0, clipping));
    if (e < best) {
      best = e;
      amax = A;
    }
  }
  return amax;
}

}  // namespace trtcalib
