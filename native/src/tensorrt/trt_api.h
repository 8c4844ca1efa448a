// The one place that includes TensorRT's headers, so that every TensorRT-facing file sees the same version gates.
//
// Version gates (NV_TENSORRT_MAJOR comes from NvInferVersion.h):
//   TRTCALIB_IMPLICIT_QUANT  8.x-10.x: IInt8Calibrator, BuilderFlag::kINT8/kFP16, per-layer precisions.
//                            TensorRT 11 removed implicit quantization: no calibrators, no INT8/FP16 builder flags,
//                            networks are always strongly typed, and INT8 comes from Q/DQ nodes in the ONNX model.
//   TRTCALIB_PROGRESS        10.x on: IProgressMonitor (build progress, and cancellation through stepComplete).
//   TRTCALIB_EXPLICIT_FLAG   8.x: createNetworkV2 needs kEXPLICIT_BATCH (deprecated in 10.0, gone in 11).
//   TRTCALIB_STRONGLY_TYPED  9.x-10.x: strong typing is an opt-in network flag (always on in 11).
// The calibrator interfaces are deprecated since 10.1: their uses are wrapped in TRTCALIB_ALLOW_DEPRECATED_BEGIN/END.
#pragma once

#include <memory>
#include <string>

#if defined(_MSC_VER)
#define TRTCALIB_ALLOW_DEPRECATED_BEGIN __pragma(warning(push)) __pragma(warning(disable : 4996))
#define TRTCALIB_ALLOW_DEPRECATED_END __pragma(warning(pop))
#else
#define TRTCALIB_ALLOW_DEPRECATED_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
#define TRTCALIB_ALLOW_DEPRECATED_END _Pragma("GCC diagnostic pop")
#endif

// TensorRT's own headers use their deprecated classes in inline code (e.g. IPluginV2 in NvInfer.h); silence those
// warnings, which are not ours, for the headers only.
TRTCALIB_ALLOW_DEPRECATED_BEGIN
#include <NvInfer.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>
TRTCALIB_ALLOW_DEPRECATED_END

#if !defined(NV_TENSORRT_MAJOR)
#error "NvInferVersion.h did not define NV_TENSORRT_MAJOR"
#endif
#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 6)
#error "the trt-calib TensorRT bridge needs TensorRT 8.6 or newer"
#endif

#define TRTCALIB_IMPLICIT_QUANT (NV_TENSORRT_MAJOR < 11)
#define TRTCALIB_PROGRESS (NV_TENSORRT_MAJOR >= 10)
#define TRTCALIB_EXPLICIT_FLAG (NV_TENSORRT_MAJOR < 10)
#define TRTCALIB_STRONGLY_TYPED_FLAG (NV_TENSORRT_MAJOR >= 9 && NV_TENSORRT_MAJOR < 11)


namespace trtcalib {

// TensorRT objects are released with delete since 8.0.
template <typename T>
struct TrtDeleter {
  void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDeleter<T>>;

// "10.16.0": the TensorRT the bridge was compiled against.
inline std::string CompiledTensorRTVersion() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH);
}

}  // namespace trtcalib
