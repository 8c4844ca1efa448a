// KL-divergence threshold scan (entropy calibrators): the C++ twin of src/calibrators/kl.ts `klScan`, same
// operations in the same order, so the divergences agree with the TypeScript ones up to the last bits of `log`.
#pragma once
#include <cstddef>

namespace trtcalib {

struct KlSpec {
  bool proportional = false;   // level of bin j = floor(levels*j/i); else floor(i/levels) bins, remainder last
  bool histogramMask = false;  // empty bins are the histogram's; else those of P (outliers folded)
  bool largestOnTie = false;   // among ties the largest i; else the smallest
  int levels = 128;
  int startBin = 128;
  bool hasEmptyQ = false;  // Q = 0 where P > 0: emptyQ counts instead of +Infinity
  double emptyQ = 0;
};

constexpr double kKlTieTolerance = 1e-12;

// Returns the chosen number of bins i in [startBin, n]; fills divergences[i - startBin] when not null.
int KlScan(const double* hist, int n, const KlSpec& spec, double* divergences);

}  // namespace trtcalib
