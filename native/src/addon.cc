// trt-calib native addon: module initialisation only. Each part registers its own functions.
// Heavy work runs on libuv worker threads (Napi::AsyncWorker) and never touches JS values there.
#include <napi.h>

#include "feeder/feeder_binding.h"
#include "ort/collector.h"
#include "stats/stats.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// keepLargeAllocationsMapped(bytes): glibc only; fixes malloc's mmap threshold at `bytes` (no dynamic raise after
// a large free) and its trim threshold at twice that, so that the large, short-lived buffers of image decoding go
// back to the system when freed. See configureSharp() in src/datasets/preprocess.ts. Returns whether it applied.
static Napi::Value KeepLargeAllocationsMapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "Expected a number of bytes for keepLargeAllocationsMapped");
  }
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 4096 && bytes <= (1 << 25))) {
    throw Napi::RangeError::New(env, "Expected 4096 to 33554432 bytes for keepLargeAllocationsMapped");
  }
#if defined(__GLIBC__)
  const int threshold = static_cast<int>(bytes);
  const bool applied = mallopt(M_MMAP_THRESHOLD, threshold) == 1 && mallopt(M_TRIM_THRESHOLD, 2 * threshold) == 1;
  return Napi::Boolean::New(env, applied);
#else
  return Napi::Boolean::New(env, false);
#endif
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  trtcalib::InitStats(env, exports);
  trtcalib::InitFeeder(env, exports);
  trtcalib::InitOrtCollector(env, exports);
  exports.Set("keepLargeAllocationsMapped", Napi::Function::New(env, KeepLargeAllocationsMapped, "keepLargeAllocationsMapped"));
  return exports;
}

NODE_API_MODULE(trt_calib, Init)
