// Parsing an ONNX model into a TensorRT network, and describing it (inputs, outputs, layers) for JavaScript.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tensorrt/logger.h"
#include "tensorrt/trt_api.h"

namespace trtcalib {

struct TensorDesc {
  std::string name;
  std::string dtype;  // float32, float16, int8, int32, int64, uint8, bool, bfloat16, fp8, int4, fp4, ...
  std::vector<int64_t> dims;  // -1 for a dynamic dim
};

struct LayerDesc {
  std::string name;
  std::string type;       // "Convolution", "MatrixMultiply", ...
  std::string onnxNode;   // from the "[ONNX Layer: <node> ...]" metadata the ONNX parser attaches; may be empty
  std::vector<TensorDesc> outputs;
};

struct NetworkDesc {
  std::vector<TensorDesc> inputs;
  std::vector<TensorDesc> outputs;
  std::vector<LayerDesc> layers;
  int32_t qdqLayers = 0;  // Quantize + Dequantize layers: an explicitly quantized (Q/DQ) model
  bool stronglyTyped = false;
};

// Owns builder, network and parser; destroyed in the right order (parser, network, builder).
struct ParsedNetwork {
  TrtPtr<nvinfer1::IBuilder> builder;
  TrtPtr<nvinfer1::INetworkDefinition> network;
  TrtPtr<nvonnxparser::IParser> parser;
};

// Throws std::runtime_error with TensorRT's and the parser's messages on failure. Worker thread.
ParsedNetwork ParseOnnx(BridgeLogger& logger, const std::string& model, bool stronglyTyped);

NetworkDesc DescribeNetwork(nvinfer1::INetworkDefinition& network);

const char* DataTypeName(nvinfer1::DataType type) noexcept;
nvinfer1::Dims ToDims(const std::vector<int64_t>& dims);
std::vector<int64_t> FromDims(const nvinfer1::Dims& dims);
std::string FormatDims(const std::vector<int64_t>& dims);

Napi::Object TensorDescToJs(Napi::Env env, const TensorDesc& t);
Napi::Object NetworkDescToJs(Napi::Env env, const NetworkDesc& d);

}  // namespace trtcalib
