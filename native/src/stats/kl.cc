// KL-divergence scan over a histogram (see src/calibrators/kl.ts for the method and the derivation):
//   KL_i = (1/T) sum_j P_j log(P_j / Q_j) + log(S_i / T), and inside a level Q_j is constant, so each level costs
//   O(1) from prefix sums of h, h log h and the count of non-empty bins.
#include "stats/kl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace trtcalib {

int KlScan(const double* hist, int n, const KlSpec& spec, double* out) {
  const int L = spec.levels;
  const int count = n - spec.startBin + 1;
  std::vector<double> S(n + 1, 0.0), C(n + 1, 0.0), R(n + 1, 0.0);
  std::vector<int> Z(n + 1, 0);
  for (int j = 0; j < n; ++j) {
    const double h = hist[j];
    S[j + 1] = S[j] + h;
    C[j + 1] = C[j] + (h > 0 ? h * std::log(h) : 0.0);
    Z[j + 1] = Z[j] + (h > 0 ? 1 : 0);
  }
  for (int j = n - 1; j >= 0; --j) R[j] = R[j + 1] + hist[j];
  std::vector<double> local;
  double* div = out;
  if (!div) {
    local.assign(count, 0.0);
    div = local.data();
  }
  const double T = S[n];
  if (T == 0) {
    for (int k = 0; k < count; ++k) div[k] = 0;
    return n;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto g = [&](int s, int e) -> double {
    const double M = S[e] - S[s];
    return M > 0 ? M * std::log(M / (Z[e] - Z[s])) : 0.0;
  };
  // remainder-last: the levels before the last depend only on m = floor(i/L)
  std::vector<double> byWidth;
  // proportional: g tabulated by (length, start) up front. For candidate i the level lengths are floor(i/L) and
  // floor(i/L) + 1, so a level of length len starts below min(n, (len + 1) * L): only those entries are computed.
  const int maxLen = n / L + 1;
  std::vector<double> table;
  if (spec.proportional) {
    table.assign(size_t(maxLen + 1) * (n + 1), 0.0);
    for (int len = 1; len <= maxLen; ++len) {
      const int end = std::min(n, (len + 1) * L);
      double* row = table.data() + size_t(len) * (n + 1);
      for (int st = 0; st + len <= end; ++st) row[st] = g(st, st + len);
    }
  } else {
    byWidth.assign(n / L + 1, nan);
  }
  // proportional: the sum over the levels before the last for every candidate at once, level by level, so that
  // consecutive candidates read neighbouring table entries; each candidate's sum runs over l in order (as kl.ts).
  std::vector<double> nonLast;
  if (spec.proportional) {
    nonLast.assign(count, 0.0);
    for (int l = 1; l < L; ++l) {
      // bounds ceil(l'*i/L) = floor((l'*i + L - 1) / L) for l' = l-1 (start) and l (end), stepped along i
      const int ns = (l - 1) * spec.startBin + L - 1, ne = l * spec.startBin + L - 1;
      int sq = ns / L, sr = ns % L, eq = ne / L, er = ne % L;
      for (int k = 0; k < count; ++k) {
        nonLast[k] += table[size_t(eq - sq) * (n + 1) + sq];
        // carries without branches: their pattern has a period of up to L steps, too long to predict
        sr += l - 1;
        if (sr >= L) {
          ++sq;
          sr -= L;
        }
        er += l;
        if (er >= L) {
          ++eq;
          er -= L;
        }
      }
    }
  }
  auto nonLastSum = [&](int i) -> double {
    if (spec.proportional) return nonLast[i - spec.startBin];
    const int m = i / L;
    double v = byWidth[m];
    if (std::isnan(v)) {
      v = 0;
      for (int l = 0; l < L - 1; ++l) v += g(l * m, (l + 1) * m);
      byWidth[m] = v;
    }
    return v;
  };

  for (int i = spec.startBin; i <= n; ++i) {
    const int sL = spec.proportional ? ((L - 1) * i + L - 1) / L : (L - 1) * (i / L);
    const double outliers = R[i];
    const double hLast = hist[i - 1];
    const double pLast = hLast + outliers;
    const double massLast = S[i] - S[sL];
    double divergence;
    if (S[i] == 0) {
      divergence = inf;
    } else {
      const int kLast = spec.histogramMask ? Z[i] - Z[sL] : Z[i - 1] - Z[sL] + (pLast > 0 ? 1 : 0);
      const double logQ = massLast > 0 && kLast > 0 ? std::log(massLast / kLast) : 0.0;
      const double inner = S[i - 1] - S[sL];
      double lastTerm = inner > 0 ? C[i - 1] - C[sL] - inner * logQ : 0.0;
      if (pLast > 0) {
        const bool lastQEmpty = spec.histogramMask ? hLast == 0 : massLast == 0;
        if (!lastQEmpty) lastTerm += pLast * (std::log(pLast) - logQ);
        else if (spec.hasEmptyQ) lastTerm += pLast * std::log(pLast / spec.emptyQ);
        else lastTerm = inf;
      }
      const double sumPLogPOverQ = C[sL] - nonLastSum(i) + lastTerm;
      divergence = sumPLogPOverQ / T + std::log(S[i] / T);
    }
    div[i - spec.startBin] = divergence;
  }
  // ties: every divergence within kKlTieTolerance of the minimum
  double mn = inf;
  for (int k = 0; k < count; ++k) if (div[k] < mn) mn = div[k];
  if (mn == inf) return n;
  const double limit = mn + kKlTieTolerance;
  if (!spec.largestOnTie) {
    for (int k = 0; k < count; ++k) if (div[k] <= limit) return k + spec.startBin;
  } else {
    for (int k = count - 1; k >= 0; --k) if (div[k] <= limit) return k + spec.startBin;
  }
  return n;
}

}  // namespace trtcalib
