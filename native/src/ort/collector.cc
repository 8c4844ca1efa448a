// OrtCollector: runs a model with its activations exposed through onnxruntime's C API and counts their statistics
// in native memory (typed in src/native.ts, used only by src/backends/onnxruntime-collect.ts).
//
//   new OrtCollector(libraryPath, model: Uint8Array | string (a file path), config)
//     config: { threads, optimization (0/1/2/3/99), configEntries: [key, value][], inputName, bins, states,
//               inputTargets: Target[], outputs: { name, targets: Target[] }[], countOutput?, countThreads? }
//     Target: { state, clamp?: [lo, hi], pads?: number[], zerosOnly?: boolean }
//   open(): Promise<string>                  loads the library and the session (returns onnxruntime's version)
//   infer(data: Float32Array, dims): Promise<void>   one run (counted in it, or its outputs queued for counting)
//   drain(): Promise<void>                   resolves once every queued run is counted (rejects on a failure)
//   result(): { headers: Float64Array, hists: Float64Array }   copies of every state (states x 9, states x bins)
//   close(): void                            stops counting and frees the session and anything not counted
//
// Two ways of counting; every count is an exact integer, so neither the way nor its scheduling changes the result.
//
// In the graph (config.countOutput set, the default): the model holds a counting node, trtcalib.CountStatistics,
// on each tensor of config.outputs (src/backends/onnxruntime-collect.ts withCountingNodes), chained so that
// onnxruntime runs each right after the tensor's producer; countOutput is the last node's (empty) output, the
// one thing fetched. A node counts its tensor on onnxruntime's thread, splitting a large one with a helper thread
// (config.countThreads 2), while it is fresh in the cache; onnxruntime then frees or reuses the tensor as any
// intermediate. A run holds no more activation memory than a plain run (PP-OCR det at 576x768: 671 MB of
// activations per image counted, peak RSS 1.65 GB -> 0.35 GB), and nothing is copied or page-faulted in anew.
//
// From the outputs (no countOutput): infer() runs onnxruntime on a libuv worker thread and hands the outputs to the
// collector's own counting thread, so the next image's inference overlaps this image's counting. A run that
// finishes while the previous one is still being counted waits (on its libuv thread) rather than queueing: two
// runs' outputs are in use at most, plus up to two counted ones kept (while they total at most 256 MB) for
// onnxruntime to write later runs into. Runs are counted one at a time, in order.
//
// Either way the input's own targets are counted by the infer worker, into states no output targets.
#include <napi.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#include <pthread.h>
#endif

#include "ort/ort_api.h"
#include "ort/collector.h"
#include "stats/histogram.h"
#include "stats/noise.h"

namespace trtcalib {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// The onnxruntime library: loaded once per process, never unloaded (onnxruntime-node keeps its environment for
// the life of the process too).

struct Runtime {
  ort::Api api;
  ort::Env* env = nullptr;
  ort::MemoryInfo* cpu = nullptr;
  std::string path;
};

// Prefix of the errors that concern the library rather than the model (the caller may fall back to another path).
const std::string kLibraryError = "onnxruntime library: ";

std::mutex g_runtimeMutex;
Runtime* g_runtime = nullptr;

void Check(const ort::Api& api, ort::Status* status, const std::string& what) {
  if (!status) return;
  std::string message = api.GetErrorMessage(status);
  api.ReleaseStatus(status);
  throw std::runtime_error(what.empty() ? message : what + ": " + message);
}

void* OpenLibrary(const std::string& path, std::string& error) {
#if defined(_WIN32)
  HMODULE h = LoadLibraryA(path.c_str());
  if (!h) error = "LoadLibrary failed with error " + std::to_string(GetLastError());
  return reinterpret_cast<void*>(h);
#else
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) error = dlerror();
  return h;
#endif
}

void* Symbol(void* library, const char* name) {
#if defined(_WIN32)
  return reinterpret_cast<void*>(GetProcAddress(reinterpret_cast<HMODULE>(library), name));
#else
  return dlsym(library, name);
#endif
}

const Runtime& LoadRuntime(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_runtimeMutex);
  if (g_runtime) {
    if (g_runtime->path != path) throw std::runtime_error(kLibraryError + "onnxruntime is already loaded from " + g_runtime->path);
    return *g_runtime;
  }
  std::string error;
  void* library = OpenLibrary(path, error);
  if (!library) throw std::runtime_error(kLibraryError + "cannot load " + path + ": " + error);
  auto getBase = reinterpret_cast<ort::GetApiBaseFn>(Symbol(library, "OrtGetApiBase"));
  if (!getBase) throw std::runtime_error(kLibraryError + path + " has no OrtGetApiBase: not an onnxruntime library");
  const ort::ApiBase* base = getBase();
  const void* table = base ? base->GetApi(ort::kApiVersion) : nullptr;
  if (!table) {
    throw std::runtime_error(kLibraryError + "onnxruntime " + (base ? base->GetVersionString() : "?") + " at " + path +
                             " does not serve API version " + std::to_string(ort::kApiVersion) + " (onnxruntime >= 1.16 needed)");
  }
  auto runtime = std::make_unique<Runtime>();
  runtime->api.Fill(table);
  runtime->api.version = base->GetVersionString();
  runtime->path = path;
  Check(runtime->api, runtime->api.CreateEnv(ort::kLoggingLevelFatal, "trt-calib", &runtime->env), "onnxruntime CreateEnv");
  Check(runtime->api, runtime->api.CreateCpuMemoryInfo(ort::kArenaAllocator, ort::kMemTypeDefault, &runtime->cpu), "onnxruntime CreateCpuMemoryInfo");
  g_runtime = runtime.release();
  return *g_runtime;
}

// A UTF-8 path as onnxruntime takes it (ORTCHAR_t: UTF-16 on Windows).
std::basic_string<ort::PathChar> OrtPath(const std::string& utf8) {
#if defined(_WIN32)
  if (utf8.empty()) return {};
  const int n = MultiByteToWideChar(CP_UTF8, 0, utf8.data(), int(utf8.size()), nullptr, 0);
  std::wstring wide(size_t(n), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, utf8.data(), int(utf8.size()), wide.data(), n);
  return wide;
#else
  return utf8;
#endif
}

// The domain of the counting op (src/backends/onnxruntime-collect.ts writes its nodes).
const char* const kCountDomain = "trtcalib";

// The session settings shared by the collector's session and ortOptimizeModel's.
struct SessionSettings {
  int threads = 0;
  int optimization = ort::kGraphOptEnableAll;
  // onnxruntime's memory pattern (on by default): off where a graph's many large intermediate tensors make its
  // first runs and each new batch shape slow to plan (the sensitivity passes: config.memPattern false).
  bool memPattern = true;
  std::vector<std::pair<std::string, std::string>> entries;

