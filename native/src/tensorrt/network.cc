#include "tensorrt/network.h"

#include <stdexcept>

#include "feeder/js_args.h"

namespace trtcalib {

using nvinfer1::DataType;
using nvinfer1::LayerType;

const char* DataTypeName(DataType type) noexcept {
  switch (type) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kBOOL: return "bool";
    case DataType::kUINT8: return "uint8";
    case DataType::kFP8: return "fp8";
#if NV_TENSORRT_MAJOR >= 10
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT64: return "int64";
    case DataType::kINT4: return "int4";
#endif
    default: return "unsupported";
  }
}

namespace {

const char* LayerTypeName(LayerType type) noexcept {
  switch (type) {
    case LayerType::kCONVOLUTION: return "Convolution";
    case LayerType::kACTIVATION: return "Activation";
    case LayerType::kPOOLING: return "Pooling";
    case LayerType::kLRN: return "LRN";
    case LayerType::kSCALE: return "Scale";
    case LayerType::kSOFTMAX: return "Softmax";
    case LayerType::kDECONVOLUTION: return "Deconvolution";
    case LayerType::kCONCATENATION: return "Concatenation";
    case LayerType::kELEMENTWISE: return "ElementWise";
    case LayerType::kPLUGIN: return "Plugin";
    case LayerType::kUNARY: return "Unary";
    case LayerType::kPADDING: return "Padding";
    case LayerType::kSHUFFLE: return "Shuffle";
    case LayerType::kREDUCE: return "Reduce";
    case LayerType::kTOPK: return "TopK";
    case LayerType::kGATHER: return "Gather";
    case LayerType::kMATRIX_MULTIPLY: return "MatrixMultiply";
    case LayerType::kRAGGED_SOFTMAX: return "RaggedSoftmax";
    case LayerType::kCONSTANT: return "Constant";
    case LayerType::kIDENTITY: return "Identity";
    case LayerType::kPLUGIN_V2: return "PluginV2";
    case LayerType::kSLICE: return "Slice";
    case LayerType::kSHAPE: return "Shape";
    case LayerType::kPARAMETRIC_RELU: return "ParametricReLU";
    case LayerType::kRESIZE: return "Resize";
    case LayerType::kSELECT: return "Select";
    case LayerType::kFILL: return "Fill";
    case LayerType::kQUANTIZE: return "Quantize";
    case LayerType::kDEQUANTIZE: return "Dequantize";
    case LayerType::kSCATTER: return "Scatter";
    case LayerType::kEINSUM: return "Einsum";
    case LayerType::kONE_HOT: return "OneHot";
    case LayerType::kNON_ZERO: return "NonZero";
    case LayerType::kGRID_SAMPLE: return "GridSample";
    case LayerType::kNMS: return "NMS";
    case LayerType::kNORMALIZATION: return "Normalization";
    case LayerType::kCAST: return "Cast";
    default: return "Other";
  }
}

// The ONNX parser tags each layer with "[ONNX Layer: <node name> | ...]"; older parsers leave it empty.
std::string OnnxNodeFromMetadata(const char* metadata) {
  if (metadata == nullptr) return "";
  std::string m = metadata;
  const std::string tag = "[ONNX Layer: ";
  auto start = m.find(tag);
  if (start == std::string::npos) return "";
  start += tag.size();
  auto end = m.find_first_of("|]", start);
  if (end == std::string::npos) return "";
  std::string node = m.substr(start, end - start);
  while (!node.empty() && node.back() == ' ') node.pop_back();
  return node;
}

TensorDesc Describe(nvinfer1::ITensor& t) {
  TensorDesc d;
  d.name = t.getName() != nullptr ? t.getName() : "";
  d.dtype = DataTypeName(t.getType());
  d.dims = FromDims(t.getDimensions());
  return d;
}

}  // namespace

nvinfer1::Dims ToDims(const std::vector<int64_t>& dims) {
  nvinfer1::Dims d{};
  if (dims.size() > static_cast<std::size_t>(nvinfer1::Dims::MAX_DIMS)) {
    throw std::invalid_argument("a shape has " + std::to_string(dims.size()) + " dims; TensorRT takes at most " +
                                std::to_string(nvinfer1::Dims::MAX_DIMS));
  }
  d.nbDims = static_cast<int32_t>(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) d.d[i] = static_cast<decltype(d.d[0] + 0)>(dims[i]);
  return d;
}

std::vector<int64_t> FromDims(const nvinfer1::Dims& dims) {
  std::vector<int64_t> out;
  for (int32_t i = 0; i < dims.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i) out.push_back(static_cast<int64_t>(dims.d[i]));
  return out;
}

std::string FormatDims(const std::vector<int64_t>& dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
  return s;
}

