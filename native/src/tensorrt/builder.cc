// inspectOnnx and buildEngine: the TensorRT builder, run on a Task's own thread (see feeder/task.h for why not a
// libuv worker). TypeScript (src/backends/tensorrt.ts) validates every option and resolves names first; this file
// only maps the plain options onto TensorRT's builder config:
//   INT8/FP16 flags, workspace, timing cache, an optimization profile for dynamic inputs, the calibrator (fed by
//   the BatchFeeder) with its calibration profile, per-layer precisions with precision constraints, progress.
// TensorRT 11 (no implicit quantization): no flags, no calibrator, no per-layer precisions; the network is
// strongly typed and INT8 comes from the model's Q/DQ nodes.
#include "tensorrt/builder.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "feeder/batch_feeder.h"
#include "feeder/js_args.h"
#include "feeder/task.h"
#include "tensorrt/calibrators.h"
#include "tensorrt/cuda_memory.h"
#include "tensorrt/logger.h"
#include "tensorrt/network.h"

namespace trtcalib {

namespace {

struct ProfileEntry {
  std::string input;
  std::vector<int64_t> min, opt, max;
};

struct LayerPrecision {
  std::string layer;
  std::string precision;  // int8 | fp16 | fp32
};

struct BuildSpec {
  std::string model;
  bool int8 = false;
  bool fp16 = false;
  bool stronglyTyped = false;
  double workspaceBytes = 0;  // 0: TensorRT's default (the device's memory)
  bool useTimingCache = false;
  std::vector<uint8_t> timingCache;  // may be empty: start a new one
  std::vector<ProfileEntry> profile;
  // Calibration (8.x-10.x). When callbacks.nextBatch is missing, only the cache is offered.
  bool calibrate = false;
  std::string calibrationInput;
  std::vector<int64_t> calibrationDims;
  std::string algorithm = "entropy2";
  double quantile = 0.5;
  double regressionCutoff = 0.5;
  std::vector<LayerPrecision> layerPrecisions;
  bool obeyPrecisions = true;
  std::vector<std::string> markOutputs;
  std::string logLevel = "warning";
  int device = 0;
};

struct BuildResult {
  std::shared_ptr<nvinfer1::IHostMemory> engine;
  std::shared_ptr<nvinfer1::IHostMemory> timingCache;
  NetworkDesc network;
  BatchFeeder::Stats calibration;
  bool calibrated = false;
  double seconds = 0;
};

std::shared_ptr<nvinfer1::IHostMemory> Hold(nvinfer1::IHostMemory* memory) {
  return std::shared_ptr<nvinfer1::IHostMemory>(memory, [](nvinfer1::IHostMemory* m) { delete m; });
}

std::vector<int64_t> DimsField(Napi::Object o, const char* key) { return DimsValue(o.Get(key), key); }

BuildSpec ReadSpec(Napi::Object o) {
  BuildSpec s;
  s.model = StringField(o, "model", "buildEngine");
  if (auto v = OptionalField(o, "int8"); !v.IsEmpty()) s.int8 = v.ToBoolean();
  if (auto v = OptionalField(o, "fp16"); !v.IsEmpty()) s.fp16 = v.ToBoolean();
  if (auto v = OptionalField(o, "stronglyTyped"); !v.IsEmpty()) s.stronglyTyped = v.ToBoolean();
  if (auto v = OptionalField(o, "workspaceBytes"); !v.IsEmpty()) s.workspaceBytes = NumberValue(v, "workspaceBytes");
  if (auto v = OptionalField(o, "timingCache"); !v.IsEmpty()) {
    s.useTimingCache = true;
    s.timingCache = BytesValue(v, "timingCache");
  }
  if (auto v = OptionalField(o, "profile"); !v.IsEmpty()) {
    if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), "profile: expected an array");
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      s.profile.push_back({StringField(e, "input", "profile"), DimsField(e, "min"), DimsField(e, "opt"), DimsField(e, "max")});
    }
  }
  if (auto v = OptionalField(o, "calibration"); !v.IsEmpty()) {
    Napi::Object c = v.As<Napi::Object>();
    s.calibrate = true;
    s.calibrationInput = StringField(c, "input", "calibration");
    s.calibrationDims = DimsField(c, "dims");
    s.algorithm = StringField(c, "algorithm", "calibration");
    if (auto q = OptionalField(c, "quantile"); !q.IsEmpty()) s.quantile = NumberValue(q, "quantile");
    if (auto r = OptionalField(c, "regressionCutoff"); !r.IsEmpty()) s.regressionCutoff = NumberValue(r, "regressionCutoff");
  }
  if (auto v = OptionalField(o, "layerPrecisions"); !v.IsEmpty()) {
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      s.layerPrecisions.push_back({StringField(e, "layer", "layerPrecisions"), StringField(e, "precision", "layerPrecisions")});
    }
  }
  if (auto v = OptionalField(o, "precisionConstraints"); !v.IsEmpty()) {
    s.obeyPrecisions = v.ToString().Utf8Value() != "prefer";
  }
  if (auto v = OptionalField(o, "markOutputs"); !v.IsEmpty()) s.markOutputs = StringsValue(v, "markOutputs");
  if (auto v = OptionalField(o, "logLevel"); !v.IsEmpty()) s.logLevel = v.ToString().Utf8Value();
  if (auto v = OptionalField(o, "device"); !v.IsEmpty()) s.device = static_cast<int>(NumberValue(v, "device"));
  return s;
}

