// The TensorRT-independent half of the calibrator: everything IInt8Calibrator needs except TensorRT's types.
//
// A consumer thread (TensorRT's builder thread, or the self-test's thread that imitates it) calls GetBatch /
// ReadCache / WriteCache exactly as TensorRT calls getBatch / readCalibrationCache / writeCalibrationCache. Each
// call posts a request to JavaScript (the Task's thread-safe function) and blocks until JavaScript answers:
//   nextBatch()           -> Float32Array of exactly BatchElements() values, or null at the end (may be a Promise)
//   readCache(kind)       -> Uint8Array / Buffer, or null when there is none (may be a Promise)
//   writeCache(bytes, kind) -> anything; a Promise is awaited so that a failed write fails the build
// kind is "calibration" or "histogram" (IInt8LegacyCalibrator's histogram cache).
//
// The JS thread copies an answer into buffers the feeder owns (never the other way round: the consumer never
// touches a JS value); the consumer then copies the batch to the device through a DeviceMemory (CUDA for TensorRT,
// host memory in the tests). Cache bytes are opaque here, as in Polygraphy's calibrator: the bytes JavaScript gives
// are the bytes TensorRT reads, and the bytes TensorRT writes are the bytes JavaScript receives.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "feeder/device_memory.h"
#include "feeder/task.h"

namespace trtcalib {

struct FeederInput {
  std::string name;
  // Dims of one full batch, N first (e.g. 8x3x224x224). Every batch has exactly this shape: TensorRT calibrates
  // on the fixed shape of the calibration profile, so the dataset's last partial batch is dropped by the caller.
  std::vector<int64_t> dims;
  // What GetBatchSize() answers. TensorRT only used it for implicit-batch networks (gone in 10.0); for the
  // explicit-batch networks the ONNX parser makes, Polygraphy answers 1 and so does the TensorRT adapter.
  int32_t reportedBatchSize = 1;
};

class BatchFeeder : public std::enable_shared_from_this<BatchFeeder> {
 public:
  enum class CacheKind { kCalibration, kHistogram };

  struct Stats {
    int64_t batches = 0;            // batches handed to the consumer
    int64_t cacheReads = 0;         // ReadCache calls that returned bytes
    std::size_t cacheBytesRead = 0;
    int64_t cacheWrites = 0;
    std::size_t cacheBytesWritten = 0;
    bool batchRequestedWithoutSource = false;  // GetBatch was called but no nextBatch callback was given
  };

  // JS thread or any thread: nothing is called yet. `memory` does the device side.
  BatchFeeder(std::shared_ptr<Task> task, FeederInput input, std::unique_ptr<DeviceMemory> memory);
  ~BatchFeeder();
  BatchFeeder(const BatchFeeder&) = delete;
  BatchFeeder& operator=(const BatchFeeder&) = delete;

  // Throws std::invalid_argument when the input is unusable (no name, a dim < 1, too large).
  static void Validate(const FeederInput& input);

  // --- consumer thread: the IInt8Calibrator contract; never throws, never touches JS ---
  int32_t GetBatchSize() const noexcept { return input_.reportedBatchSize; }
  // Fills bindings[i] for the input named names[i]; false at the end of the data, on a JS error and on cancel.
  bool GetBatch(void* bindings[], const char* names[], int32_t nbBindings) noexcept;
  // The bytes JavaScript gave, kept alive until the feeder dies; nullptr (length 0) when there are none.
  const void* ReadCache(CacheKind kind, std::size_t& length) noexcept;
  void WriteCache(CacheKind kind, const void* data, std::size_t length) noexcept;

  Stats GetStats() const;
  const FeederInput& Input() const noexcept { return input_; }
  std::size_t BatchElements() const noexcept { return elements_; }
  std::size_t BatchBytes() const noexcept { return elements_ * sizeof(float); }
  // The device buffer that received the last batch (the self-test reads it back through host memory).
  const void* DeviceBuffer() const noexcept { return device_; }
  const char* MemoryKind() const noexcept { return memory_->Kind(); }

 private:
  enum class Answer { kNone, kBatch, kEnd, kNoSource, kCache, kNoCache, kWritten };

  uint64_t BeginRequest();
  bool AwaitAnswer(uint64_t seq);
  void Answered(uint64_t seq, Answer answer);
  bool IsCurrent(uint64_t seq) const;  // JS thread; takes the task's lock

  // JS thread handlers.
  void RequestBatchOnJs(Napi::Env env, TaskJs& js, uint64_t seq);
  void AcceptBatch(Napi::Env env, uint64_t seq, Napi::Value value);
  void RequestCacheOnJs(Napi::Env env, TaskJs& js, uint64_t seq, CacheKind kind);
  void AcceptCache(Napi::Env env, uint64_t seq, Napi::Value value, CacheKind kind);
  void WriteCacheOnJs(Napi::Env env, TaskJs& js, uint64_t seq, CacheKind kind,
                      std::shared_ptr<std::vector<uint8_t>> bytes);
  void FailJs(Napi::Env env, Napi::Value error);

  std::shared_ptr<Task> task_;
  FeederInput input_;
  std::unique_ptr<DeviceMemory> memory_;
  std::size_t elements_ = 0;
  std::string shape_;  // "8x3x224x224", for messages

  std::mutex consumerMu_;  // one consumer call at a time
  void* device_ = nullptr;  // consumer thread only
  bool ended_ = false;      // consumer thread only

  // Guarded by the task's lock.
  uint64_t seq_ = 0;
  uint64_t answeredSeq_ = 0;
  Answer answer_ = Answer::kNone;
  std::vector<float> staging_;                      // the batch JS gave, copied on the JS thread
  std::list<std::vector<uint8_t>> cacheBuffers_;    // every cache read, kept alive for TensorRT
  Stats stats_;
};

}  // namespace trtcalib
