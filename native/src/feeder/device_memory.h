// Where the batch feeder puts a batch for the consumer. TensorRT's getBatch hands back device pointers, so the
// TensorRT bridge implements this with CUDA (native/src/tensorrt/cuda_memory.*); the feeder's tests use host
// memory, which lets CI (no GPU, no TensorRT) drive the exact same code path.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace trtcalib {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // Returns nullptr and sets `error` on failure. Called on the consumer's (builder's) thread.
  virtual void* Allocate(std::size_t bytes, std::string& error) noexcept = 0;
  virtual void Release(void* pointer) noexcept = 0;
  // Copies `bytes` host bytes to `device`; returns false and sets `error` on failure.
  virtual bool CopyToDevice(void* device, const void* host, std::size_t bytes, std::string& error) noexcept = 0;
  // "host" or "cuda": reported in logs so that a test can tell which path ran.
  virtual const char* Kind() const noexcept = 0;
};

// Plain host memory: what the feeder tests use in place of a GPU.
class HostMemory final : public DeviceMemory {
 public:
  void* Allocate(std::size_t bytes, std::string& error) noexcept override {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) error = "out of host memory allocating " + std::to_string(bytes) + " bytes";
    return p;
  }
  void Release(void* pointer) noexcept override { std::free(pointer); }
  bool CopyToDevice(void* device, const void* host, std::size_t bytes, std::string&) noexcept override {
    std::memcpy(device, host, bytes);
    return true;
  }
  const char* Kind() const noexcept override { return "host"; }
};

}  // namespace trtcalib
