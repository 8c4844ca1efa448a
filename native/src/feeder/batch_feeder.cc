#include "feeder/batch_feeder.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

namespace trtcalib {

namespace {

const char* KindName(BatchFeeder::CacheKind kind) {
  return kind == BatchFeeder::CacheKind::kHistogram ? "histogram" : "calibration";
}

std::string Describe(Napi::Value v) {
  if (v.IsTypedArray()) {
    static const char* names[] = {"Int8Array",  "Uint8Array",   "Uint8ClampedArray", "Int16Array",
                                  "Uint16Array", "Int32Array",  "Uint32Array",       "Float32Array",
                                  "Float64Array", "BigInt64Array", "BigUint64Array"};
    auto t = v.As<Napi::TypedArray>();
    int type = static_cast<int>(t.TypedArrayType());
    const char* name = type >= 0 && type < 11 ? names[type] : "typed array";
    return std::string("a ") + name + " of " + std::to_string(t.ElementLength()) + " elements";
  }
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  if (v.IsArray()) return "an Array";
  if (v.IsString()) return "a string";
  if (v.IsNumber()) return "a number";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "an unexpected value";
}

}  // namespace

void BatchFeeder::Validate(const FeederInput& input) {
  if (input.name.empty()) throw std::invalid_argument("the calibration input needs a name");
  if (input.dims.empty()) throw std::invalid_argument("the calibration input \"" + input.name + "\" has no dims");
  std::size_t elements = 1;
  for (int64_t d : input.dims) {
    if (d < 1) {
      throw std::invalid_argument("the calibration dims of \"" + input.name +
                                  "\" must all be fixed and >= 1, but one is " + std::to_string(d));
    }
    if (elements > std::numeric_limits<std::size_t>::max() / sizeof(float) / static_cast<std::size_t>(d)) {
      throw std::invalid_argument("the calibration batch of \"" + input.name + "\" is too large");
    }
    elements *= static_cast<std::size_t>(d);
  }
  // A Float32Array holds at most 2^32 - 1 elements on 64-bit V8 builds we support; refuse more up front.
  if (elements > 0xFFFFFFFFull) throw std::invalid_argument("the calibration batch of \"" + input.name + "\" is too large");
}

BatchFeeder::BatchFeeder(std::shared_ptr<Task> task, FeederInput input, std::unique_ptr<DeviceMemory> memory)
    : task_(std::move(task)), input_(std::move(input)), memory_(std::move(memory)) {
  Validate(input_);
  elements_ = 1;
  for (std::size_t i = 0; i < input_.dims.size(); ++i) {
    elements_ *= static_cast<std::size_t>(input_.dims[i]);
    shape_ += (i ? "x" : "") + std::to_string(input_.dims[i]);
  }
}

BatchFeeder::~BatchFeeder() {
  if (device_ != nullptr) memory_->Release(device_);
}

BatchFeeder::Stats BatchFeeder::GetStats() const {
  Stats copy;
  task_->WithLock([&] { copy = stats_; });
  return copy;
}

uint64_t BatchFeeder::BeginRequest() {
  uint64_t seq = 0;
  task_->Notify([&] {
    seq = ++seq_;
    answer_ = Answer::kNone;
  });
  return seq;
}

bool BatchFeeder::AwaitAnswer(uint64_t seq) {
  return task_->WaitFor([&] { return answeredSeq_ == seq; });
}

void BatchFeeder::Answered(uint64_t seq, Answer answer) {
  task_->Notify([&] {
    if (seq == seq_ && answeredSeq_ != seq) {
      answer_ = answer;
      answeredSeq_ = seq;
    }
  });
}

bool BatchFeeder::IsCurrent(uint64_t seq) const {
  bool current = false;
  task_->WithLock([&] { current = seq == seq_ && answeredSeq_ != seq; });
  return current && !task_->Stopped();
}

void BatchFeeder::FailJs(Napi::Env env, Napi::Value error) {
  TaskJs* js = task_->JsSide();
  if (js != nullptr) task_->FailFromJs(env, *js, error);
}

// ---------------------------------------------------------------- batches

bool BatchFeeder::GetBatch(void* bindings[], const char* names[], int32_t nbBindings) noexcept {
  try {
    std::lock_guard<std::mutex> consumer(consumerMu_);
    if (ended_ || task_->Stopped()) return false;
    int32_t slot = -1;
    for (int32_t i = 0; i < nbBindings; ++i) {
      const char* name = names != nullptr ? names[i] : nullptr;
      if (name != nullptr && input_.name == name) {
        slot = i;
      } else {
        task_->FailNative(std::string("TensorRT asked for calibration data for input \"") + (name ? name : "?") +
                          "\", but the dataset feeds \"" + input_.name +
                          "\" only: a model with several inputs cannot be calibrated from one image folder");
        return false;
      }
    }
    if (slot < 0) {
      task_->FailNative("TensorRT asked for no input at all in getBatch; expected \"" + input_.name + "\"");
      return false;
    }
    uint64_t seq = BeginRequest();
    std::shared_ptr<BatchFeeder> self = shared_from_this();
    if (!task_->PostToJs([self, seq](Napi::Env env, TaskJs& js) { self->RequestBatchOnJs(env, js, seq); })) {
      task_->FailNative("JavaScript stopped before the calibration batches were read");
      return false;
    }
    if (!AwaitAnswer(seq)) return false;  // cancelled or failed: TensorRT sees the end of the data
    Answer answer = Answer::kNone;
    task_->WithLock([&] { answer = answer_; });
    if (answer == Answer::kNoSource) {  // no nextBatch callback: a cache-only build
      task_->WithLock([&] { stats_.batchRequestedWithoutSource = true; });
      ended_ = true;
      return false;
    }
    if (answer != Answer::kBatch) {
      ended_ = true;
      return false;
    }
    std::string error;
    if (device_ == nullptr) {
      device_ = memory_->Allocate(BatchBytes(), error);
      if (device_ == nullptr) {
        task_->FailNative("could not allocate the calibration batch buffer (" + shape_ + " float32): " + error);
        return false;
      }
    }
    // staging_ is not written again until the next request: the answer for `seq` has been taken.
    if (!memory_->CopyToDevice(device_, staging_.data(), BatchBytes(), error)) {
      task_->FailNative("could not copy a calibration batch to the device: " + error);
      return false;
    }
    bindings[slot] = device_;
    task_->WithLock([&] { ++stats_.batches; });
    return true;
  } catch (const std::exception& e) {
    task_->FailNative(std::string("internal error in getBatch: ") + e.what());
    return false;
  } catch (...) {
    task_->FailNative("internal error in getBatch");
    return false;
  }
}

void BatchFeeder::RequestBatchOnJs(Napi::Env env, TaskJs& js, uint64_t seq) {
  if (!IsCurrent(seq)) return;
  Napi::Function next = js.Callback("nextBatch");
  if (next.IsEmpty()) {
    Answered(seq, Answer::kNoSource);
    return;
  }
  std::shared_ptr<BatchFeeder> self = shared_from_this();
  CallAndSettle(
      env, next, {}, [self, seq](Napi::Env e, Napi::Value v) { self->AcceptBatch(e, seq, v); },
      [self](Napi::Env e, Napi::Value error) { self->FailJs(e, error); });
}

void BatchFeeder::AcceptBatch(Napi::Env env, uint64_t seq, Napi::Value value) {
  if (!IsCurrent(seq)) return;  // a late answer after a cancel or an error
  if (value.IsNull() || value.IsUndefined()) {
    Answered(seq, Answer::kEnd);
    return;
  }
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      value.As<Napi::TypedArray>().ElementLength() != elements_) {
    int64_t index = 0;
    task_->WithLock([&] { index = stats_.batches; });
    FailJs(env, Napi::TypeError::New(env, "Expected a Float32Array of " + std::to_string(elements_) +
                                              " elements (" + shape_ + ") or null for calibration batch " +
                                              std::to_string(index) + " of input \"" + input_.name +
                                              "\" but received " + Describe(value))
                    .Value());
    return;
  }
  auto array = value.As<Napi::Float32Array>();
  task_->Notify([&] {
    if (seq != seq_ || answeredSeq_ == seq) return;
    staging_.resize(elements_);
    std::memcpy(staging_.data(), array.Data(), elements_ * sizeof(float));
    answer_ = Answer::kBatch;
    answeredSeq_ = seq;
  });
}

