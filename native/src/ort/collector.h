// OrtCollector (./collector.cc): activation statistics counted next to onnxruntime, through its C API.
#pragma once
#include <napi.h>

namespace trtcalib {
void InitOrtCollector(Napi::Env env, Napi::Object exports);
}  // namespace trtcalib