  // Reads { threads, optimization, configEntries: [key, value][] }.
  static SessionSettings Parse(Napi::Env env, const Napi::Object& c) {
    SessionSettings s;
    auto number = [&](const char* key) {
      Napi::Value v = c.Get(key);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("Expected a number for config.") + key);
      return v.As<Napi::Number>().DoubleValue();
    };
    s.threads = int(number("threads"));
    s.optimization = int(number("optimization"));
    Napi::Value pattern = c.Get("memPattern");
    if (!pattern.IsUndefined()) {
      if (!pattern.IsBoolean()) throw Napi::TypeError::New(env, "Expected a boolean for config.memPattern");
      s.memPattern = pattern.As<Napi::Boolean>().Value();
    }
    Napi::Value entries = c.Get("configEntries");
    if (!entries.IsArray()) throw Napi::TypeError::New(env, "Expected config.configEntries as [key, value][]");
    for (uint32_t i = 0; i < entries.As<Napi::Array>().Length(); ++i) {
      Napi::Array kv = entries.As<Napi::Array>().Get(i).As<Napi::Array>();
      s.entries.emplace_back(kv.Get(uint32_t(0)).As<Napi::String>().Utf8Value(), kv.Get(uint32_t(1)).As<Napi::String>().Utf8Value());
    }
    return s;
  }
};

// A session from `model` (the bytes of an ONNX model, or when empty the file `modelPath`); with `optimizedPath`,
// onnxruntime also writes the graph it optimised there.
// With `op`, its domain is registered in `*domain` (to be released after the session).
ort::Session* CreateSession(const Runtime& rt, const SessionSettings& settings, const std::vector<uint8_t>& model, const std::string& modelPath,
                            const std::string& optimizedPath, const ort::CustomOp* op = nullptr, ort::CustomOpDomain** domain = nullptr) {
  const ort::Api& api = rt.api;
  ort::SessionOptions* options = nullptr;
  ort::Session* session = nullptr;
  Check(api, api.CreateSessionOptions(&options), "onnxruntime CreateSessionOptions");
  try {
    if (op) {
      Check(api, api.CreateCustomOpDomain(kCountDomain, domain), "onnxruntime CreateCustomOpDomain");
      Check(api, api.CustomOpDomain_Add(*domain, op), "onnxruntime CustomOpDomain_Add");
      Check(api, api.AddCustomOpDomain(options, *domain), "onnxruntime AddCustomOpDomain");
    }
    Check(api, api.SetIntraOpNumThreads(options, settings.threads), "onnxruntime SetIntraOpNumThreads");
    Check(api, api.SetInterOpNumThreads(options, 1), "onnxruntime SetInterOpNumThreads");
    Check(api, api.SetSessionExecutionMode(options, ort::kExecutionSequential), "onnxruntime SetSessionExecutionMode");
    if (!settings.memPattern) Check(api, api.DisableMemPattern(options), "onnxruntime DisableMemPattern");
    Check(api, api.SetSessionGraphOptimizationLevel(options, settings.optimization), "onnxruntime SetSessionGraphOptimizationLevel");
    Check(api, api.SetSessionLogSeverityLevel(options, ort::kLoggingLevelFatal), "onnxruntime SetSessionLogSeverityLevel");
    for (const auto& kv : settings.entries) {
      Check(api, api.AddSessionConfigEntry(options, kv.first.c_str(), kv.second.c_str()), "onnxruntime session option " + kv.first);
    }
    if (!optimizedPath.empty()) Check(api, api.SetOptimizedModelFilePath(options, OrtPath(optimizedPath).c_str()), "onnxruntime SetOptimizedModelFilePath");
    if (model.empty()) {
      Check(api, api.CreateSession(rt.env, OrtPath(modelPath).c_str(), options, &session), "");
    } else {
      Check(api, api.CreateSessionFromArray(rt.env, model.data(), model.size(), options, &session), "");
    }
  } catch (...) {
    api.ReleaseSessionOptions(options);
    throw;
  }
  api.ReleaseSessionOptions(options);
  return session;
}

// ---------------------------------------------------------------------------------------------------------------

struct Target {
  uint32_t state = 0;
  bool clamp = false;
  float lo = 0;
  float hi = 0;
  std::vector<int64_t> pads;  // Pad: [begin..., end...]; its zeros follow from the counted tensor's dims
  bool zerosOnly = false;     // values counted into another state (merged by the caller): only the pad's zeros here
  // A noise target (sensitivity's FP32 pass): the tensor's TensorNoise sums (stats/noise.h) into noise state
  // `noise`, image by image, instead of a histogram; `scale` is the INT8 scale (0: FP16 and the range only).
  int32_t noise = -1;
  double scale = 0;
};

struct TensorView {
  int type = 0;
  std::vector<int64_t> dims;
  size_t count = 0;
  const void* data = nullptr;
};

TensorView View(const ort::Api& api, ort::Value* value, const std::string& name) {
  TensorView v;
  ort::TensorTypeAndShapeInfo* info = nullptr;
  Check(api, api.GetTensorTypeAndShape(value, &info), "onnxruntime output '" + name + "'");
  ort::Status* status = api.GetTensorElementType(info, &v.type);
  size_t rank = 0;
  if (!status) status = api.GetDimensionsCount(info, &rank);
  if (!status) {
    v.dims.resize(rank);
    status = api.GetDimensions(info, v.dims.data(), rank);
  }
  if (!status) status = api.GetTensorShapeElementCount(info, &v.count);
  api.ReleaseTensorTypeAndShapeInfo(info);
  Check(api, status, "onnxruntime output '" + name + "'");
  void* data = nullptr;
  Check(api, api.GetTensorMutableData(value, &data), "onnxruntime output '" + name + "'");
  v.data = data;
  return v;
}

