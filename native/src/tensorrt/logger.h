// TensorRT's ILogger: keeps the errors (they become the build's error message) and forwards messages at or above
// the chosen severity to JavaScript as onLog(severity, message) when attached to a Task. TensorRT may log from any
// thread, so everything here is guarded and nothing touches JS directly.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "feeder/task.h"
#include "tensorrt/trt_api.h"

namespace trtcalib {

class BridgeLogger final : public nvinfer1::ILogger {
 public:
  explicit BridgeLogger(Severity threshold = Severity::kWARNING) : threshold_(threshold) {}
  void log(Severity severity, const char* message) noexcept override;

  // Forward messages to this task's onLog callback (nullptr: keep errors only).
  void Attach(std::shared_ptr<Task> task) noexcept;
  // The errors logged so far, one per line; empty if none.
  std::string Errors() const;
  void ClearErrors();

  static const char* SeverityName(Severity severity) noexcept;
  // "error" | "warning" | "info" | "verbose" -> severity (default warning).
  static Severity ParseSeverity(const std::string& name) noexcept;

 private:
  Severity threshold_;
  mutable std::mutex mu_;
  std::vector<std::string> errors_;
  std::shared_ptr<Task> task_;
};

}  // namespace trtcalib
