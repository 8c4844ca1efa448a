// The feeder's DeviceMemory on a real GPU: cudaMalloc / cudaMemcpy, called on TensorRT's builder thread.
#pragma once

#include <string>

#include "feeder/device_memory.h"
#include "tensorrt/trt_api.h"

namespace trtcalib {

class CudaMemory final : public DeviceMemory {
 public:
  void* Allocate(std::size_t bytes, std::string& error) noexcept override {
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, bytes);
    if (status != cudaSuccess) {
      error = std::string("cudaMalloc(") + std::to_string(bytes) + "): " + cudaGetErrorString(status);
      return nullptr;
    }
    return p;
  }
  void Release(void* pointer) noexcept override { cudaFree(pointer); }
  bool CopyToDevice(void* device, const void* host, std::size_t bytes, std::string& error) noexcept override {
    cudaError_t status = cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice);
    if (status != cudaSuccess) {
      error = std::string("cudaMemcpy: ") + cudaGetErrorString(status);
      return false;
    }
    return true;
  }
  const char* Kind() const noexcept override { return "cuda"; }
};

}  // namespace trtcalib