class States {
 public:
  States(size_t states, uint32_t bins, size_t noiseStates = 0)
      : bins_(bins), headers_(states * kHeaderSize, 0.0), hists_(states * size_t(bins), 0.0), noise_(noiseStates * kNoiseSums, 0.0) {
    for (size_t s = 0; s < states; ++s) {
      headers_[s * kHeaderSize + kMin] = std::numeric_limits<double>::infinity();
      headers_[s * kHeaderSize + kMax] = -std::numeric_limits<double>::infinity();
    }
  }
  size_t size() const { return headers_.size() / kHeaderSize; }
  // Back to `states` empty states.
  void Reset(size_t states) {
    headers_.assign(states * kHeaderSize, 0.0);
    hists_.assign(states * size_t(bins_), 0.0);
    for (size_t s = 0; s < states; ++s) {
      headers_[s * kHeaderSize + kMin] = std::numeric_limits<double>::infinity();
      headers_[s * kHeaderSize + kMax] = -std::numeric_limits<double>::infinity();
    }
  }
  uint32_t bins() const { return bins_; }
  double* header(uint32_t s) { return headers_.data() + size_t(s) * kHeaderSize; }
  double* hist(uint32_t s) { return hists_.data() + size_t(s) * bins_; }
  const std::vector<double>& headers() const { return headers_; }
  const std::vector<double>& hists() const { return hists_; }
  const std::vector<double>& noise() const { return noise_; }
  size_t noiseStates() const { return noise_.size() / kNoiseSums; }
  void MergeNoiseInto(uint32_t noise, const double* partial) { MergeNoise(noise_.data() + size_t(noise) * kNoiseSums, partial); }

  void Count(const std::vector<Target>& targets, const TensorView& v, const std::string& name) {
    // The tensor itself and its first clamp (Conv -> Relu/Clip) in one pass over the data.
    const Target* plain = nullptr;
    const Target* clamped = nullptr;
    if (v.type == ort::kElementFloat) {
      for (const Target& t : targets) {
        if (t.noise >= 0) continue;
        if (!t.zerosOnly && !t.clamp && !plain) plain = &t;
        if (!t.zerosOnly && t.clamp && !clamped) clamped = &t;
      }
    }
    const bool paired = plain && clamped;
    if (paired) {
      AccumulateFloat32WithClamp(header(plain->state), hist(plain->state), header(clamped->state), hist(clamped->state), bins_,
                                 static_cast<const float*>(v.data), v.count, clamped->lo, clamped->hi);
    }
    for (const Target& t : targets) {
      if (t.noise >= 0) {
        CountNoise(t, v, name);
        continue;
      }
      double* h = header(t.state);
      double* hist = this->hist(t.state);
      if (!t.zerosOnly && !(paired && (&t == plain || &t == clamped))) {
        if (v.type == ort::kElementFloat) {
          const float* d = static_cast<const float*>(v.data);
          if (t.clamp) AccumulateFloat32Clamped(h, hist, bins_, d, v.count, t.lo, t.hi);
          else AccumulateFloat32(h, hist, bins_, d, v.count);
        } else if (v.type == ort::kElementFloat16 && !t.clamp) {
          AccumulateFloat16(h, hist, bins_, static_cast<const uint16_t*>(v.data), v.count);
        } else {
          throw std::runtime_error("tensor '" + name + "' has onnxruntime element type " + std::to_string(v.type) +
                                   (t.clamp ? ", not float32 (clamped counting)" : ", neither float32 nor float16"));
        }
      }
      if (!t.pads.empty()) {
        if (t.pads.size() != 2 * v.dims.size()) throw std::runtime_error("pads of '" + name + "' do not match its rank");
        uint64_t inner = 1, outer = 1;
        for (size_t i = 0; i < v.dims.size(); ++i) {
          inner *= uint64_t(v.dims[i]);
          outer *= uint64_t(v.dims[i] + t.pads[i] + t.pads[i + v.dims.size()]);
        }
        AccumulateZeros(h, hist, outer - inner);
      }
    }
  }

 private:
  // One call per image (the batch's first dimension), as TensorNoise.addImages adds them: the same sums whatever
  // the batch size.
  void CountNoise(const Target& t, const TensorView& v, const std::string& name) {
    if (v.type != ort::kElementFloat) throw std::runtime_error("tensor '" + name + "' is not float32 (noise sums)");
    const size_t images = v.dims.empty() || v.dims[0] <= 0 ? 1 : size_t(v.dims[0]);
    if (v.count % images != 0) throw std::runtime_error("tensor '" + name + "' does not split into its batch's images");
    const size_t per = v.count / images;
    const float* d = static_cast<const float*>(v.data);
    double* sums = noise_.data() + size_t(t.noise) * kNoiseSums;
    for (size_t k = 0; k < images; ++k) NoiseSums(sums, d + k * per, per, t.scale);
  }

  uint32_t bins_;
  std::vector<double> headers_;
  std::vector<double> hists_;
  std::vector<double> noise_;
};

std::vector<Target> ParseTargets(const Napi::Env& env, const Napi::Value& value, size_t states, size_t noiseStates) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, "Expected an array of targets");
  Napi::Array list = value.As<Napi::Array>();
  std::vector<Target> targets;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, "Expected a target object");
    Napi::Object o = item.As<Napi::Object>();
    Target t;
    Napi::Value noise = o.Get("noise");
    if (!noise.IsUndefined()) {
      if (!noise.IsNumber() || noise.As<Napi::Number>().Int64Value() < 0 || size_t(noise.As<Napi::Number>().Int64Value()) >= noiseStates) {
        throw Napi::RangeError::New(env, "Expected a noise target index below config.noiseStates");
      }
      t.noise = noise.As<Napi::Number>().Int32Value();
      Napi::Value scale = o.Get("scale");
      t.scale = scale.IsNumber() ? scale.As<Napi::Number>().DoubleValue() : 0;
      if (!(t.scale > 0)) t.scale = 0;
      targets.push_back(std::move(t));
      continue;
    }
    Napi::Value state = o.Get("state");
    if (!state.IsNumber() || state.As<Napi::Number>().Int64Value() < 0 || size_t(state.As<Napi::Number>().Int64Value()) >= states) {
      throw Napi::RangeError::New(env, "Expected a target state index below config.states");
    }
    t.state = uint32_t(state.As<Napi::Number>().Uint32Value());
    Napi::Value clamp = o.Get("clamp");
    if (!clamp.IsUndefined()) {
      if (!clamp.IsArray() || clamp.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(env, "Expected clamp as [lo, hi]");
      t.clamp = true;
      t.lo = float(clamp.As<Napi::Array>().Get(uint32_t(0)).As<Napi::Number>().DoubleValue());
      t.hi = float(clamp.As<Napi::Array>().Get(uint32_t(1)).As<Napi::Number>().DoubleValue());
      if (!(t.lo <= t.hi)) throw Napi::RangeError::New(env, "Expected lo <= hi for the clamp bounds");
    }
    Napi::Value pads = o.Get("pads");
    if (!pads.IsUndefined()) {
      if (!pads.IsArray()) throw Napi::TypeError::New(env, "Expected pads as an array of numbers");
      Napi::Array p = pads.As<Napi::Array>();
      for (uint32_t k = 0; k < p.Length(); ++k) {
        const int64_t v = p.Get(k).As<Napi::Number>().Int64Value();
        if (v < 0) throw Napi::RangeError::New(env, "Expected pads >= 0");
        t.pads.push_back(v);
      }
    }
    t.zerosOnly = o.Get("zerosOnly").ToBoolean().Value();
    targets.push_back(std::move(t));
  }
  return targets;
}