ParsedNetwork ParseOnnx(BridgeLogger& logger, const std::string& model, bool stronglyTyped) {
  ParsedNetwork parts;
  parts.builder.reset(nvinfer1::createInferBuilder(logger));
  if (!parts.builder) {
    throw std::runtime_error("TensorRT could not create a builder (is an NVIDIA GPU with a working driver present, and "
                             "does libnvinfer match the version the bridge was built for, " +
                             CompiledTensorRTVersion() + "?)" + (logger.Errors().empty() ? "" : ":\n" + logger.Errors()));
  }
  uint32_t flags = 0;
#if TRTCALIB_EXPLICIT_FLAG
  flags |= 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
#if TRTCALIB_STRONGLY_TYPED_FLAG
  if (stronglyTyped) flags |= 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#else
  if (stronglyTyped && NV_TENSORRT_MAJOR < 9) {
    throw std::runtime_error("strongly typed networks need TensorRT 9 or newer; this bridge was built for TensorRT " +
                             CompiledTensorRTVersion());
  }
#endif
  parts.network.reset(parts.builder->createNetworkV2(flags));
  if (!parts.network) throw std::runtime_error("TensorRT could not create a network definition:\n" + logger.Errors());
  parts.parser.reset(nvonnxparser::createParser(*parts.network, logger));
  if (!parts.parser) throw std::runtime_error("TensorRT could not create its ONNX parser:\n" + logger.Errors());
  if (!parts.parser->parseFromFile(model.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
    std::string message = "TensorRT's ONNX parser rejected " + model + ":";
    for (int32_t i = 0; i < parts.parser->getNbErrors(); ++i) {
      const nvonnxparser::IParserError* e = parts.parser->getError(i);
      message += "\n  ";
#if NV_TENSORRT_MAJOR >= 10
      if (e->nodeName() != nullptr && e->nodeName()[0] != '\0') {
        message += std::string("node \"") + e->nodeName() + "\" (" + (e->nodeOperator() ? e->nodeOperator() : "?") + "): ";
      } else
#endif
      if (e->node() >= 0) {
        message += "node " + std::to_string(e->node()) + ": ";
      }
      message += e->desc() != nullptr ? e->desc() : "unknown error";
    }
    if (parts.parser->getNbErrors() == 0 && !logger.Errors().empty()) message += "\n" + logger.Errors();
    throw std::runtime_error(message);
  }
  return parts;
}

NetworkDesc DescribeNetwork(nvinfer1::INetworkDefinition& network) {
  NetworkDesc d;
  for (int32_t i = 0; i < network.getNbInputs(); ++i) d.inputs.push_back(Describe(*network.getInput(i)));
  for (int32_t i = 0; i < network.getNbOutputs(); ++i) d.outputs.push_back(Describe(*network.getOutput(i)));
  for (int32_t i = 0; i < network.getNbLayers(); ++i) {
    nvinfer1::ILayer* layer = network.getLayer(i);
    LayerDesc l;
    l.name = layer->getName() != nullptr ? layer->getName() : "";
    l.type = LayerTypeName(layer->getType());
    l.onnxNode = OnnxNodeFromMetadata(layer->getMetadata());
    for (int32_t j = 0; j < layer->getNbOutputs(); ++j) {
      if (layer->getOutput(j) != nullptr) l.outputs.push_back(Describe(*layer->getOutput(j)));
    }
    if (layer->getType() == LayerType::kQUANTIZE || layer->getType() == LayerType::kDEQUANTIZE) ++d.qdqLayers;
    d.layers.push_back(std::move(l));
  }
#if NV_TENSORRT_MAJOR >= 11
  d.stronglyTyped = true;
#elif TRTCALIB_STRONGLY_TYPED_FLAG
  d.stronglyTyped = network.getFlag(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif
  return d;
}

Napi::Object TensorDescToJs(Napi::Env env, const TensorDesc& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, t.name));
  o.Set("dtype", Napi::String::New(env, t.dtype));
  o.Set("dims", DimsToJs(env, t.dims));
  return o;
}

Napi::Object NetworkDescToJs(Napi::Env env, const NetworkDesc& d) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array inputs = Napi::Array::New(env, d.inputs.size());
  for (uint32_t i = 0; i < d.inputs.size(); ++i) inputs.Set(i, TensorDescToJs(env, d.inputs[i]));
  Napi::Array outputs = Napi::Array::New(env, d.outputs.size());
  for (uint32_t i = 0; i < d.outputs.size(); ++i) outputs.Set(i, TensorDescToJs(env, d.outputs[i]));
  Napi::Array layers = Napi::Array::New(env, d.layers.size());
  for (uint32_t i = 0; i < d.layers.size(); ++i) {
    const LayerDesc& l = d.layers[i];
    Napi::Object lo = Napi::Object::New(env);
    lo.Set("name", Napi::String::New(env, l.name));
    lo.Set("type", Napi::String::New(env, l.type));
    lo.Set("onnxNode", l.onnxNode.empty() ? env.Null() : Napi::String::New(env, l.onnxNode));
    Napi::Array outs = Napi::Array::New(env, l.outputs.size());
    for (uint32_t j = 0; j < l.outputs.size(); ++j) outs.Set(j, TensorDescToJs(env, l.outputs[j]));
    lo.Set("outputs", outs);
    layers.Set(i, lo);
  }
  o.Set("inputs", inputs);
  o.Set("outputs", outputs);
  o.Set("layers", layers);
  o.Set("qdqLayers", Napi::Number::New(env, d.qdqLayers));
  o.Set("stronglyTyped", Napi::Boolean::New(env, d.stronglyTyped));
  return o;
}

}  // namespace trtcalib
