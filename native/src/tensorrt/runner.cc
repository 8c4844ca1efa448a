// Running a serialized engine with enqueueV3, for the TensorRT backend of `compare` (src/backends/tensorrt.ts):
//   loadEngine(bytes, { device? }) -> Promise<Engine>
//   engine.io()  -> [{ name, mode: 'input'|'output', dtype, dims, profile?: { min, opt, max } }]
//   engine.run([{ name, dims, data: TypedArray }]) -> Promise<[{ name, dtype, dims, data: ArrayBuffer }]>
//   engine.release()
// Runs are short and never call back into JavaScript, so they use Napi::AsyncWorker (libuv's pool). Inputs are
// copied on the JS thread before the worker starts and outputs are copied into new ArrayBuffers after it ends:
// the worker never touches a JS value. One execution context per engine; runs on one engine are serialised.
#include "tensorrt/runner.h"

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "feeder/js_args.h"
#include "tensorrt/logger.h"
#include "tensorrt/network.h"
#include "tensorrt/trt_api.h"

namespace trtcalib {

namespace {

// Bytes per element; 0 for types the backend cannot exchange with JavaScript (packed int4/fp4...).
std::size_t ElementSize(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kBOOL: return 1;
    case nvinfer1::DataType::kUINT8: return 1;
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kINT64: return 8;
#endif
    default: return 0;
  }
}

struct DeviceBuffer {
  void* data = nullptr;
  std::size_t capacity = 0;
};

struct EngineState {
  BridgeLogger logger{nvinfer1::ILogger::Severity::kWARNING};  // declared first: destroyed last
  int device = 0;
  TrtPtr<nvinfer1::IRuntime> runtime;
  TrtPtr<nvinfer1::ICudaEngine> engine;
  TrtPtr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  std::mutex mu;
  std::map<std::string, DeviceBuffer> buffers;
  bool released = false;

  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    if (released) return;
    released = true;
    cudaSetDevice(device);
    for (auto& b : buffers) cudaFree(b.second.data);
    buffers.clear();
    context.reset();
    engine.reset();
    runtime.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
    stream = nullptr;
  }
  ~EngineState() { Release(); }

  void* Buffer(const std::string& name, std::size_t bytes) {
    DeviceBuffer& b = buffers[name];
    if (b.capacity < bytes || b.data == nullptr) {
      if (b.data != nullptr) cudaFree(b.data);
      b.data = nullptr;
      b.capacity = 0;
      cudaError_t status = cudaMalloc(&b.data, bytes == 0 ? 1 : bytes);
      if (status != cudaSuccess) {
        throw std::runtime_error("cudaMalloc for tensor \"" + name + "\" (" + std::to_string(bytes) +
                                 " bytes): " + cudaGetErrorString(status));
      }
      b.capacity = bytes;
    }
    return b.data;
  }
};

void Check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

struct HostTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;
};

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TensorRTEngine",
                       {InstanceMethod("io", &Engine::Io), InstanceMethod("run", &Engine::Run),
                        InstanceMethod("release", &Engine::ReleaseMethod)});
  }
  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "TensorRTEngine objects come from loadEngine()");
    }
    state_ = *info[0].As<Napi::External<std::shared_ptr<EngineState>>>().Data();
  }

 private:
  std::shared_ptr<EngineState> Live(Napi::Env env) {
    if (!state_ || state_->released) throw Napi::Error::New(env, "this TensorRT engine was released");
    return state_;
  }
  Napi::Value Io(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value ReleaseMethod(const Napi::CallbackInfo& info) {
    if (state_) state_->Release();
    return info.Env().Undefined();
  }
  std::shared_ptr<EngineState> state_;
};

Napi::Value Engine::Io(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = Live(env);
  std::lock_guard<std::mutex> lock(s->mu);
  nvinfer1::ICudaEngine& e = *s->engine;
  Napi::Array out = Napi::Array::New(env);
  for (int32_t i = 0; i < e.getNbIOTensors(); ++i) {
    const char* name = e.getIOTensorName(i);
    Napi::Object t = Napi::Object::New(env);
    bool input = e.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    std::vector<int64_t> dims = FromDims(e.getTensorShape(name));
    t.Set("name", Napi::String::New(env, name));
    t.Set("mode", Napi::String::New(env, input ? "input" : "output"));
    t.Set("dtype", Napi::String::New(env, DataTypeName(e.getTensorDataType(name))));
    t.Set("dims", DimsToJs(env, dims));
    bool dynamic = false;
    for (int64_t d : dims) dynamic = dynamic || d < 0;
    if (input && dynamic && e.getNbOptimizationProfiles() > 0) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("min", DimsToJs(env, FromDims(e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMIN))));
      p.Set("opt", DimsToJs(env, FromDims(e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kOPT))));
      p.Set("max", DimsToJs(env, FromDims(e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMAX))));
      t.Set("profile", p);
    }
    out.Set(static_cast<uint32_t>(i), t);
  }
  return out;
}