// Counts queued runs' outputs into the states, one run at a time, in order, on its own thread.
class CountingThread {
 public:
  CountingThread(const Runtime* runtime, States* states, const std::vector<std::string>* names, const std::vector<std::vector<Target>>* targets)
      : runtime_(runtime), states_(states), names_(names), targets_(targets), thread_([this] { Loop(); }) {}
  ~CountingThread() { Stop(); }

  // Hands a run's outputs over (taking them), waiting until the counting thread is free: a finished run waits
  // rather than queueing, so at most two runs' outputs are in use. `dims`: the run's input dims, under which its
  // counted outputs are kept for reuse.
  void Push(std::vector<int64_t> dims, std::vector<ort::Value*> outputs) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return stop_ || (queue_.empty() && !busy_); });
    if (stop_) {
      lock.unlock();
      Free(outputs);
      return;
    }
    queue_.push_back({std::move(dims), std::move(outputs)});
    changed_.notify_all();
  }

  // Outputs of an earlier run with these input dims, already counted, for onnxruntime to write the next run into
  // (empty when there is none). Reusing them keeps the memory of a pass at a few runs' outputs, allocated once.
  std::vector<ort::Value*> TakeSpare(const std::vector<int64_t>& dims) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = spare_.begin(); it != spare_.end(); ++it) {
      if (it->dims == dims) {
        std::vector<ort::Value*> outputs = std::move(it->outputs);
        spare_.erase(it);
        return outputs;
      }
    }
    return {};
  }

  // Waits until every queued run is counted; returns the first failure ("" when none).
  std::string Drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return stop_ || (queue_.empty() && !busy_); });
    return error_;
  }

  // Stops after the run being counted; drops what is queued.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_ && !thread_.joinable()) return;
      stop_ = true;
      changed_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    for (auto& run : queue_) Free(run.outputs);
    queue_.clear();
    for (auto& run : spare_) Free(run.outputs);
    spare_.clear();
  }

 private:
  struct Run {
    std::vector<int64_t> dims;
    std::vector<ort::Value*> outputs;
  };
  // Spare runs kept: one is what a run takes while the previous one is counted; a second rides out uneven times.
  static constexpr size_t kSpareRuns = 2;
  static constexpr size_t kSpareBytes = size_t(256) << 20;
  // No queue (Push waits for the counting thread): counting (7 ms per MobileNetV2 image) is faster than the
  // exposed run (9 ms), so a run seldom waits; a queued run measured no faster, and its outputs (28 MB) rode on
  // the peak: a whole-image decode (45 MB) on top of four runs' outputs made 4N images peak 10-15% above N.

  void Loop() {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "trtcalib-count");  // tells it apart in top/perf
#endif
    for (;;) {
      Run run;
      bool skip = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        run = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        skip = !error_.empty();  // after a failure, the statistics are void: only free
        changed_.notify_all();
      }
      std::string error;
      size_t bytes = 0;
      if (!skip) {
        try {
          bytes = Count(run.outputs);
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      std::lock_guard<std::mutex> lock(mutex_);
      // Spares only while they stay small: a detector at a large input size exports hundreds of MB per image,
      // and allocating each run afresh costs little next to running it.
      const bool keep = error.empty() && !skip && spare_.size() < kSpareRuns && (spare_.size() + 1) * bytes <= kSpareBytes;
      if (keep) spare_.push_back(std::move(run));
      else Free(run.outputs);
      if (error_.empty()) error_ = error;
      busy_ = false;
      changed_.notify_all();
    }
  }

  // Counts a run's outputs; returns their size in bytes.
  size_t Count(std::vector<ort::Value*>& outputs) {
    const ort::Api& api = runtime_->api;
    size_t bytes = 0;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if ((*targets_)[i].empty() || !outputs[i]) continue;
      TensorView v = View(api, outputs[i], (*names_)[i]);
      states_->Count((*targets_)[i], v, (*names_)[i]);
      bytes += v.count * (v.type == ort::kElementFloat16 ? 2 : 4);
    }
    return bytes;
  }

  void Free(std::vector<ort::Value*>& outputs) const {
    for (ort::Value*& v : outputs) {
      if (v) runtime_->api.ReleaseValue(v);
      v = nullptr;
    }
  }

  const Runtime* runtime_;
  States* states_;
  const std::vector<std::string>* names_;
  const std::vector<std::vector<Target>>* targets_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Run> queue_;
  std::vector<Run> spare_;
  bool busy_ = false;
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

// A second thread for in-graph counting: it counts part of a tensor while the model's thread counts the rest, so
// that counting uses the cores onnxruntime's own threads leave idle between the model's operators.
class HelperThread {
 public:
  HelperThread() : thread_([this] { Loop(); }) {}
  ~HelperThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      changed_.notify_all();
    }
    thread_.join();
  }
  void Start(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = std::move(job);
    changed_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !job_ && !busy_; });
  }

 private:
  void Loop() {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "trtcalib-count");
#endif
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || bool(job_); });
        if (stop_) return;
        job = std::move(job_);
        job_ = nullptr;
        busy_ = true;
      }
      job();
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
      changed_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::function<void()> job_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;
};

// Tensors below this many values are counted by the model's thread alone (the hand-over costs more).
constexpr size_t kSplitMinValues = size_t(1) << 17;

class Collector;

// The counting op: `trtcalib.CountStatistics(x) -> empty`, attribute `slot` (the index in config.outputs whose
// targets it counts x into). Its kernels count in the model's thread while the tensor is fresh in the cache, and
// onnxruntime then frees x or reuses its memory as for any other intermediate tensor: a pass holds no more
// activations than a plain run does.
struct CountOp {
  ort::CustomOp op;  // first: onnxruntime passes &op back
  Collector* owner = nullptr;
};
void InitCountOp(CountOp& op, Collector* owner);

// Resolves or rejects a promise from a worker; keeps the collector's JS object alive while the worker runs.
class CollectorWorker : public Napi::AsyncWorker {
 public:
  CollectorWorker(Napi::Env env, Collector* owner, Napi::Object self, const char* name);
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void OnError(const Napi::Error& e) override;
  void Settle();
  Collector* owner_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference self_;
};

