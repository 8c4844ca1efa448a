// Registers the feeder's test-only entry point (feederSelfTest). Always built: no TensorRT or CUDA needed.
#pragma once

#include <napi.h>

namespace trtcalib {

void InitFeeder(Napi::Env env, Napi::Object exports);

}  // namespace trtcalib