#if TRTCALIB_PROGRESS
// Build phases go to JavaScript as onProgress events; returning false from stepComplete is how TensorRT lets an
// application stop a build, so a cancel or a JS error ends the build within one step. TensorRT calls it from several
// internal threads: everything here is thread-safe (Task::Progress posts under a lock).
class ProgressMonitor final : public nvinfer1::IProgressMonitor {
 public:
  explicit ProgressMonitor(Task& task) : task_(task) {}
  void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override {
    std::string phase = phaseName ? phaseName : "";
    std::string parent = parentPhase ? parentPhase : "";
    task_.Progress([phase, parent, nbSteps](Napi::Env env) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("event", "start");
      e.Set("phase", phase);
      e.Set("parent", parent.empty() ? env.Null() : Napi::String::New(env, parent));
      e.Set("steps", nbSteps);
      return static_cast<Napi::Value>(e);
    });
  }
  bool stepComplete(char const* phaseName, int32_t step) noexcept override {
    // Tactic timing reports thousands of steps, from several threads: forward at most ten a second.
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    int64_t last = lastStepMs_.load();
    if (now - last >= 100 && lastStepMs_.compare_exchange_strong(last, now)) {
      std::string phase = phaseName ? phaseName : "";
      task_.Progress([phase, step](Napi::Env env) {
        Napi::Object e = Napi::Object::New(env);
        e.Set("event", "step");
        e.Set("phase", phase);
        e.Set("step", step + 1);
        return static_cast<Napi::Value>(e);
      });
    }
    return !task_.Stopped();
  }
  void phaseFinish(char const* phaseName) noexcept override {
    std::string phase = phaseName ? phaseName : "";
    task_.Progress([phase](Napi::Env env) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("event", "finish");
      e.Set("phase", phase);
      return static_cast<Napi::Value>(e);
    });
  }

 private:
  Task& task_;
  std::atomic<int64_t> lastStepMs_{0};
};
#endif

nvinfer1::ITensor* FindTensor(nvinfer1::INetworkDefinition& network, const std::string& name) {
  for (int32_t i = 0; i < network.getNbInputs(); ++i) {
    if (name == network.getInput(i)->getName()) return network.getInput(i);
  }
  for (int32_t i = 0; i < network.getNbLayers(); ++i) {
    nvinfer1::ILayer* layer = network.getLayer(i);
    for (int32_t j = 0; j < layer->getNbOutputs(); ++j) {
      nvinfer1::ITensor* t = layer->getOutput(j);
      if (t != nullptr && name == t->getName()) return t;
    }
  }
  return nullptr;
}

nvinfer1::ILayer* FindLayer(nvinfer1::INetworkDefinition& network, const std::string& name) {
  for (int32_t i = 0; i < network.getNbLayers(); ++i) {
    nvinfer1::ILayer* layer = network.getLayer(i);
    if (layer->getName() != nullptr && name == layer->getName()) return layer;
  }
  return nullptr;
}