class Collector : public Napi::ObjectWrap<Collector> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "OrtCollector",
                       {InstanceMethod<&Collector::Open>("open"), InstanceMethod<&Collector::Infer>("infer"),
                        InstanceMethod<&Collector::Drain>("drain"), InstanceMethod<&Collector::Result>("result"),
                        InstanceMethod<&Collector::Close>("close")});
  }

  explicit Collector(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Collector>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !(info[1].IsTypedArray() || info[1].IsString()) || !info[2].IsObject()) {
      throw Napi::TypeError::New(env, "Expected (libraryPath: string, model: Uint8Array | string, config: object)");
    }
    libraryPath_ = info[0].As<Napi::String>().Utf8Value();
    if (info[1].IsString()) {
      modelPath_ = info[1].As<Napi::String>().Utf8Value();
      if (modelPath_.empty()) throw Napi::TypeError::New(env, "Expected a model path");
    } else {
      Napi::TypedArray model = info[1].As<Napi::TypedArray>();
      if (model.TypedArrayType() != napi_uint8_array || model.ByteLength() == 0) throw Napi::TypeError::New(env, "Expected a non-empty Uint8Array for the model");
      const uint8_t* bytes = model.As<Napi::Uint8Array>().Data();
      model_.assign(bytes, bytes + model.ByteLength());
    }
    Napi::Object c = info[2].As<Napi::Object>();
    auto number = [&](const char* key) {
      Napi::Value v = c.Get(key);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("Expected a number for config.") + key);
      return v.As<Napi::Number>().DoubleValue();
    };
    settings_ = SessionSettings::Parse(env, c);
    const double bins = number("bins");
    const double states = number("states");
    if (!(bins >= 2 && bins <= double(1 << 24)) || (uint32_t(bins) & (uint32_t(bins) - 1)) != 0) {
      throw Napi::RangeError::New(env, "Expected config.bins to be a power of two in [2, 2^24]");
    }
    if (!(states >= 0 && states < 1e7)) throw Napi::RangeError::New(env, "Expected config.states >= 0");
    Napi::Value noiseStates = c.Get("noiseStates");
    const double noiseCount = noiseStates.IsNumber() ? noiseStates.As<Napi::Number>().DoubleValue() : 0;
    if (!(noiseCount >= 0 && noiseCount < 1e7)) throw Napi::RangeError::New(env, "Expected config.noiseStates >= 0");
    states_ = std::make_unique<States>(size_t(states), uint32_t(bins), size_t(noiseCount));
    Napi::Value input = c.Get("inputName");
    if (!input.IsString()) throw Napi::TypeError::New(env, "Expected a string for config.inputName");
    inputName_ = input.As<Napi::String>().Utf8Value();
    inputTargets_ = ParseTargets(env, c.Get("inputTargets"), states_->size(), states_->noiseStates());
    Napi::Value outputs = c.Get("outputs");
    if (!outputs.IsArray()) throw Napi::TypeError::New(env, "Expected config.outputs as an array");
    for (uint32_t i = 0; i < outputs.As<Napi::Array>().Length(); ++i) {
      Napi::Object o = outputs.As<Napi::Array>().Get(i).As<Napi::Object>();
      Napi::Value name = o.Get("name");
      if (!name.IsString()) throw Napi::TypeError::New(env, "Expected a string for an output name");
      outputNames_.push_back(name.As<Napi::String>().Utf8Value());
      outputTargets_.push_back(ParseTargets(env, o.Get("targets"), states_->size(), states_->noiseStates()));
    }
    // In-graph counting: the model holds a counting node per output, chained; this is the last one's output.
    Napi::Value countOutput = c.Get("countOutput");
    if (!countOutput.IsUndefined()) {
      if (!countOutput.IsString()) throw Napi::TypeError::New(env, "Expected config.countOutput as a string");
      countOutput_ = countOutput.As<Napi::String>().Utf8Value();
      inGraph_ = true;
      InitCountOp(countOp_, this);
    }
    Napi::Value countThreads = c.Get("countThreads");
    countThreads_ = countThreads.IsNumber() ? countThreads.As<Napi::Number>().Int32Value() : 1;
  }

  ~Collector() override { ReleaseAll(); }

  // --- called by the workers ---
  const Runtime* runtime() const { return runtime_; }
  ort::Session* session() const { return session_; }
  States& states() { return *states_; }
  const std::vector<Target>& inputTargets() const { return inputTargets_; }
  const std::vector<std::vector<Target>>& outputTargets() const { return outputTargets_; }
  const std::vector<std::string>& outputNames() const { return outputNames_; }
  const std::string& inputName() const { return inputName_; }
  bool inGraph() const { return inGraph_; }
  const std::string& countOutput() const { return countOutput_; }
  const CountOp* countOp() const { return inGraph_ ? &countOp_ : nullptr; }

  // A counting node's work (on onnxruntime's thread, one node at a time): the targets of output `slot` from `v`.
  // Large float32 tensors are split with the helper thread, which counts the second half into scratch states
  // merged in afterwards (MergeState: the same state as counting all of it here).
  void CountInGraph(int64_t slot, const TensorView& v) {
    if (slot < 0 || size_t(slot) >= outputTargets_.size()) throw std::runtime_error("counting node with an unknown slot");
    const std::vector<Target>& targets = outputTargets_[size_t(slot)];
    const std::string& name = outputNames_[size_t(slot)];
    if (targets.empty()) return;
    const bool noise = std::any_of(targets.begin(), targets.end(), [](const Target& t) { return t.noise >= 0; });
    if (noise && helper_ && v.type == ort::kElementFloat && v.count >= kSplitMinValues && !v.dims.empty() && v.dims[0] >= 2 &&
        std::all_of(targets.begin(), targets.end(), [](const Target& t) { return t.noise >= 0; })) {
      CountNoiseSplit(targets, v, name);
      return;
    }
    if (!helper_ || noise || v.type != ort::kElementFloat || v.count < kSplitMinValues) {
      states_->Count(targets, v, name);
      return;
    }
    std::vector<Target> part;  // the targets that count values, renumbered into the scratch states, without pads
    for (const Target& t : targets) {
      if (t.zerosOnly) continue;
      Target c = t;
      c.state = uint32_t(part.size());
      c.pads.clear();
      part.push_back(std::move(c));
    }
    scratch_->Reset(part.size());
    const size_t half = (v.count / 2) & ~size_t(63);
    TensorView head = v;  // keeps the dims: the pads' zeros are counted here
    head.count = half;
    TensorView tail = v;
    tail.data = static_cast<const float*>(v.data) + half;
    tail.count = v.count - half;
    std::string error;
    helper_->Start([&] {
      try {
        scratch_->Count(part, tail, name);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    try {
      states_->Count(targets, head, name);
    } catch (...) {
      helper_->Wait();
      throw;
    }
    helper_->Wait();
    if (!error.empty()) throw std::runtime_error(error);
    uint32_t k = 0;
    for (const Target& t : targets) {
      if (t.zerosOnly) continue;
      MergeState(states_->header(t.state), states_->hist(t.state), scratch_->header(k), scratch_->hist(k), states_->bins());
      ++k;
    }
  }
  // Noise targets of a batch: each image's sums from zero (NoiseImage), the second half of the images on the helper
  // thread, then merged in image order: the same sums as States::CountNoise's one image after the other.
  void CountNoiseSplit(const std::vector<Target>& targets, const TensorView& v, const std::string& name) {
    const size_t images = size_t(v.dims[0]);
    if (v.count % images != 0) throw std::runtime_error("tensor '" + name + "' does not split into its batch's images");
    const size_t per = v.count / images;
    const size_t half = images / 2;
    const float* d = static_cast<const float*>(v.data);
    for (const Target& t : targets) {
      std::vector<double> partial(images * kNoiseSums);
      helper_->Start([&] {
        for (size_t k = half; k < images; ++k) NoiseImage(partial.data() + k * kNoiseSums, d + k * per, per, t.scale);
      });
      for (size_t k = 0; k < half; ++k) NoiseImage(partial.data() + k * kNoiseSums, d + k * per, per, t.scale);
      helper_->Wait();
      for (size_t k = 0; k < images; ++k) states_->MergeNoiseInto(uint32_t(t.noise), partial.data() + k * kNoiseSums);
    }
  }
  void SetInGraphError(const std::string& e) {
    std::lock_guard<std::mutex> lock(errorMutex_);
    if (inGraphError_.empty()) inGraphError_ = e;
  }
  std::string inGraphError() {
    std::lock_guard<std::mutex> lock(errorMutex_);
    return inGraphError_;
  }

  void Opened(const Runtime* runtime, ort::Session* session, ort::CustomOpDomain* domain) {
    runtime_ = runtime;
    session_ = session;
    domain_ = domain;
    std::vector<uint8_t>().swap(model_);
    if (inGraph_ && countThreads_ >= 2) {
      helper_ = std::make_unique<HelperThread>();
      scratch_ = std::make_unique<States>(0, states_->bins());
    }
    counter_ = std::make_unique<CountingThread>(runtime, states_.get(), &outputNames_, &outputTargets_);
  }
  CountingThread& counter() { return *counter_; }
  void InferDone() { inferring_ = false; }
  // Called on the JS thread when a worker settles.
  void WorkerDone() {
    if (--inflight_ == 0 && closing_) ReleaseAll();
  }
  void FreeValues(std::vector<ort::Value*>& values) const {
    if (!runtime_) return;
    for (ort::Value*& v : values) {
      if (v) runtime_->api.ReleaseValue(v);
      v = nullptr;
    }
  }

  // Session options and model for the open worker.
  const std::string& libraryPath() const { return libraryPath_; }
  const std::vector<uint8_t>& model() const { return model_; }
  const std::string& modelPath() const { return modelPath_; }
  const SessionSettings& settings() const { return settings_; }

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Infer(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);

  Napi::Value Result(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (inflight_ > 0) throw Napi::Error::New(env, "OrtCollector.result() while a run or drain is in flight");
    const auto& h = states_->headers();
    const auto& g = states_->hists();
    Napi::Float64Array headers = Napi::Float64Array::New(env, h.size());
    Napi::Float64Array hists = Napi::Float64Array::New(env, g.size());
    std::copy(h.begin(), h.end(), headers.Data());
    std::copy(g.begin(), g.end(), hists.Data());
    Napi::Object out = Napi::Object::New(env);
    out.Set("headers", headers);
    out.Set("hists", hists);
    const auto& n = states_->noise();
    Napi::Float64Array noise = Napi::Float64Array::New(env, n.size());
    std::copy(n.begin(), n.end(), noise.Data());
    out.Set("noise", noise);
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    closing_ = true;
    if (inflight_ == 0) ReleaseAll();
    return info.Env().Undefined();
  }

  void ReleaseAll() {
    counter_.reset();  // stops the counting thread; frees what it had not counted
    if (session_ && runtime_) runtime_->api.ReleaseSession(session_);
    session_ = nullptr;
    if (domain_ && runtime_) runtime_->api.ReleaseCustomOpDomain(domain_);  // after the session that used it
    domain_ = nullptr;
    helper_.reset();
  }

  friend class OpenWorker;
  friend class InferWorker;
  friend class DrainWorker;

  std::string libraryPath_;
  std::vector<uint8_t> model_;  // the model's bytes, or empty with modelPath_ set
  std::string modelPath_;
  SessionSettings settings_;
  std::string inputName_;
  std::vector<std::string> outputNames_;
  std::vector<Target> inputTargets_;
  std::vector<std::vector<Target>> outputTargets_;
  std::unique_ptr<States> states_;

  const Runtime* runtime_ = nullptr;
  ort::Session* session_ = nullptr;
  std::unique_ptr<CountingThread> counter_;
  bool inGraph_ = false;
  std::string countOutput_;
  int countThreads_ = 1;
  CountOp countOp_;
  ort::CustomOpDomain* domain_ = nullptr;
  std::unique_ptr<HelperThread> helper_;
  std::unique_ptr<States> scratch_;
  std::mutex errorMutex_;
  std::string inGraphError_;
  int inflight_ = 0;
  bool opening_ = false;
  bool closing_ = false;
  bool inferring_ = false;  // one run at a time: the input's statistics are updated by the run's worker
};

CollectorWorker::CollectorWorker(Napi::Env env, Collector* owner, Napi::Object self, const char* name)
    : Napi::AsyncWorker(env, name), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)), self_(Napi::Persistent(self)) {}

