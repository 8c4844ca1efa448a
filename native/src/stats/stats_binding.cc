// N-API surface of the statistics kernels (typed in src/native.ts, called only by src/stats/collector.ts).
//
//   statsAccumulate(header: Float64Array(9), hist: Float64Array(bins), data: Float32Array | Uint16Array, lo?, hi?): void
//   statsAccumulateAsync(header, hist, data, lo?, hi?): Promise<void>
// With lo and hi (numbers; float32 data only), the values counted are clamp(x, lo, hi): Clip/Relu outputs counted
// from their input.
//   klScan(hist: Float64Array, spec, divergences?: Float64Array): number         (chosen number of bins)
//   klScanAsync(hists: Float64Array[], spec): Promise<Int32Array>                   (one worker for the list)
//
// Uint16Array data is IEEE half precision (raw bits). The async form runs on a libuv worker thread: the three
// typed arrays are owned by JS, so the worker holds a reference to each until it completes (GC cannot free
// them), takes their raw pointers on the JS thread, and never touches a JS value in Execute. The caller must
// not start two updates of the same state at once (the collector chains them per tensor).
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "stats/noise.h"
#include "stats/density.h"
#include "stats/histogram.h"
#include "stats/kl.h"
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
  bool clamp = false;
  float lo = 0;
  float hi = 0;
};

Napi::Float64Array ExpectFloat64Array(const Napi::Env& env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, std::string("Expected a Float64Array for ") + what);
  }
  return v.As<Napi::Float64Array>();
}

Args ParseValues(Napi::Env env, const std::vector<napi_value>& args) {
  auto info = [&](size_t k) { return k < args.size() ? Napi::Value(env, args[k]) : env.Undefined(); };
  if (args.size() < 3) throw Napi::TypeError::New(env, "Expected (header, hist, data)");
  Args a;
  Napi::Float64Array header = ExpectFloat64Array(env, info(0), "header");
  if (header.ElementLength() != kHeaderSize) {
    throw Napi::RangeError::New(env, "Expected a header of " + std::to_string(kHeaderSize) + " values");
  }
  Napi::Float64Array hist = ExpectFloat64Array(env, info(1), "hist");
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
  if (!info(2).IsTypedArray()) throw Napi::TypeError::New(env, "Expected a Float32Array or Uint16Array (float16) for data");
  Napi::TypedArray data = info(2).As<Napi::TypedArray>();
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
  if (args.size() >= 5 && !info(3).IsUndefined()) {
    if (!info(3).IsNumber() || !info(4).IsNumber()) throw Napi::TypeError::New(env, "Expected numbers for the clamp bounds (lo, hi)");
    if (a.half) throw Napi::TypeError::New(env, "Clamped accumulation takes float32 data");
    a.clamp = true;
    a.lo = static_cast<float>(info(3).As<Napi::Number>().DoubleValue());
    a.hi = static_cast<float>(info(4).As<Napi::Number>().DoubleValue());
    if (!(a.lo <= a.hi)) throw Napi::RangeError::New(env, "Expected lo <= hi for the clamp bounds");
  }
  return a;
}

Args ParseArgs(const Napi::CallbackInfo& info) {
  std::vector<napi_value> args;
  for (size_t k = 0; k < info.Length(); ++k) args.push_back(info[k]);
  return ParseValues(info.Env(), args);
}

void Run(const Args& a) {
  if (a.clamp) {
    AccumulateFloat32Clamped(a.header, a.hist, a.bins, static_cast<const float*>(a.data), a.length, a.lo, a.hi);
  } else if (a.half) {
    AccumulateFloat16(a.header, a.hist, a.bins, static_cast<const uint16_t*>(a.data), a.length);
  } else {
    AccumulateFloat32(a.header, a.hist, a.bins, static_cast<const float*>(a.data), a.length);
  }
}

