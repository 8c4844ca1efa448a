// feederSelfTest: the test-only entry point that drives the batch feeder exactly as TensorRT drives an
// IInt8Calibrator during buildSerializedNetwork, from a thread that is not the JS thread:
//   getBatchSize(); readCalibrationCache(); getBatch() until it returns false (unless a cache was read, in which
//   case TensorRT skips calibration); writeCalibrationCache(bytes).
// It uses host memory as "device" memory, so that CI (no GPU, no TensorRT) runs the same feeder code the
// TensorRT bridge runs, and it reports what reached that memory (a checksum per batch) so that the tests can check
// that each batch arrived intact and in order. Always built, whether TensorRT was found or not.
#include "feeder/feeder_binding.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "feeder/batch_feeder.h"
#include "feeder/device_memory.h"
#include "feeder/js_args.h"
#include "feeder/task.h"

namespace trtcalib {

namespace {

struct BatchRecord {
  std::string checksum;  // FNV-1a 64 of the batch's bytes, as 16 hex digits
  double sum = 0;
  std::size_t elements = 0;
};

struct SelfTestLog {
  int32_t batchSize = 0;
  bool cacheWasRead = false;
  std::vector<uint8_t> cacheRead;
  std::vector<BatchRecord> batches;
  bool calibrated = false;  // getBatch loop ran (no cache accepted)
  BatchFeeder::Stats stats;
  std::string memory;
};

std::string Fnv1a64(const uint8_t* data, std::size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

// Runs on the worker thread: the calls TensorRT makes, in TensorRT's order.
TaskOutcome RunLikeTensorRT(Task& task, std::shared_ptr<BatchFeeder> feeder, std::vector<std::string> bindingNames,
                            std::shared_ptr<std::vector<uint8_t>> cacheToWrite, bool useCacheIfPresent) {
  auto log = std::make_shared<SelfTestLog>();
  log->memory = feeder->MemoryKind();
  log->batchSize = feeder->GetBatchSize();

  std::size_t length = 0;
  const void* cache = feeder->ReadCache(BatchFeeder::CacheKind::kCalibration, length);
  if (cache != nullptr) {
    log->cacheWasRead = true;
    log->cacheRead.assign(static_cast<const uint8_t*>(cache), static_cast<const uint8_t*>(cache) + length);
  }

  if (cache == nullptr || !useCacheIfPresent) {
    log->calibrated = true;
    std::vector<const char*> names;
    for (const auto& n : bindingNames) names.push_back(n.c_str());
    std::vector<void*> bindings(names.size(), nullptr);
    while (feeder->GetBatch(bindings.data(), names.data(), static_cast<int32_t>(names.size()))) {
      // The feeder's memory is host memory here: read back what reached "the device".
      const auto* bytes = static_cast<const uint8_t*>(bindings[0]);
      const auto* floats = static_cast<const float*>(bindings[0]);
      BatchRecord record;
      record.elements = feeder->BatchElements();
      record.checksum = Fnv1a64(bytes, feeder->BatchBytes());
      for (std::size_t i = 0; i < record.elements; ++i) record.sum += floats[i];
      log->batches.push_back(std::move(record));
    }
  }

  // TensorRT writes the cache only after a calibration that went through; so does the imitation.
  if (!task.Stopped() && cacheToWrite) {
    feeder->WriteCache(BatchFeeder::CacheKind::kCalibration, cacheToWrite->data(), cacheToWrite->size());
  }
  log->stats = feeder->GetStats();

  TaskOutcome outcome;
  outcome.result = [log](Napi::Env env) -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("batchSize", Napi::Number::New(env, log->batchSize));
    out.Set("memory", Napi::String::New(env, log->memory));
    out.Set("cacheRead", log->cacheWasRead
                             ? Napi::Value(Napi::Buffer<uint8_t>::Copy(env, log->cacheRead.data(), log->cacheRead.size()))
                             : env.Null());
    out.Set("calibrated", Napi::Boolean::New(env, log->calibrated));
    Napi::Array batches = Napi::Array::New(env, log->batches.size());
    for (uint32_t i = 0; i < log->batches.size(); ++i) {
      Napi::Object b = Napi::Object::New(env);
      b.Set("checksum", Napi::String::New(env, log->batches[i].checksum));
      b.Set("sum", Napi::Number::New(env, log->batches[i].sum));
      b.Set("elements", Napi::Number::New(env, static_cast<double>(log->batches[i].elements)));
      batches.Set(i, b);
    }
    out.Set("batches", batches);
    out.Set("cacheWrites", Napi::Number::New(env, static_cast<double>(log->stats.cacheWrites)));
    out.Set("cacheBytesWritten", Napi::Number::New(env, static_cast<double>(log->stats.cacheBytesWritten)));
    out.Set("batchRequestedWithoutSource", Napi::Boolean::New(env, log->stats.batchRequestedWithoutSource));
    return out;
  };
  return outcome;
}

// feederSelfTest(options, callbacks) -> { done: Promise<log>, cancel(reason?) }
// options: { input: string, dims: number[], bindingNames?: string[], cacheToWrite?: Uint8Array,
//            useCacheIfPresent?: boolean (default true), reportedBatchSize?: number (default dims[0]) }
// callbacks: { nextBatch?(), readCache?(kind), writeCache?(bytes, kind) } (see batch_feeder.h)
Napi::Value FeederSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "feederSelfTest(options, callbacks): expected two objects");
  }
  Napi::Object options = info[0].As<Napi::Object>();
  FeederInput input;
  input.name = StringField(options, "input", "feederSelfTest");
  input.dims = DimsValue(options.Get("dims"), "dims");
  try {
    BatchFeeder::Validate(input);
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, e.what());
  }
  input.reportedBatchSize = static_cast<int32_t>(input.dims[0]);
  if (Napi::Value v = OptionalField(options, "reportedBatchSize"); !v.IsEmpty()) {
    input.reportedBatchSize = static_cast<int32_t>(NumberValue(v, "reportedBatchSize"));
  }
  std::vector<std::string> bindingNames{input.name};
  if (Napi::Value v = OptionalField(options, "bindingNames"); !v.IsEmpty()) bindingNames = StringsValue(v, "bindingNames");
  std::shared_ptr<std::vector<uint8_t>> cacheToWrite;
  if (Napi::Value v = OptionalField(options, "cacheToWrite"); !v.IsEmpty()) {
    cacheToWrite = std::make_shared<std::vector<uint8_t>>(BytesValue(v, "cacheToWrite"));
  }
  bool useCacheIfPresent = true;
  if (Napi::Value v = OptionalField(options, "useCacheIfPresent"); !v.IsEmpty()) useCacheIfPresent = v.ToBoolean();

  std::shared_ptr<Task> task = Task::Create(env, info[1].As<Napi::Object>(), "trt-calib feeder self-test");
  auto feeder = std::make_shared<BatchFeeder>(task, input, std::make_unique<HostMemory>());
  return task->Start(env, [feeder, bindingNames, cacheToWrite, useCacheIfPresent](Task& t) {
    return RunLikeTensorRT(t, feeder, bindingNames, cacheToWrite, useCacheIfPresent);
  });
}

}  // namespace

void InitFeeder(Napi::Env env, Napi::Object exports) {
  exports.Set("feederSelfTest", Napi::Function::New(env, FeederSelfTest, "feederSelfTest"));
}

}  // namespace trtcalib