void CollectorWorker::OnError(const Napi::Error& e) {
  Settle();
  deferred_.Reject(e.Value());
}

void CollectorWorker::Settle() { owner_->WorkerDone(); }

class OpenWorker : public CollectorWorker {
 public:
  using CollectorWorker::CollectorWorker;
  void Execute() override {
    const Runtime& rt = LoadRuntime(owner_->libraryPath());
    runtime_ = &rt;
    try {
      session_ = CreateSession(rt, owner_->settings(), owner_->model(), owner_->modelPath(), "", owner_->countOp() ? &owner_->countOp()->op : nullptr, &domain_);
    } catch (...) {
      if (domain_) rt.api.ReleaseCustomOpDomain(domain_);
      domain_ = nullptr;
      throw;
    }
  }
  void OnOK() override {
    owner_->Opened(runtime_, session_, domain_);
    Settle();
    deferred_.Resolve(Napi::String::New(Env(), runtime_->api.version));
  }

 private:
  const Runtime* runtime_ = nullptr;
  ort::Session* session_ = nullptr;
  ort::CustomOpDomain* domain_ = nullptr;
};

class InferWorker : public CollectorWorker {
 public:
  InferWorker(Napi::Env env, Collector* owner, Napi::Object self, Napi::Float32Array data, std::vector<int64_t> dims)
      : CollectorWorker(env, owner, self, "trtcalib:ortInfer"), data_(Napi::Persistent(data.As<Napi::Object>())), dims_(std::move(dims)) {
    const Runtime* rt = owner->runtime();
    Check(rt->api,
          rt->api.CreateTensorWithDataAsOrtValue(rt->cpu, data.Data(), data.ByteLength(), dims_.data(), dims_.size(), ort::kElementFloat, &input_),
          "onnxruntime input '" + owner->inputName() + "'");
    outputs_.assign(owner->inGraph() ? 1 : owner->outputNames().size(), nullptr);
  }
  ~InferWorker() override {
    owner_->FreeValues(outputs_);
    if (input_) owner_->runtime()->api.ReleaseValue(input_);
  }
  void Execute() override {
    const ort::Api& api = owner_->runtime()->api;
    std::vector<const char*> names;
    for (const auto& n : owner_->outputNames()) names.push_back(n.c_str());
    const char* inputName = owner_->inputName().c_str();
    const ort::Value* inputs[] = {input_};
    if (owner_->inGraph()) {
      // The counting nodes count as the model runs; their outputs are empty.
      names.assign(1, owner_->countOutput().c_str());
      Check(api, api.Run(owner_->session(), nullptr, &inputName, inputs, 1, names.data(), names.size(), outputs_.data()), "");
      owner_->FreeValues(outputs_);
      const std::string error = owner_->inGraphError();
      if (!error.empty()) throw std::runtime_error(error);
      if (!owner_->inputTargets().empty()) {
        TensorView v = View(api, input_, owner_->inputName());
        owner_->states().Count(owner_->inputTargets(), v, owner_->inputName());
      }
      return;
    }
    // Into the outputs of an earlier run of the same dims when there is one; should onnxruntime refuse them (an
    // output whose shape depends on the data), once more into fresh ones.
    std::vector<ort::Value*> spare = owner_->counter().TakeSpare(dims_);
    if (spare.size() == outputs_.size()) {
      outputs_ = std::move(spare);
      ort::Status* status = api.Run(owner_->session(), nullptr, &inputName, inputs, 1, names.data(), names.size(), outputs_.data());
      if (status) {
        api.ReleaseStatus(status);
        owner_->FreeValues(outputs_);
      }
    } else {
      owner_->FreeValues(spare);
    }
    if (!outputs_.empty() && !outputs_[0]) {
      Check(api, api.Run(owner_->session(), nullptr, &inputName, inputs, 1, names.data(), names.size(), outputs_.data()), "");
    }
    if (!owner_->inputTargets().empty()) {
      TensorView v = View(api, input_, owner_->inputName());
      owner_->states().Count(owner_->inputTargets(), v, owner_->inputName());
    }
    owner_->counter().Push(dims_, std::move(outputs_));  // waits while the previous run is being counted
    outputs_.clear();
  }
  void OnOK() override {
    owner_->InferDone();
    Settle();
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    owner_->InferDone();
    CollectorWorker::OnError(e);
  }