// statsAccumulatePair(header, hist, clampHeader, clampHist, data: Float32Array, lo, hi): x into the first state and
// clamp(x, lo, hi) into the second, in one pass (AccumulateFloat32WithClamp).
Napi::Value AccumulatePair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "Expected (header, hist, clampHeader, clampHist, data, lo, hi)");
  Napi::CallbackInfo const& i = info;
  // Reuse the single-state checks on (header, hist, data, lo, hi) and (clampHeader, clampHist, data, lo, hi).
  std::vector<napi_value> first = {i[0], i[1], i[4], i[5], i[6]};
  std::vector<napi_value> second = {i[2], i[3], i[4], i[5], i[6]};
  Args root = ParseValues(env, first);
  Args clamped = ParseValues(env, second);
  if (root.half) throw Napi::TypeError::New(env, "Clamped accumulation takes float32 data");
  if (root.bins != clamped.bins) throw Napi::RangeError::New(env, "Expected histograms of the same length");
  try {
    AccumulateFloat32WithClamp(root.header, root.hist, clamped.header, clamped.hist, root.bins, static_cast<const float*>(root.data), root.length, root.lo, root.hi);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
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

// densityAmaxAsync(fields: Float64Array(4n) [count, zeroCount, absMax, range per tensor], hists: Float64Array[n],
//                  percentile: number | undefined, mse: [qmax, candidates, startBin] | undefined)
//   -> Promise<{ percentile?: Float64Array(n), mse?: Float64Array(n) }>
// percentile and mse amax (src/calibrators/*.ts, the same arithmetic) for a list of tensors on one worker thread.
class DensityWorker : public Napi::AsyncWorker {
 public:
  DensityWorker(Napi::Env env, std::vector<HistogramFields> tensors, std::vector<Napi::ObjectReference> refs, bool percentile,
                double p, bool mse, double qmax, int candidates, int startBin)
      : Napi::AsyncWorker(env, "trtcalib:densityAmax"),
        deferred_(Napi::Promise::Deferred::New(env)),
        tensors_(std::move(tensors)),
        refs_(std::move(refs)),
        wantPercentile_(percentile),
        p_(p),
        wantMse_(mse),
        qmax_(qmax),
        candidates_(candidates),
        startBin_(startBin) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override {
    percentile_.assign(tensors_.size(), 0.0);
    mse_.assign(tensors_.size(), 0.0);
    for (size_t t = 0; t < tensors_.size(); ++t) {
      const HistogramDensity d(tensors_[t]);
      if (wantPercentile_) percentile_[t] = PercentileAmax(tensors_[t], p_, d);
      if (wantMse_) mse_[t] = MseAmax(tensors_[t], d, qmax_, candidates_, startBin_);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    auto array = [&](const std::vector<double>& v) {
      Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
      std::copy(v.begin(), v.end(), a.Data());
      return a;
    };
    if (wantPercentile_) out.Set("percentile", array(percentile_));
    if (wantMse_) out.Set("mse", array(mse_));
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<HistogramFields> tensors_;
  std::vector<Napi::ObjectReference> refs_;  // keeps the histograms alive until the worker is done
  bool wantPercentile_;
  double p_;
  bool wantMse_;
  double qmax_;
  int candidates_;
  int startBin_;
  std::vector<double> percentile_, mse_;
};

Napi::Value DensityAmaxAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "Expected (fields, hists, percentile, mse)");
  Napi::Float64Array fields = ExpectFloat64Array(env, info[0], "fields");
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "Expected an array of Float64Array histograms");
  Napi::Array hists = info[1].As<Napi::Array>();
  const uint32_t n = hists.Length();
  if (fields.ElementLength() != size_t(n) * 4) throw Napi::RangeError::New(env, "Expected 4 fields per histogram");
  std::vector<HistogramFields> tensors;
  std::vector<Napi::ObjectReference> refs;
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Float64Array h = ExpectFloat64Array(env, hists.Get(i), "hist");
    const double* f = fields.Data() + size_t(i) * 4;
    const double range = f[3], absMax = f[2];
    const size_t bins = h.ElementLength();
    if (bins == 0 || (absMax > 0 && !(range > absMax))) throw Napi::RangeError::New(env, "Inconsistent histogram fields");
    if (absMax > 0 && std::floor((absMax * double(bins)) / range) >= double(bins)) throw Napi::RangeError::New(env, "absMax beyond the histogram");
    tensors.push_back({f[0], f[1], absMax, range, h.Data(), uint32_t(bins)});
    refs.push_back(Napi::Persistent(hists.Get(i).As<Napi::Object>()));
  }
  const bool percentile = info[2].IsNumber();
  const double p = percentile ? info[2].As<Napi::Number>().DoubleValue() : 0;
  const bool mse = info[3].IsArray();
  double qmax = 127;
  int candidates = 2048, startBin = 128;
  if (mse) {
    Napi::Array m = info[3].As<Napi::Array>();
    qmax = m.Get(uint32_t(0)).As<Napi::Number>().DoubleValue();
    candidates = m.Get(uint32_t(1)).As<Napi::Number>().Int32Value();
    startBin = m.Get(uint32_t(2)).As<Napi::Number>().Int32Value();
  }
  auto* worker = new DensityWorker(env, std::move(tensors), std::move(refs), percentile, p, mse, qmax, candidates, startBin);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

