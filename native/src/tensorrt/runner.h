// Registers loadEngine (enqueueV3 runner for the TensorRT backend) and tensorrtInfo (versions, GPUs).
#pragma once

#include <napi.h>

namespace trtcalib {

void InitRunner(Napi::Env env, Napi::Object exports);

}  // namespace trtcalib
