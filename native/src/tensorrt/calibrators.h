// TensorRT's calibrator interfaces as thin adapters over the BatchFeeder (native/src/feeder): every call is
// forwarded as is, so all the behaviour (cross-thread batches, device buffers, opaque cache bytes, errors,
// cancellation) is the feeder's, tested without TensorRT. One class per TensorRT algorithm, chosen by --algo:
//   entropy2 -> IInt8EntropyCalibrator2 (TensorRT's default and DLA's only one)
//   entropy  -> IInt8EntropyCalibrator (legacy entropy)
//   minmax   -> IInt8MinMaxCalibrator
//   legacy   -> IInt8LegacyCalibrator (quantile and regression cutoff; histogram cache)
// Compiled only for TensorRT 8.x-10.x: TensorRT 11 has no calibrators (TRTCALIB_IMPLICIT_QUANT).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "feeder/batch_feeder.h"
#include "tensorrt/trt_api.h"

#if TRTCALIB_IMPLICIT_QUANT

namespace trtcalib {

TRTCALIB_ALLOW_DEPRECATED_BEGIN

template <typename Base>
class FeederCalibrator : public Base {
 public:
  explicit FeederCalibrator(std::shared_ptr<BatchFeeder> feeder) : feeder_(std::move(feeder)) {}

  int32_t getBatchSize() const noexcept override { return feeder_->GetBatchSize(); }
  bool getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept override {
    return feeder_->GetBatch(bindings, names, nbBindings);
  }
  void const* readCalibrationCache(std::size_t& length) noexcept override {
    return feeder_->ReadCache(BatchFeeder::CacheKind::kCalibration, length);
  }
  void writeCalibrationCache(void const* ptr, std::size_t length) noexcept override {
    feeder_->WriteCache(BatchFeeder::CacheKind::kCalibration, ptr, length);
  }

 protected:
  std::shared_ptr<BatchFeeder> feeder_;
};

using EntropyCalibrator2 = FeederCalibrator<nvinfer1::IInt8EntropyCalibrator2>;
using EntropyCalibrator = FeederCalibrator<nvinfer1::IInt8EntropyCalibrator>;
using MinMaxCalibrator = FeederCalibrator<nvinfer1::IInt8MinMaxCalibrator>;

class LegacyCalibrator final : public FeederCalibrator<nvinfer1::IInt8LegacyCalibrator> {
 public:
  LegacyCalibrator(std::shared_ptr<BatchFeeder> feeder, double quantile, double regressionCutoff)
      : FeederCalibrator(std::move(feeder)), quantile_(quantile), regressionCutoff_(regressionCutoff) {}
  double getQuantile() const noexcept override { return quantile_; }
  double getRegressionCutoff() const noexcept override { return regressionCutoff_; }
  void const* readHistogramCache(std::size_t& length) noexcept override {
    return feeder_->ReadCache(BatchFeeder::CacheKind::kHistogram, length);
  }
  void writeHistogramCache(void const* ptr, std::size_t length) noexcept override {
    feeder_->WriteCache(BatchFeeder::CacheKind::kHistogram, ptr, length);
  }

 private:
  double quantile_;
  double regressionCutoff_;
};

// algorithm: entropy2 | entropy | minmax | legacy. Throws std::invalid_argument for anything else.
inline std::unique_ptr<nvinfer1::IInt8Calibrator> MakeCalibrator(const std::string& algorithm,
                                                                 std::shared_ptr<BatchFeeder> feeder,
                                                                 double quantile, double regressionCutoff) {
  if (algorithm == "entropy2") return std::make_unique<EntropyCalibrator2>(std::move(feeder));
  if (algorithm == "entropy") return std::make_unique<EntropyCalibrator>(std::move(feeder));
  if (algorithm == "minmax") return std::make_unique<MinMaxCalibrator>(std::move(feeder));
  if (algorithm == "legacy") return std::make_unique<LegacyCalibrator>(std::move(feeder), quantile, regressionCutoff);
  throw std::invalid_argument("unknown TensorRT calibration algorithm \"" + algorithm +
                              "\" (expected entropy2, entropy, minmax or legacy)");
}

TRTCALIB_ALLOW_DEPRECATED_END

}  // namespace trtcalib

#endif  // TRTCALIB_IMPLICIT_QUANT