bool HasDynamicDims(nvinfer1::ITensor& t) {
  nvinfer1::Dims d = t.getDimensions();
  for (int32_t i = 0; i < d.nbDims; ++i) {
    if (d.d[i] < 0) return true;
  }
  return false;
}

void SetProfile(nvinfer1::IOptimizationProfile& profile, const std::string& input, const std::vector<int64_t>& min,
                const std::vector<int64_t>& opt, const std::vector<int64_t>& max) {
  using nvinfer1::OptProfileSelector;
  if (!profile.setDimensions(input.c_str(), OptProfileSelector::kMIN, ToDims(min)) ||
      !profile.setDimensions(input.c_str(), OptProfileSelector::kOPT, ToDims(opt)) ||
      !profile.setDimensions(input.c_str(), OptProfileSelector::kMAX, ToDims(max))) {
    throw std::runtime_error("TensorRT rejected the shapes for input \"" + input + "\" (min " + FormatDims(min) +
                             ", opt " + FormatDims(opt) + ", max " + FormatDims(max) +
                             "): each needs the input's rank, and min <= opt <= max");
  }
}

BuildResult Build(Task& task, [[maybe_unused]] std::shared_ptr<Task> taskRef, const BuildSpec& spec, BridgeLogger& logger) {
  auto started = std::chrono::steady_clock::now();
  BuildResult result;
  // Declared first so that they outlive every TensorRT object that uses them (TensorRT requires it).
#if TRTCALIB_PROGRESS
  ProgressMonitor monitor(task);
#endif
  TrtPtr<nvinfer1::ITimingCache> timingCache;
  std::shared_ptr<BatchFeeder> feeder;
#if TRTCALIB_IMPLICIT_QUANT
  TRTCALIB_ALLOW_DEPRECATED_BEGIN
  std::unique_ptr<nvinfer1::IInt8Calibrator> calibrator;
  TRTCALIB_ALLOW_DEPRECATED_END
#endif
  cudaError_t cuda = cudaSetDevice(spec.device);
  if (cuda != cudaSuccess) {
    throw std::runtime_error("CUDA could not use device " + std::to_string(spec.device) + ": " + cudaGetErrorString(cuda));
  }
  ParsedNetwork parts = ParseOnnx(logger, spec.model, spec.stronglyTyped);
  nvinfer1::INetworkDefinition& network = *parts.network;

  for (const auto& name : spec.markOutputs) {
    nvinfer1::ITensor* t = FindTensor(network, name);
    if (t == nullptr) throw std::runtime_error("the network has no tensor named \"" + name + "\" to mark as an output");
    if (!t->isNetworkOutput()) network.markOutput(*t);
  }
  result.network = DescribeNetwork(network);

  TrtPtr<nvinfer1::IBuilderConfig> config(parts.builder->createBuilderConfig());
  if (!config) throw std::runtime_error("TensorRT could not create a builder config:\n" + logger.Errors());
  if (spec.workspaceBytes > 0) {
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<std::size_t>(spec.workspaceBytes));
  }

  // The optimization profile: needed as soon as one input has a dynamic dim.
  bool dynamic = false;
  for (int32_t i = 0; i < network.getNbInputs(); ++i) dynamic = dynamic || HasDynamicDims(*network.getInput(i));
  if (dynamic || !spec.profile.empty()) {
    nvinfer1::IOptimizationProfile* profile = parts.builder->createOptimizationProfile();
    for (const auto& e : spec.profile) SetProfile(*profile, e.input, e.min, e.opt, e.max);
    if (config->addOptimizationProfile(profile) < 0) {
      throw std::runtime_error("TensorRT rejected the optimization profile (every dynamic input needs min/opt/max "
                               "shapes):\n" + logger.Errors());
    }
  }

  if (spec.useTimingCache) {
    timingCache.reset(config->createTimingCache(spec.timingCache.data(), spec.timingCache.size()));
    if (!timingCache) throw std::runtime_error("TensorRT could not read the timing cache:\n" + logger.Errors());
    if (!config->setTimingCache(*timingCache, false)) {
      throw std::runtime_error("TensorRT rejected the timing cache (made by another TensorRT version or GPU?)");
    }
  }

#if TRTCALIB_PROGRESS
  config->setProgressMonitor(&monitor);
#endif

