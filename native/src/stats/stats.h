// Activation statistics kernels: registration of the N-API functions (see stats_binding.cc).
#pragma once
#include <napi.h>

namespace trtcalib {
void InitStats(Napi::Env env, Napi::Object exports);
}  // namespace trtcalib
