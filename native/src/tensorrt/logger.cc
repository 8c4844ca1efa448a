#include "tensorrt/logger.h"

namespace trtcalib {

const char* BridgeLogger::SeverityName(Severity severity) noexcept {
  switch (severity) {
    case Severity::kINTERNAL_ERROR: return "internal-error";
    case Severity::kERROR: return "error";
    case Severity::kWARNING: return "warning";
    case Severity::kINFO: return "info";
    case Severity::kVERBOSE: return "verbose";
  }
  return "unknown";
}

nvinfer1::ILogger::Severity BridgeLogger::ParseSeverity(const std::string& name) noexcept {
  if (name == "error") return Severity::kERROR;
  if (name == "info") return Severity::kINFO;
  if (name == "verbose") return Severity::kVERBOSE;
  return Severity::kWARNING;
}

void BridgeLogger::Attach(std::shared_ptr<Task> task) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  task_ = std::move(task);
}

void BridgeLogger::log(Severity severity, const char* message) noexcept {
  try {
    std::string text = message != nullptr ? message : "";
    std::shared_ptr<Task> task;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR) errors_.push_back(text);
      if (severity <= threshold_) task = task_;
    }
    if (!task) return;
    const char* name = SeverityName(severity);
    task->PostToJs([text, name](Napi::Env env, TaskJs& js) {
      Napi::Function onLog = js.Callback("onLog");
      if (onLog.IsEmpty()) return;
      // A throwing log callback must not fail a build: ignore it.
      try {
        onLog.Call({Napi::String::New(env, name), Napi::String::New(env, text)});
      } catch (const Napi::Error&) {
      }
    });
  } catch (...) {
  }
}

std::string BridgeLogger::Errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& e : errors_) {
    if (!out.empty()) out += "\n";
    out += e;
  }
  return out;
}

void BridgeLogger::ClearErrors() {
  std::lock_guard<std::mutex> lock(mu_);
  errors_.clear();
}

}  // namespace trtcalib
