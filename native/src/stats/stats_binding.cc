// N-API surface of the statistics kernels (typed in src/native.ts, called only by src/stats/collector.ts).
//
//   statsAccumulate(header: Float64Array(9), hist: Float64Array(bins), data: Float32Array | Uint16Array): void
//   statsAccumulateAsync(header, hist, data): Promise<void>
//
// Uint16Array data is IEEE half precision (raw bits). The async form runs on a libuv worker thread: the three
// typed arrays are owned by JS, so the worker holds a reference to each until it completes (GC cannot free
// them), takes their raw pointers on the JS thread, and never touches a JS value in Execute. The caller must
// not start two updates of the same state at once (the collector chains them per tensor).
#include <napi.h>

#include <cstdint>
#include <string>

#include "stats/histogram.h"
#include "stats/stats.h"

namespace trtcalib {
namespace {

struct Args {
  double* header = nullptr;
  double* hist = nullptr;
  uint32_t bins = 0;
  const void* data = nullptr;
  size_t length = 0;
  bool half = false;
};

Napi::Float64Array ExpectFloat64Array(const Napi::Env& env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, std::string("Expected a Float64Array for ") + what);
  }
  return v.As<Napi::Float64Array>();
}

Args ParseArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3) throw Napi::TypeError::New(env, "Expected (header, hist, data)");
  Args a;
  Napi::Float64Array header = ExpectFloat64Array(env, info[0], "header");
  if (header.ElementLength() != kHeaderSize) {
    throw Napi::RangeError::New(env, "Expected a header of " + std::to_string(kHeaderSize) + " values");
  }
  Napi::Float64Array hist = ExpectFloat64Array(env, info[1], "hist");
  const size_t bins = hist.ElementLength();
  if (bins < 2 || bins > (size_t(1) << 24) || (bins & (bins - 1)) != 0) {
    throw Napi::RangeError::New(env, "Expected a histogram whose length is a power of two in [2, 2^24]");
  }
  a.header = header.Data();
  a.hist = hist.Data();
  a.bins = uint32_t(bins);
  // The invariant every update keeps: range is the smallest power of two above absMax (0 with 0).
  const double absMax = a.header[kAbsMax];
  if (!(absMax >= 0) || !(absMax < 1e300) || a.header[kRange] != RangeFor(absMax)) {
    throw Napi::RangeError::New(env, "Inconsistent statistics header: range must be the smallest power of two above absMax");
  }
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(env, "Expected a Float32Array or Uint16Array (float16) for data");
  Napi::TypedArray data = info[2].As<Napi::TypedArray>();
  switch (data.TypedArrayType()) {
    case napi_float32_array:
      a.data = data.As<Napi::Float32Array>().Data();
      break;
    case napi_uint16_array:
      a.data = data.As<Napi::Uint16Array>().Data();
      a.half = true;
      break;
    default:
      throw Napi::TypeError::New(env, "Expected a Float32Array or Uint16Array (float16) for data");
  }
  a.length = data.ElementLength();
  return a;
}

void Run(const Args& a) {
  if (a.half) {
    AccumulateFloat16(a.header, a.hist, a.bins, static_cast<const uint16_t*>(a.data), a.length);
  } else {
    AccumulateFloat32(a.header, a.hist, a.bins, static_cast<const float*>(a.data), a.length);
  }
}

Napi::Value Accumulate(const Napi::CallbackInfo& info) {
  Run(ParseArgs(info));
  return info.Env().Undefined();
}

class AccumulateWorker : public Napi::AsyncWorker {
 public:
  AccumulateWorker(const Napi::CallbackInfo& info, const Args& args)
      : Napi::AsyncWorker(info.Env(), "trtcalib:statsAccumulate"),
        deferred_(Napi::Promise::Deferred::New(info.Env())),
        args_(args),
        header_(Napi::Persistent(info[0].As<Napi::Object>())),
        hist_(Napi::Persistent(info[1].As<Napi::Object>())),
        data_(Napi::Persistent(info[2].As<Napi::Object>())) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { Run(args_); }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Args args_;
  // Keep the JS-owned buffers alive until the worker is destroyed (on the JS thread).
  Napi::ObjectReference header_;
  Napi::ObjectReference hist_;
  Napi::ObjectReference data_;
};

Napi::Value AccumulateAsync(const Napi::CallbackInfo& info) {
  const Args args = ParseArgs(info);
  auto* worker = new AccumulateWorker(info, args);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitStats(Napi::Env env, Napi::Object exports) {
  exports.Set("statsAccumulate", Napi::Function::New(env, Accumulate, "statsAccumulate"));
  exports.Set("statsAccumulateAsync", Napi::Function::New(env, AccumulateAsync, "statsAccumulateAsync"));
  exports.Set("statsHeaderSize", Napi::Number::New(env, kHeaderSize));
}

}  // namespace trtcalib