class RunWorker final : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<EngineState> state, std::vector<HostTensor> feeds)
      : Napi::AsyncWorker(env, "trt-calib engine run"),
        deferred_(Napi::Promise::Deferred::New(env)),
        state_(std::move(state)),
        feeds_(std::move(feeds)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->released) throw std::runtime_error("this TensorRT engine was released");
      Check(cudaSetDevice(state_->device), "cudaSetDevice");
      nvinfer1::ICudaEngine& e = *state_->engine;
      nvinfer1::IExecutionContext& ctx = *state_->context;
      state_->logger.ClearErrors();
      for (const HostTensor& f : feeds_) {
        if (!ctx.setInputShape(f.name.c_str(), ToDims(f.dims))) {
          throw std::runtime_error("TensorRT rejected the shape " + FormatDims(f.dims) + " for input \"" + f.name +
                                   "\" (outside the engine's optimization profile?)" +
                                   (state_->logger.Errors().empty() ? "" : ":\n" + state_->logger.Errors()));
        }
        void* device = state_->Buffer(f.name, f.bytes.size());
        Check(cudaMemcpyAsync(device, f.bytes.data(), f.bytes.size(), cudaMemcpyHostToDevice, state_->stream),
              "cudaMemcpyAsync (input)");
        ctx.setTensorAddress(f.name.c_str(), device);
      }
      for (int32_t i = 0; i < e.getNbIOTensors(); ++i) {
        const char* name = e.getIOTensorName(i);
        if (e.getTensorIOMode(name) != nvinfer1::TensorIOMode::kOUTPUT) continue;
        HostTensor out;
        out.name = name;
        out.dtype = DataTypeName(e.getTensorDataType(name));
        out.dims = FromDims(ctx.getTensorShape(name));
        std::size_t elements = 1;
        for (int64_t d : out.dims) {
          if (d < 0) {
            throw std::runtime_error("output \"" + out.name + "\" has a data-dependent shape (" + FormatDims(out.dims) +
                                     "), which the TensorRT backend does not support");
          }
          elements *= static_cast<std::size_t>(d);
        }
        std::size_t size = ElementSize(e.getTensorDataType(name));
        if (size == 0) throw std::runtime_error("output \"" + out.name + "\" has type " + out.dtype + ", which the TensorRT backend cannot return");
        out.bytes.resize(elements * size);
        ctx.setTensorAddress(name, state_->Buffer(out.name, out.bytes.size()));
        outputs_.push_back(std::move(out));
      }
      if (!ctx.enqueueV3(state_->stream)) {
        throw std::runtime_error("TensorRT could not run the engine (enqueueV3 failed)" +
                                 (state_->logger.Errors().empty() ? std::string() : ":\n" + state_->logger.Errors()));
      }
      for (HostTensor& out : outputs_) {
        Check(cudaMemcpyAsync(out.bytes.data(), state_->buffers[out.name].data, out.bytes.size(), cudaMemcpyDeviceToHost,
                              state_->stream),
              "cudaMemcpyAsync (output)");
      }
      Check(cudaStreamSynchronize(state_->stream), "running the engine");
    } catch (const std::exception& ex) {
      SetError(ex.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array out = Napi::Array::New(env, outputs_.size());
    for (uint32_t i = 0; i < outputs_.size(); ++i) {
      const HostTensor& t = outputs_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", Napi::String::New(env, t.name));
      o.Set("dtype", Napi::String::New(env, t.dtype));
      o.Set("dims", DimsToJs(env, t.dims));
      Napi::ArrayBuffer data = Napi::ArrayBuffer::New(env, t.bytes.size());
      if (!t.bytes.empty()) std::memcpy(data.Data(), t.bytes.data(), t.bytes.size());
      o.Set("data", data);
      out.Set(i, o);
    }
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<EngineState> state_;
  std::vector<HostTensor> feeds_;
  std::vector<HostTensor> outputs_;
};

Napi::Value Engine::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = Live(env);
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "engine.run(feeds): expected an array");
  auto array = info[0].As<Napi::Array>();
  std::vector<HostTensor> feeds;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    nvinfer1::ICudaEngine& e = *s->engine;
    for (uint32_t i = 0; i < array.Length(); ++i) {
      Napi::Object f = array.Get(i).As<Napi::Object>();
      HostTensor t;
      t.name = StringField(f, "name", "engine.run");
      t.dims = DimsValue(f.Get("dims"), "dims of " + t.name);
      Napi::Value data = f.Get("data");
      if (!data.IsTypedArray()) throw Napi::TypeError::New(env, "engine.run: data of \"" + t.name + "\" must be a typed array");
      bool found = false;
      for (int32_t k = 0; k < e.getNbIOTensors(); ++k) {
        if (t.name == e.getIOTensorName(k) && e.getTensorIOMode(e.getIOTensorName(k)) == nvinfer1::TensorIOMode::kINPUT) found = true;
      }
      if (!found) throw Napi::TypeError::New(env, "engine.run: the engine has no input named \"" + t.name + "\"");
      std::size_t size = ElementSize(e.getTensorDataType(t.name.c_str()));
      std::size_t elements = 1;
      for (int64_t d : t.dims) elements *= static_cast<std::size_t>(d < 0 ? 0 : d);
      auto typed = data.As<Napi::TypedArray>();
      if (size == 0 || typed.ByteLength() != elements * size) {
        throw Napi::TypeError::New(env, "engine.run: input \"" + t.name + "\" expects " + std::to_string(elements) + " " +
                                            DataTypeName(e.getTensorDataType(t.name.c_str())) + " values (" +
                                            FormatDims(t.dims) + ") but received " + std::to_string(typed.ByteLength()) +
                                            " bytes");
      }
      const uint8_t* bytes = static_cast<const uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
      t.bytes.assign(bytes, bytes + typed.ByteLength());
      feeds.push_back(std::move(t));
    }
  }
  auto* worker = new RunWorker(env, s, std::move(feeds));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