#if TRTCALIB_IMPLICIT_QUANT
  TRTCALIB_ALLOW_DEPRECATED_BEGIN
  if (spec.int8) config->setFlag(nvinfer1::BuilderFlag::kINT8);
  if (spec.fp16) config->setFlag(nvinfer1::BuilderFlag::kFP16);
  if (spec.calibrate) {
    nvinfer1::ITensor* input = FindTensor(network, spec.calibrationInput);
    if (input == nullptr || !input->isNetworkInput()) {
      throw std::runtime_error("the network has no input named \"" + spec.calibrationInput + "\" to calibrate");
    }
    FeederInput feederInput;
    feederInput.name = spec.calibrationInput;
    feederInput.dims = spec.calibrationDims;
    feederInput.reportedBatchSize = 1;  // explicit batch: the batch is in the dims (as Polygraphy does)
    feeder = std::make_shared<BatchFeeder>(taskRef, feederInput, std::make_unique<CudaMemory>());
    calibrator = MakeCalibrator(spec.algorithm, feeder, spec.quantile, spec.regressionCutoff);
    config->setInt8Calibrator(calibrator.get());
    if (HasDynamicDims(*input)) {
      // TensorRT calibrates on one fixed shape: the calibration profile pins the input to the batch shape.
      nvinfer1::IOptimizationProfile* calib = parts.builder->createOptimizationProfile();
      SetProfile(*calib, spec.calibrationInput, spec.calibrationDims, spec.calibrationDims, spec.calibrationDims);
      if (!config->setCalibrationProfile(calib)) {
        throw std::runtime_error("TensorRT rejected the calibration profile " + FormatDims(spec.calibrationDims) +
                                 " for input \"" + spec.calibrationInput + "\":\n" + logger.Errors());
      }
    }
  }
  for (const auto& lp : spec.layerPrecisions) {
    nvinfer1::ILayer* layer = FindLayer(network, lp.layer);
    if (layer == nullptr) throw std::runtime_error("the network has no layer named \"" + lp.layer + "\"");
    nvinfer1::DataType type = lp.precision == "int8" ? nvinfer1::DataType::kINT8
                              : lp.precision == "fp16" ? nvinfer1::DataType::kHALF
                                                       : nvinfer1::DataType::kFLOAT;
    layer->setPrecision(type);
    if (type != nvinfer1::DataType::kINT8) {
      // Keep the layer's float outputs in its precision too, or TensorRT may hand INT8 to the next layer.
      for (int32_t j = 0; j < layer->getNbOutputs(); ++j) {
        nvinfer1::DataType out = layer->getOutput(j)->getType();
        if (out == nvinfer1::DataType::kFLOAT || out == nvinfer1::DataType::kHALF) layer->setOutputType(j, type);
      }
    }
  }
  if (!spec.layerPrecisions.empty()) {
    config->setFlag(spec.obeyPrecisions ? nvinfer1::BuilderFlag::kOBEY_PRECISION_CONSTRAINTS
                                        : nvinfer1::BuilderFlag::kPREFER_PRECISION_CONSTRAINTS);
  }
  TRTCALIB_ALLOW_DEPRECATED_END
#else
  if (spec.calibrate || !spec.layerPrecisions.empty() || spec.int8 || spec.fp16) {
    throw std::runtime_error("TensorRT " + CompiledTensorRTVersion() +
                             " has no implicit quantization (no calibrators, INT8/FP16 flags or layer precisions): "
                             "build the Q/DQ model from `trt-calib quantize` instead");
  }
