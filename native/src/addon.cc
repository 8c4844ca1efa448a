// trt-calib native addon: module initialisation only. Each part registers its own functions.
// Heavy work runs on libuv worker threads (Napi::AsyncWorker) and never touches JS values there.
#include <napi.h>

#include "feeder/feeder_binding.h"
#include "ort/collector.h"
#include "stats/stats.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  trtcalib::InitStats(env, exports);
  trtcalib::InitFeeder(env, exports);
  trtcalib::InitOrtCollector(env, exports);
  return exports;
}

NODE_API_MODULE(trt_calib, Init)