 private:
  Napi::ObjectReference data_;  // the input's memory, wrapped without a copy, stays alive until the run is done
  std::vector<int64_t> dims_;
  ort::Value* input_ = nullptr;
  std::vector<ort::Value*> outputs_;
};

class DrainWorker : public CollectorWorker {
 public:
  using CollectorWorker::CollectorWorker;
  void Execute() override {
    std::string error = owner_->counter().Drain();
    if (error.empty()) error = owner_->inGraphError();
    if (!error.empty()) throw std::runtime_error(error);
  }
  void OnOK() override {
    Settle();
    deferred_.Resolve(Env().Undefined());
  }
};

struct CountKernel {
  Collector* owner;
  int64_t slot;
};

void* TRTCALIB_ORT_CALL CountCreateKernel(const ort::CustomOp* op, const void*, const ort::KernelInfo* info) {
  const ort::Api& api = g_runtime->api;  // loaded before any session
  int64_t slot = -1;
  ort::Status* status = api.KernelInfoGetAttribute_int64(info, "slot", &slot);
  if (status) {
    api.ReleaseStatus(status);
    slot = -1;  // reported when the node runs
  }
  return new CountKernel{reinterpret_cast<const CountOp*>(op)->owner, slot};
}

void TRTCALIB_ORT_CALL CountCompute(void* kernel, ort::KernelContext* context) {
  auto* k = static_cast<CountKernel*>(kernel);
  const ort::Api& api = k->owner->runtime()->api;
  try {
    const ort::Value* input = nullptr;
    Check(api, api.KernelContext_GetInput(context, 0, &input), "counting node input");
    const size_t slot = size_t(k->slot);
    const std::string& name = k->slot >= 0 && slot < k->owner->outputNames().size() ? k->owner->outputNames()[slot] : std::string("?");
    if (k->owner->inGraphError().empty()) k->owner->CountInGraph(k->slot, View(api, const_cast<ort::Value*>(input), name));
  } catch (const std::exception& e) {
    k->owner->SetInGraphError(e.what());
  }
  const int64_t dims[] = {0};
  ort::Value* out = nullptr;
  ort::Status* status = api.KernelContext_GetOutput(context, 0, dims, 1, &out);
  if (status) {
    k->owner->SetInGraphError(std::string("counting node output: ") + api.GetErrorMessage(status));
    api.ReleaseStatus(status);
  }
}

void TRTCALIB_ORT_CALL CountDestroy(void* kernel) { delete static_cast<CountKernel*>(kernel); }
const char* TRTCALIB_ORT_CALL CountName(const ort::CustomOp*) { return "CountStatistics"; }
const char* TRTCALIB_ORT_CALL CountProvider(const ort::CustomOp*) { return nullptr; }  // the CPU provider
int TRTCALIB_ORT_CALL CountOutputType(const ort::CustomOp*, size_t) { return ort::kElementFloat; }
size_t TRTCALIB_ORT_CALL CountOne(const ort::CustomOp*) { return 1; }  // outputs
int TRTCALIB_ORT_CALL CountRequired(const ort::CustomOp*, size_t) { return ort::kCustomOpRequired; }
// Input 1: the previous counting node's output (optional; ignored), which orders the nodes (see withCountingNodes).
int TRTCALIB_ORT_CALL CountInputCharacteristic(const ort::CustomOp*, size_t index) { return index == 0 ? ort::kCustomOpRequired : ort::kCustomOpOptional; }
size_t TRTCALIB_ORT_CALL CountTwo(const ort::CustomOp*) { return 2; }
int TRTCALIB_ORT_CALL CountInputTypeAt(const ort::CustomOp*, size_t index) { return index == 0 ? 0 : ort::kElementFloat; }
int TRTCALIB_ORT_CALL CountMemoryType(const ort::CustomOp*, size_t) { return ort::kMemTypeDefault; }
int TRTCALIB_ORT_CALL CountArity(const ort::CustomOp*) { return 1; }
int TRTCALIB_ORT_CALL CountHomogeneous(const ort::CustomOp*) { return 1; }

