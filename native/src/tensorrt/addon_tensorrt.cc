// The TensorRT bridge: a second addon (trt_calib_tensorrt.node), built only when native/find-tensorrt.js finds
// TensorRT and CUDA. It is separate from trt_calib.node so that a machine where libnvinfer cannot be loaded (moved,
// another version, no driver) loses only `build` and the TensorRT backend, never the statistics kernels.
#include <napi.h>

#include "feeder/feeder_binding.h"
#include "tensorrt/builder.h"
#include "tensorrt/runner.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  trtcalib::InitFeeder(env, exports);  // the same self-test, here running the feeder code linked into the bridge
  trtcalib::InitBuilder(env, exports);
  trtcalib::InitRunner(env, exports);
  return exports;
}

NODE_API_MODULE(trt_calib_tensorrt, Init)
