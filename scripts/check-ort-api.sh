#!/usr/bin/env bash
# Checks native/src/ort/ort_api.h (our declarations of the onnxruntime C API entries the collector uses) against a
# real onnxruntime_c_api.h: each entry's position in the OrtApi table, its number of parameters and return type
# class, and the enum values. onnxruntime's npm package ships no headers, so point ORT_INCLUDE at a folder holding
# onnxruntime_c_api.h (and the headers it includes), e.g. include/onnxruntime/core/session of a clone of
# github.com/microsoft/onnxruntime, or any project that vendors them. Keep that folder OUTSIDE the repository.
#
#   ORT_INCLUDE=/tmp/ort-headers scripts/check-ort-api.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
inc="${ORT_INCLUDE:?set ORT_INCLUDE to a folder with onnxruntime_c_api.h}"
[ -f "$inc/onnxruntime_c_api.h" ] || { echo "no onnxruntime_c_api.h in $inc" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/check.cc" <<'CC'
#include <cstddef>
#include <type_traits>
#include "onnxruntime_c_api.h"
#include "ort/ort_api.h"

namespace ours = trtcalib::ort;

template <typename T> struct Fn;
template <typename R, typename... A> struct Fn<R (*)(A...)> {
  static constexpr std::size_t arity = sizeof...(A);
  static constexpr bool returnsVoid = std::is_void<R>::value;
};
// onnxruntime declares its entries noexcept in C++.
template <typename R, typename... A> struct Fn<R (*)(A...) noexcept> : Fn<R (*)(A...)> {};
#if defined(_WIN32)
template <typename R, typename... A> struct Fn<R(__stdcall*)(A...)> {
  static constexpr std::size_t arity = sizeof...(A);
  static constexpr bool returnsVoid = std::is_void<R>::value;
};
#endif

#define CHECK(index, name, ret, ...)                                                                              \
  static_assert(offsetof(OrtApi, name) == (index) * sizeof(void*), #name ": position differs from OrtApi");       \
  static_assert(Fn<decltype(OrtApi::name)>::arity == Fn<decltype(ours::Api::name)>::arity, #name ": arity differs"); \
  static_assert(Fn<decltype(OrtApi::name)>::returnsVoid == Fn<decltype(ours::Api::name)>::returnsVoid, #name ": return type differs");
TRTCALIB_ORT_API(CHECK)

static_assert(ours::kLoggingLevelFatal == ORT_LOGGING_LEVEL_FATAL, "ORT_LOGGING_LEVEL_FATAL");
static_assert(ours::kGraphOptDisableAll == ORT_DISABLE_ALL, "ORT_DISABLE_ALL");
static_assert(ours::kGraphOptEnableBasic == ORT_ENABLE_BASIC, "ORT_ENABLE_BASIC");
static_assert(ours::kGraphOptEnableExtended == ORT_ENABLE_EXTENDED, "ORT_ENABLE_EXTENDED");
static_assert(ours::kGraphOptEnableAll == ORT_ENABLE_ALL, "ORT_ENABLE_ALL");
static_assert(ours::kExecutionSequential == ORT_SEQUENTIAL, "ORT_SEQUENTIAL");
static_assert(ours::kArenaAllocator == OrtArenaAllocator, "OrtArenaAllocator");
static_assert(ours::kMemTypeDefault == OrtMemTypeDefault, "OrtMemTypeDefault");
static_assert(ours::kElementFloat == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "FLOAT");
static_assert(ours::kElementFloat16 == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, "FLOAT16");
static_assert(ours::kApiVersion <= ORT_API_VERSION, "requested API version newer than the header");
static_assert(sizeof(ours::ApiBase) == sizeof(OrtApiBase), "OrtApiBase layout");
#define OP_FIELD(name) static_assert(offsetof(ours::CustomOp, name) == offsetof(OrtCustomOp, name), "OrtCustomOp::" #name);
OP_FIELD(version) OP_FIELD(CreateKernel) OP_FIELD(GetName) OP_FIELD(GetExecutionProviderType) OP_FIELD(GetInputType)
OP_FIELD(GetInputTypeCount) OP_FIELD(GetOutputType) OP_FIELD(GetOutputTypeCount) OP_FIELD(KernelCompute) OP_FIELD(KernelDestroy)
OP_FIELD(GetInputCharacteristic) OP_FIELD(GetOutputCharacteristic) OP_FIELD(GetInputMemoryType) OP_FIELD(GetVariadicInputMinArity)
OP_FIELD(GetVariadicInputHomogeneity) OP_FIELD(GetVariadicOutputMinArity) OP_FIELD(GetVariadicOutputHomogeneity)
static_assert(offsetof(OrtCustomOp, CreateKernelV2) == sizeof(ours::CustomOp), "fields after version 14's");
static_assert(ours::kCustomOpRequired == INPUT_OUTPUT_REQUIRED, "INPUT_OUTPUT_REQUIRED");
static_assert(ours::kCustomOpOptional == INPUT_OUTPUT_OPTIONAL, "INPUT_OUTPUT_OPTIONAL");
int main() { return 0; }
CC
${CXX:-c++} -std=c++17 -fsyntax-only -Wno-ignored-attributes -I"$inc" -I"$here/native/src" "$tmp/check.cc" 2>&1 | head -40
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
version=$(grep -m1 -E '^#define ORT_API_VERSION' "$inc/onnxruntime_c_api.h" | awk '{print $3}')
echo "native/src/ort/ort_api.h matches onnxruntime_c_api.h (ORT_API_VERSION $version) in $inc"