#endif

  nvinfer1::IHostMemory* serialized = parts.builder->buildSerializedNetwork(network, *config);
  result.engine = Hold(serialized);
  if (feeder) {
    result.calibration = feeder->GetStats();
    result.calibrated = true;
  }
  if (task.Stopped()) return result;  // a cancel or a JS error: the task rejects with that
  if (feeder && result.calibration.batchRequestedWithoutSource) {
    task.FailNative("TensorRT did not use the calibration cache and asked for calibration batches, which this build "
                    "has none of",
                    "ERR_TRT_CALIB_CACHE_REJECTED");
    return result;
  }
  if (!serialized) {
    std::string errors = logger.Errors();
    throw std::runtime_error("TensorRT could not build the engine" + (errors.empty() ? std::string(".") : ":\n" + errors));
  }
  if (spec.useTimingCache && config->getTimingCache() != nullptr) {
    result.timingCache = Hold(config->getTimingCache()->serialize());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

Napi::Value StatsToJs(Napi::Env env, const BuildResult& r) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("used", Napi::Boolean::New(env, r.calibrated));
  c.Set("batches", Napi::Number::New(env, static_cast<double>(r.calibration.batches)));
  c.Set("cacheReads", Napi::Number::New(env, static_cast<double>(r.calibration.cacheReads)));
  c.Set("cacheBytesRead", Napi::Number::New(env, static_cast<double>(r.calibration.cacheBytesRead)));
  c.Set("cacheWrites", Napi::Number::New(env, static_cast<double>(r.calibration.cacheWrites)));
  c.Set("cacheBytesWritten", Napi::Number::New(env, static_cast<double>(r.calibration.cacheBytesWritten)));
  return c;
}

// buildEngine(options, callbacks) -> { done: Promise<result>, cancel(reason?) }
Napi::Value BuildEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "buildEngine(options, callbacks): expected two objects");
  }
  BuildSpec spec = ReadSpec(info[0].As<Napi::Object>());
  std::shared_ptr<Task> task = Task::Create(env, info[1].As<Napi::Object>(), "trt-calib engine build");
  return task->Start(env, [spec](Task& t) {
    // The logger outlives every TensorRT object Build() creates (they are destroyed before it returns).
    BridgeLogger logger(BridgeLogger::ParseSeverity(spec.logLevel));
    logger.Attach(t.shared_from_this());
    TaskOutcome outcome;
    try {
      auto result = std::make_shared<BuildResult>(Build(t, t.shared_from_this(), spec, logger));
      outcome.result = [result](Napi::Env e) -> Napi::Value {
        Napi::Object out = Napi::Object::New(e);
        out.Set("engine", result->engine ? Napi::Value(Napi::Buffer<uint8_t>::Copy(
                                               e, static_cast<const uint8_t*>(result->engine->data()),
                                               result->engine->size()))
                                         : e.Null());
        out.Set("timingCache", result->timingCache
                                   ? Napi::Value(Napi::Buffer<uint8_t>::Copy(
                                         e, static_cast<const uint8_t*>(result->timingCache->data()),
                                         result->timingCache->size()))
                                   : e.Null());
        out.Set("network", NetworkDescToJs(e, result->network));
        out.Set("calibration", StatsToJs(e, *result));
        out.Set("seconds", Napi::Number::New(e, result->seconds));
        out.Set("tensorrt", Napi::String::New(e, CompiledTensorRTVersion()));
        return out;
      };
    } catch (const std::exception& e) {
      t.FailNative(e.what());
    }
    logger.Attach(nullptr);
    return outcome;
  });
}

// inspectOnnx(options: { model, stronglyTyped? }, callbacks: { onLog? }) -> { done: Promise<network>, cancel }
Napi::Value InspectOnnx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "inspectOnnx(options): expected an object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string model = StringField(o, "model", "inspectOnnx");
  bool stronglyTyped = false;
  if (auto v = OptionalField(o, "stronglyTyped"); !v.IsEmpty()) stronglyTyped = v.ToBoolean();
  Napi::Object callbacks = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  std::shared_ptr<Task> task = Task::Create(env, callbacks, "trt-calib ONNX inspection");
  return task->Start(env, [model, stronglyTyped](Task& t) {
    BridgeLogger logger;
    TaskOutcome outcome;
    try {
      ParsedNetwork parts = ParseOnnx(logger, model, stronglyTyped);
      auto desc = std::make_shared<NetworkDesc>(DescribeNetwork(*parts.network));
      outcome.result = [desc](Napi::Env e) -> Napi::Value { return NetworkDescToJs(e, *desc); };
    } catch (const std::exception& e) {
      t.FailNative(e.what());
    }
    return outcome;
  });
}

}  // namespace

void InitBuilder(Napi::Env env, Napi::Object exports) {
  exports.Set("buildEngine", Napi::Function::New(env, BuildEngine, "buildEngine"));
  exports.Set("inspectOnnx", Napi::Function::New(env, InspectOnnx, "inspectOnnx"));
}

}  // namespace trtcalib
