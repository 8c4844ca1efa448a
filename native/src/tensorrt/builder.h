// Registers inspectOnnx and buildEngine (TensorRT builder on a Task thread).
#pragma once

#include <napi.h>

namespace trtcalib {

void InitBuilder(Napi::Env env, Napi::Object exports);

}  // namespace trtcalib