KlSpec ParseSpec(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "Expected a KL scan spec object");
  Napi::Object o = v.As<Napi::Object>();
  auto str = [&](const char* key) -> std::string {
    Napi::Value x = o.Get(key);
    if (!x.IsString()) throw Napi::TypeError::New(env, std::string("Expected a string for spec.") + key);
    return x.As<Napi::String>().Utf8Value();
  };
  auto integer = [&](const char* key) -> int {
    Napi::Value x = o.Get(key);
    if (!x.IsNumber()) throw Napi::TypeError::New(env, std::string("Expected a number for spec.") + key);
    const double d = x.As<Napi::Number>().DoubleValue();
    if (!(d >= 1 && d <= (1 << 24)) || d != std::floor(d)) throw Napi::RangeError::New(env, std::string("Expected a positive integer for spec.") + key);
    return int(d);
  };
  KlSpec spec;
  const std::string grouping = str("grouping"), emptyBins = str("emptyBins"), ties = str("ties");
  if (grouping != "remainder-last" && grouping != "proportional") throw Napi::RangeError::New(env, "Unknown spec.grouping");
  if (emptyBins != "reference" && emptyBins != "histogram") throw Napi::RangeError::New(env, "Unknown spec.emptyBins");
  if (ties != "smallest" && ties != "largest") throw Napi::RangeError::New(env, "Unknown spec.ties");
  spec.proportional = grouping == "proportional";
  spec.histogramMask = emptyBins == "histogram";
  spec.largestOnTie = ties == "largest";
  spec.levels = integer("levels");
  spec.startBin = integer("startBin");
  Napi::Value eq = o.Get("emptyQ");
  if (!eq.IsUndefined()) {
    if (!eq.IsNumber() || !(eq.As<Napi::Number>().DoubleValue() > 0)) throw Napi::RangeError::New(env, "Expected a positive spec.emptyQ");
    spec.hasEmptyQ = true;
    spec.emptyQ = eq.As<Napi::Number>().DoubleValue();
  }
  return spec;
}

Napi::Float64Array ExpectHistogram(const Napi::Env& env, const Napi::Value& v, const KlSpec& spec) {
  Napi::Float64Array h = ExpectFloat64Array(env, v, "hist");
  const size_t n = h.ElementLength();
  if (n > (size_t(1) << 24) || spec.startBin < spec.levels || size_t(spec.startBin) > n) {
    throw Napi::RangeError::New(env, "Expected levels <= startBin <= histogram length");
  }
  return h;
}