// ---------------------------------------------------------------- caches

const void* BatchFeeder::ReadCache(CacheKind kind, std::size_t& length) noexcept {
  length = 0;
  try {
    std::lock_guard<std::mutex> consumer(consumerMu_);
    if (task_->Stopped()) return nullptr;
    uint64_t seq = BeginRequest();
    std::shared_ptr<BatchFeeder> self = shared_from_this();
    if (!task_->PostToJs([self, seq, kind](Napi::Env env, TaskJs& js) { self->RequestCacheOnJs(env, js, seq, kind); })) {
      task_->FailNative("JavaScript stopped before the calibration cache was read");
      return nullptr;
    }
    if (!AwaitAnswer(seq)) return nullptr;
    const void* data = nullptr;
    task_->WithLock([&] {
      if (answer_ == Answer::kCache && !cacheBuffers_.empty()) {
        data = cacheBuffers_.back().data();
        length = cacheBuffers_.back().size();
        ++stats_.cacheReads;
        stats_.cacheBytesRead += length;
      }
    });
    return length > 0 ? data : nullptr;
  } catch (const std::exception& e) {
    task_->FailNative(std::string("internal error in readCalibrationCache: ") + e.what());
    length = 0;
    return nullptr;
  }
}

void BatchFeeder::RequestCacheOnJs(Napi::Env env, TaskJs& js, uint64_t seq, CacheKind kind) {
  if (!IsCurrent(seq)) return;
  Napi::Function read = js.Callback("readCache");
  if (read.IsEmpty()) {
    Answered(seq, Answer::kNoCache);
    return;
  }
  std::shared_ptr<BatchFeeder> self = shared_from_this();
  CallAndSettle(
      env, read, {Napi::String::New(env, KindName(kind))},
      [self, seq, kind](Napi::Env e, Napi::Value v) { self->AcceptCache(e, seq, v, kind); },
      [self](Napi::Env e, Napi::Value error) { self->FailJs(e, error); });
}

