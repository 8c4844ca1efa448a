// trt-calib native addon: module initialisation only. Each part registers its own functions.
// Heavy work runs on libuv worker threads (Napi::AsyncWorker) and never touches JS values there.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "feeder/feeder_binding.h"
#include "ort/collector.h"
#include "stats/stats.h"

// trimMemory(): hands memory freed by native allocations back to the operating system (glibc's malloc_trim; a
// no-op elsewhere). Image decoding frees many large blocks of varying sizes from several threads; glibc keeps
// them, so a long pass's resident memory grew with the number of images although nothing was kept. Returns
// whether memory was released.
static Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory, "trimMemory"));
  trtcalib::InitStats(env, exports);
  trtcalib::InitFeeder(env, exports);
  trtcalib::InitOrtCollector(env, exports);
  return exports;
}

NODE_API_MODULE(trt_calib, Init)