void InitCountOp(CountOp& c, Collector* owner) {
  c.owner = owner;
  ort::CustomOp& op = c.op;
  op.version = ort::kCustomOpVersion;
  op.CreateKernel = CountCreateKernel;
  op.GetName = CountName;
  op.GetExecutionProviderType = CountProvider;
  op.GetInputType = CountInputTypeAt;
  op.GetInputTypeCount = CountTwo;
  op.GetOutputType = CountOutputType;
  op.GetOutputTypeCount = CountOne;
  op.KernelCompute = CountCompute;
  op.KernelDestroy = CountDestroy;
  op.GetInputCharacteristic = CountInputCharacteristic;
  op.GetOutputCharacteristic = CountRequired;
  op.GetInputMemoryType = CountMemoryType;
  op.GetVariadicInputMinArity = CountArity;
  op.GetVariadicInputHomogeneity = CountHomogeneous;
  op.GetVariadicOutputMinArity = CountArity;
  op.GetVariadicOutputHomogeneity = CountHomogeneous;
}

Napi::Value Collector::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (opening_ || session_) throw Napi::Error::New(env, "OrtCollector.open() called twice");
  if (closing_) throw Napi::Error::New(env, "OrtCollector was closed");
  opening_ = true;
  auto* worker = new OpenWorker(env, this, Value(), "trtcalib:ortOpen");
  inflight_++;
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value Collector::Infer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!session_ || closing_) throw Napi::Error::New(env, "OrtCollector.infer() before open() or after close()");
  if (inferring_) throw Napi::Error::New(env, "OrtCollector.infer() while another run is in flight: await it first");
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[1].IsArray()) {
    throw Napi::TypeError::New(env, "Expected (data: Float32Array, dims: number[])");
  }
  Napi::Array d = info[1].As<Napi::Array>();
  std::vector<int64_t> dims;
  size_t n = 1;
  for (uint32_t i = 0; i < d.Length(); ++i) {
    const int64_t v = d.Get(i).As<Napi::Number>().Int64Value();
    if (v < 0) throw Napi::RangeError::New(env, "Expected dims >= 0");
    dims.push_back(v);
    n *= size_t(v);
  }
  Napi::Float32Array data = info[0].As<Napi::Float32Array>();
  if (n != data.ElementLength()) throw Napi::RangeError::New(env, "The data length does not match the dims");
  auto* worker = new InferWorker(env, this, Value(), data, std::move(dims));
  inferring_ = true;
  inflight_++;
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value Collector::Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!session_ || closing_) throw Napi::Error::New(env, "OrtCollector.drain() before open() or after close()");
  auto* worker = new DrainWorker(env, this, Value(), "trtcalib:ortDrain");
  inflight_++;
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace

// ortRuntimeVersion(libraryPath): loads the onnxruntime library as the collector does and returns its version;
// throws with the reason ("onnxruntime library: ...") when it cannot be used. For `trt-calib doctor`.
Napi::Value OrtRuntimeVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "Expected the onnxruntime library path");
  try {
    return Napi::String::New(env, LoadRuntime(info[0].As<Napi::String>().Utf8Value()).api.version);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

namespace {

// Creates a session only for onnxruntime to write the graph it optimised to a file, then frees it.
class OptimizeWorker : public Napi::AsyncWorker {
 public:
  OptimizeWorker(Napi::Env env, std::string libraryPath, std::vector<uint8_t> model, SessionSettings settings, std::string outPath)
      : Napi::AsyncWorker(env, "trtcalib:ortOptimize"),
        deferred_(Napi::Promise::Deferred::New(env)),
        libraryPath_(std::move(libraryPath)),
        model_(std::move(model)),
        settings_(std::move(settings)),
        outPath_(std::move(outPath)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override {
    const Runtime& rt = LoadRuntime(libraryPath_);
    ort::Session* session = CreateSession(rt, settings_, model_, "", outPath_);
    rt.api.ReleaseSession(session);
    version_ = rt.api.version;
  }
  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), version_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string libraryPath_;
  std::vector<uint8_t> model_;
  SessionSettings settings_;
  std::string outPath_;
  std::string version_;
};

}  // namespace

// ortOptimizeModel(libraryPath, model: Uint8Array, config: { threads, optimization, configEntries }, outPath):
// Promise<string>. Opens the model as the collector would, with onnxruntime writing its optimised graph to
// outPath (config entries can send the weights to a side file), and frees the session; resolves to onnxruntime's
// version. src/stats/native-collect.ts edits that graph so that blocked activations are exported as they are.
Napi::Value OrtOptimizeModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsTypedArray() || !info[2].IsObject() || !info[3].IsString()) {
    throw Napi::TypeError::New(env, "Expected (libraryPath: string, model: Uint8Array, config: object, outPath: string)");
  }
  Napi::TypedArray model = info[1].As<Napi::TypedArray>();
  if (model.TypedArrayType() != napi_uint8_array || model.ByteLength() == 0) throw Napi::TypeError::New(env, "Expected a non-empty Uint8Array for the model");
  const uint8_t* bytes = model.As<Napi::Uint8Array>().Data();
  std::string outPath = info[3].As<Napi::String>().Utf8Value();
  if (outPath.empty()) throw Napi::TypeError::New(env, "Expected a path for the optimised model");
  auto* worker = new OptimizeWorker(env, info[0].As<Napi::String>().Utf8Value(), std::vector<uint8_t>(bytes, bytes + model.ByteLength()),
                                    SessionSettings::Parse(env, info[2].As<Napi::Object>()), std::move(outPath));
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

void InitOrtCollector(Napi::Env env, Napi::Object exports) {
  exports.Set("OrtCollector", Collector::Define(env));
  exports.Set("ortOptimizeModel", Napi::Function::New(env, OrtOptimizeModel, "ortOptimizeModel"));
  exports.Set("ortRuntimeVersion", Napi::Function::New(env, OrtRuntimeVersion, "ortRuntimeVersion"));
}

}  // namespace trtcalib