Napi::Value KlScanSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const KlSpec spec = ParseSpec(env, info[1]);
  Napi::Float64Array hist = ExpectHistogram(env, info[0], spec);
  const int n = int(hist.ElementLength());
  double* out = nullptr;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    Napi::Float64Array d = ExpectFloat64Array(env, info[2], "divergences");
    if (d.ElementLength() != size_t(n - spec.startBin + 1)) throw Napi::RangeError::New(env, "Expected divergences of length bins - startBin + 1");
    out = d.Data();
  }
  return Napi::Number::New(env, KlScan(hist.Data(), n, spec, out));
}

class KlScanWorker : public Napi::AsyncWorker {
 public:
  KlScanWorker(Napi::Env env, Napi::Array list, const KlSpec& spec)
      : Napi::AsyncWorker(env, "trtcalib:klScan"), deferred_(Napi::Promise::Deferred::New(env)), spec_(spec), list_(Napi::Persistent(list.As<Napi::Object>())) {
    for (uint32_t k = 0; k < list.Length(); ++k) {
      Napi::Float64Array h = ExpectHistogram(env, list.Get(k), spec);
      hists_.push_back(h.Data());
      sizes_.push_back(int(h.ElementLength()));
    }
    chosen_.resize(hists_.size());
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override {
    for (size_t k = 0; k < hists_.size(); ++k) chosen_[k] = KlScan(hists_[k], sizes_[k], spec_, nullptr);
  }
  void OnOK() override {
    Napi::Int32Array out = Napi::Int32Array::New(Env(), chosen_.size());
    for (size_t k = 0; k < chosen_.size(); ++k) out[k] = chosen_[k];
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  KlSpec spec_;
  Napi::ObjectReference list_;  // keeps the histograms (and their buffers) alive
  std::vector<const double*> hists_;
  std::vector<int> sizes_;
  std::vector<int32_t> chosen_;
};

Napi::Value KlScanAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "Expected an array of Float64Array histograms");
  const KlSpec spec = ParseSpec(env, info[1]);
  auto* worker = new KlScanWorker(env, info[0].As<Napi::Array>(), spec);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// noiseSums(sums: Float64Array(9), data: Float32Array, scale): stats/noise.h NoiseSums over data (one image), in
// place; for the tests that check it against src/sensitivity/noise.ts bit for bit.
Napi::Value NoiseSumsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "Expected (sums: Float64Array(9), data: Float32Array, scale: number)");
  }
  auto sums = info[0].As<Napi::TypedArray>();
  auto data = info[1].As<Napi::TypedArray>();
  if (sums.TypedArrayType() != napi_float64_array || sums.ElementLength() != kNoiseSums) throw Napi::TypeError::New(env, "Expected a Float64Array of 9 sums");
  if (data.TypedArrayType() != napi_float32_array) throw Napi::TypeError::New(env, "Expected Float32Array data");
  NoiseSums(sums.As<Napi::Float64Array>().Data(), data.As<Napi::Float32Array>().Data(), data.ElementLength(), info[2].As<Napi::Number>().DoubleValue());
  return env.Undefined();
}

}  // namespace

void InitStats(Napi::Env env, Napi::Object exports) {
  exports.Set("noiseSums", Napi::Function::New(env, NoiseSumsBinding, "noiseSums"));
  exports.Set("statsAccumulate", Napi::Function::New(env, Accumulate, "statsAccumulate"));
  exports.Set("densityAmaxAsync", Napi::Function::New(env, DensityAmaxAsync, "densityAmaxAsync"));
  exports.Set("statsAccumulatePair", Napi::Function::New(env, AccumulatePair, "statsAccumulatePair"));
  exports.Set("statsAccumulateAsync", Napi::Function::New(env, AccumulateAsync, "statsAccumulateAsync"));
  exports.Set("statsHeaderSize", Napi::Number::New(env, kHeaderSize));
  exports.Set("klScan", Napi::Function::New(env, KlScanSync, "klScan"));
  exports.Set("klScanAsync", Napi::Function::New(env, KlScanAsync, "klScanAsync"));
}

}  // namespace trtcalib