struct LoadResult {
  std::shared_ptr<EngineState> state;
};

class LoadWorker final : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::vector<uint8_t> bytes, int device, Napi::FunctionReference* constructor)
      : Napi::AsyncWorker(env, "trt-calib engine load"),
        deferred_(Napi::Promise::Deferred::New(env)),
        bytes_(std::move(bytes)),
        device_(device),
        constructor_(constructor) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      auto s = std::make_shared<EngineState>();
      s->device = device_;
      Check(cudaSetDevice(device_), "cudaSetDevice");
      s->runtime.reset(nvinfer1::createInferRuntime(s->logger));
      if (!s->runtime) throw std::runtime_error("TensorRT could not create a runtime:\n" + s->logger.Errors());
      s->engine.reset(s->runtime->deserializeCudaEngine(bytes_.data(), bytes_.size()));
      if (!s->engine) {
        throw std::runtime_error("TensorRT could not load the engine (built by another TensorRT version or for another "
                                 "GPU?)" + (s->logger.Errors().empty() ? std::string() : ":\n" + s->logger.Errors()));
      }
      s->context.reset(s->engine->createExecutionContext());
      if (!s->context) throw std::runtime_error("TensorRT could not create an execution context:\n" + s->logger.Errors());
      Check(cudaStreamCreate(&s->stream), "cudaStreamCreate");
      state_ = s;
    } catch (const std::exception& ex) {
      SetError(ex.what());
    }
    bytes_.clear();
    bytes_.shrink_to_fit();
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto* holder = new std::shared_ptr<EngineState>(state_);
    auto external = Napi::External<std::shared_ptr<EngineState>>::New(
        env, holder, [](Napi::Env, std::shared_ptr<EngineState>* h) { delete h; });
    deferred_.Resolve(constructor_->New({external}));
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> bytes_;
  int device_;
  Napi::FunctionReference* constructor_;
  std::shared_ptr<EngineState> state_;
};

Napi::Value LoadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "loadEngine(bytes, options?): expected the engine bytes");
  std::vector<uint8_t> bytes = BytesValue(info[0], "the engine bytes");
  int device = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    if (auto v = OptionalField(info[1].As<Napi::Object>(), "device"); !v.IsEmpty()) device = static_cast<int>(NumberValue(v, "device"));
  }
  auto* constructor = env.GetInstanceData<Napi::FunctionReference>();
  auto* worker = new LoadWorker(env, std::move(bytes), device, constructor);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// What doctor shows: versions of the TensorRT library actually loaded and of CUDA, and the GPUs.
Napi::Value TensorRTInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("compiledAgainst", Napi::String::New(env, CompiledTensorRTVersion()));
  out.Set("libraryVersion", Napi::Number::New(env, getInferLibVersion()));
  out.Set("implicitQuantization", Napi::Boolean::New(env, TRTCALIB_IMPLICIT_QUANT));
  int runtime = 0;
  int driver = 0;
  out.Set("cudaRuntimeVersion", cudaRuntimeGetVersion(&runtime) == cudaSuccess ? Napi::Value(Napi::Number::New(env, runtime)) : env.Null());
  out.Set("cudaDriverVersion", cudaDriverGetVersion(&driver) == cudaSuccess ? Napi::Value(Napi::Number::New(env, driver)) : env.Null());
  Napi::Array devices = Napi::Array::New(env);
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    out.Set("deviceError", Napi::String::New(env, cudaGetErrorString(status)));
    count = 0;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", i);
    d.Set("name", Napi::String::New(env, prop.name));
    d.Set("computeCapability", Napi::String::New(env, std::to_string(prop.major) + "." + std::to_string(prop.minor)));
    d.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(prop.totalGlobalMem)));
    devices.Set(devices.Length(), d);
  }
  out.Set("devices", devices);
  return out;
}

}  // namespace

void InitRunner(Napi::Env env, Napi::Object exports) {
  Napi::Function engine = Engine::Define(env);
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(engine)));
  exports.Set("loadEngine", Napi::Function::New(env, LoadEngine, "loadEngine"));
  exports.Set("tensorrtInfo", Napi::Function::New(env, TensorRTInfo, "tensorrtInfo"));
}

}  // namespace trtcalib