void BatchFeeder::AcceptCache(Napi::Env env, uint64_t seq, Napi::Value value, CacheKind kind) {
  if (!IsCurrent(seq)) return;
  if (value.IsNull() || value.IsUndefined()) {
    Answered(seq, Answer::kNoCache);
    return;
  }
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    FailJs(env, Napi::TypeError::New(env, std::string("Expected a Uint8Array or null from readCache(\"") +
                                              KindName(kind) + "\") but received " + Describe(value))
                    .Value());
    return;
  }
  auto bytes = value.As<Napi::Uint8Array>();
  const uint8_t* data = bytes.Data();
  std::size_t size = bytes.ByteLength();
  task_->Notify([&] {
    if (seq != seq_ || answeredSeq_ == seq) return;
    if (size == 0) {
      answer_ = Answer::kNoCache;
    } else {
      cacheBuffers_.emplace_back(data, data + size);
      answer_ = Answer::kCache;
    }
    answeredSeq_ = seq;
  });
}

void BatchFeeder::WriteCache(CacheKind kind, const void* data, std::size_t length) noexcept {
  try {
    std::lock_guard<std::mutex> consumer(consumerMu_);
    if (task_->Stopped() || data == nullptr) return;
    auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data),
                                                        static_cast<const uint8_t*>(data) + length);
    uint64_t seq = BeginRequest();
    std::shared_ptr<BatchFeeder> self = shared_from_this();
    if (!task_->PostToJs([self, seq, kind, bytes](Napi::Env env, TaskJs& js) {
          self->WriteCacheOnJs(env, js, seq, kind, bytes);
        })) {
      task_->FailNative("JavaScript stopped before the calibration cache was written");
      return;
    }
    // Wait for the write (a file, usually) so that a failed write fails the build instead of being lost.
    if (!AwaitAnswer(seq)) return;
    task_->WithLock([&] {
      if (answer_ == Answer::kWritten) {
        ++stats_.cacheWrites;
        stats_.cacheBytesWritten += length;
      }
    });
  } catch (const std::exception& e) {
    task_->FailNative(std::string("internal error in writeCalibrationCache: ") + e.what());
  }
}

void BatchFeeder::WriteCacheOnJs(Napi::Env env, TaskJs& js, uint64_t seq, CacheKind kind,
                                 std::shared_ptr<std::vector<uint8_t>> bytes) {
  if (!IsCurrent(seq)) return;
  Napi::Function write = js.Callback("writeCache");
  if (write.IsEmpty()) {
    Answered(seq, Answer::kNoCache);
    return;
  }
  Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::Copy(env, bytes->data(), bytes->size());
  std::shared_ptr<BatchFeeder> self = shared_from_this();
  CallAndSettle(
      env, write, {buffer, Napi::String::New(env, KindName(kind))},
      [self, seq](Napi::Env, Napi::Value) { self->Answered(seq, Answer::kWritten); },
      [self](Napi::Env e, Napi::Value error) { self->FailJs(e, error); });
}

}  // namespace trtcalib
