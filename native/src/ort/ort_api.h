// The few entries of onnxruntime's C API (the OrtApi function table) that the statistics collector uses.
//
// The collector runs sessions through the onnxruntime library that onnxruntime-node ships, loaded at run time
// (./ort_library.cc), so that the exported activations stay in native memory: onnxruntime-node's binding copies
// every output into a new, zero-filled JS ArrayBuffer, which for MobileNetV2 with its activations exposed costs
// as much time as a third of the inference itself. onnxruntime ships no headers in its npm package, so the
// declarations are ours: opaque handles, the enum values used, and each function's position in the table.
//
// Why positions are safe: OrtApi is a struct of function pointers that onnxruntime only ever appends to (its
// header: "New functions must be added at the end"), and GetApi(version) hands out the table of that version,
// so an entry's position never changes. scripts/check-ort-api.sh checks every position and signature below
// against a real onnxruntime_c_api.h.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(_WIN32)
#define TRTCALIB_ORT_CALL __stdcall
#else
#define TRTCALIB_ORT_CALL
#endif

namespace trtcalib {
namespace ort {

struct Status;
struct Env;
struct Session;
struct SessionOptions;
struct RunOptions;
struct Value;
struct MemoryInfo;
struct TensorTypeAndShapeInfo;
struct CustomOpDomain;
struct KernelInfo;
struct KernelContext;

// ORTCHAR_t: file paths are wide strings on Windows.
#if defined(_WIN32)
using PathChar = wchar_t;
#else
using PathChar = char;
#endif

// Enum values (onnxruntime_c_api.h).
constexpr int kLoggingLevelFatal = 4;            // ORT_LOGGING_LEVEL_FATAL
constexpr int kGraphOptDisableAll = 0;           // ORT_DISABLE_ALL
constexpr int kGraphOptEnableBasic = 1;          // ORT_ENABLE_BASIC
constexpr int kGraphOptEnableExtended = 2;       // ORT_ENABLE_EXTENDED
constexpr int kGraphOptEnableLayout = 3;         // ORT_ENABLE_LAYOUT
constexpr int kGraphOptEnableAll = 99;           // ORT_ENABLE_ALL
constexpr int kExecutionSequential = 0;          // ORT_SEQUENTIAL
constexpr int kArenaAllocator = 1;               // OrtArenaAllocator
constexpr int kMemTypeDefault = 0;               // OrtMemTypeDefault
constexpr int kElementFloat = 1;                 // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
constexpr int kElementFloat16 = 10;              // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16

// The API version requested: onnxruntime 1.16 (every entry below exists there); any newer library serves it.
constexpr uint32_t kApiVersion = 16;

struct ApiBase {
  const void*(TRTCALIB_ORT_CALL* GetApi)(uint32_t version);
  const char*(TRTCALIB_ORT_CALL* GetVersionString)();
};
using GetApiBaseFn = const ApiBase*(TRTCALIB_ORT_CALL*)();

// OrtCustomOp as of its version 14 (what onnxruntime reads of an op declaring version 14: every field below, none
// after). The collector's counting op (collector.cc) is one; scripts/check-ort-api.sh checks the offsets.
constexpr uint32_t kCustomOpVersion = 14;
constexpr int kCustomOpRequired = 0;  // INPUT_OUTPUT_REQUIRED
constexpr int kCustomOpOptional = 1;  // INPUT_OUTPUT_OPTIONAL
struct CustomOp {
  uint32_t version;
  void*(TRTCALIB_ORT_CALL* CreateKernel)(const CustomOp* op, const void* api, const KernelInfo* info);
  const char*(TRTCALIB_ORT_CALL* GetName)(const CustomOp* op);
  const char*(TRTCALIB_ORT_CALL* GetExecutionProviderType)(const CustomOp* op);
  int(TRTCALIB_ORT_CALL* GetInputType)(const CustomOp* op, size_t index);
  size_t(TRTCALIB_ORT_CALL* GetInputTypeCount)(const CustomOp* op);
  int(TRTCALIB_ORT_CALL* GetOutputType)(const CustomOp* op, size_t index);
  size_t(TRTCALIB_ORT_CALL* GetOutputTypeCount)(const CustomOp* op);
  void(TRTCALIB_ORT_CALL* KernelCompute)(void* kernel, KernelContext* context);
  void(TRTCALIB_ORT_CALL* KernelDestroy)(void* kernel);
  int(TRTCALIB_ORT_CALL* GetInputCharacteristic)(const CustomOp* op, size_t index);
  int(TRTCALIB_ORT_CALL* GetOutputCharacteristic)(const CustomOp* op, size_t index);
  int(TRTCALIB_ORT_CALL* GetInputMemoryType)(const CustomOp* op, size_t index);
  int(TRTCALIB_ORT_CALL* GetVariadicInputMinArity)(const CustomOp* op);
  int(TRTCALIB_ORT_CALL* GetVariadicInputHomogeneity)(const CustomOp* op);
  int(TRTCALIB_ORT_CALL* GetVariadicOutputMinArity)(const CustomOp* op);
  int(TRTCALIB_ORT_CALL* GetVariadicOutputHomogeneity)(const CustomOp* op);
};

// Each entry: its position in OrtApi and its signature.
#define TRTCALIB_ORT_API(X)                                                                                          \
  X(2, GetErrorMessage, const char*, const Status*)                                                                  \
  X(3, CreateEnv, Status*, int, const char*, Env**)                                                                  \
  X(7, CreateSession, Status*, const Env*, const PathChar*, const SessionOptions*, Session**)                        \
  X(8, CreateSessionFromArray, Status*, const Env*, const void*, size_t, const SessionOptions*, Session**)           \
  X(9, Run, Status*, Session*, const RunOptions*, const char* const*, const Value* const*, size_t, const char* const*, \
    size_t, Value**)                                                                                                 \
  X(10, CreateSessionOptions, Status*, SessionOptions**)                                                             \
  X(11, SetOptimizedModelFilePath, Status*, SessionOptions*, const PathChar*)                                        \
  X(13, SetSessionExecutionMode, Status*, SessionOptions*, int)                                                      \
  X(17, DisableMemPattern, Status*, SessionOptions*)                                                                 \
  X(22, SetSessionLogSeverityLevel, Status*, SessionOptions*, int)                                                   \
  X(23, SetSessionGraphOptimizationLevel, Status*, SessionOptions*, int)                                             \
  X(24, SetIntraOpNumThreads, Status*, SessionOptions*, int)                                                         \
  X(25, SetInterOpNumThreads, Status*, SessionOptions*, int)                                                         \
  X(26, CreateCustomOpDomain, Status*, const char*, CustomOpDomain**)                                                \
  X(27, CustomOpDomain_Add, Status*, CustomOpDomain*, const CustomOp*)                                               \
  X(28, AddCustomOpDomain, Status*, SessionOptions*, CustomOpDomain*)                                                \
  X(49, CreateTensorWithDataAsOrtValue, Status*, const MemoryInfo*, void*, size_t, const int64_t*, size_t, int,      \
    Value**)                                                                                                         \
  X(51, GetTensorMutableData, Status*, Value*, void**)                                                               \
  X(60, GetTensorElementType, Status*, const TensorTypeAndShapeInfo*, int*)                                          \
  X(61, GetDimensionsCount, Status*, const TensorTypeAndShapeInfo*, size_t*)                                         \
  X(62, GetDimensions, Status*, const TensorTypeAndShapeInfo*, int64_t*, size_t)                                     \
  X(64, GetTensorShapeElementCount, Status*, const TensorTypeAndShapeInfo*, size_t*)                                 \
  X(65, GetTensorTypeAndShape, Status*, const Value*, TensorTypeAndShapeInfo**)                                      \
  X(69, CreateCpuMemoryInfo, Status*, int, int, MemoryInfo**)                                                        \
  X(86, KernelInfoGetAttribute_int64, Status*, const KernelInfo*, const char*, int64_t*)                             \
  X(90, KernelContext_GetInput, Status*, const KernelContext*, size_t, const Value**)                                \
  X(91, KernelContext_GetOutput, Status*, KernelContext*, size_t, const int64_t*, size_t, Value**)                   \
  X(92, ReleaseEnv, void, Env*)                                                                                      \
  X(93, ReleaseStatus, void, Status*)                                                                                \
  X(94, ReleaseMemoryInfo, void, MemoryInfo*)                                                                        \
  X(95, ReleaseSession, void, Session*)                                                                              \
  X(96, ReleaseValue, void, Value*)                                                                                  \
  X(99, ReleaseTensorTypeAndShapeInfo, void, TensorTypeAndShapeInfo*)                                                \
  X(100, ReleaseSessionOptions, void, SessionOptions*)                                                               \
  X(101, ReleaseCustomOpDomain, void, CustomOpDomain*)                                                               \
  X(130, AddSessionConfigEntry, Status*, SessionOptions*, const char*, const char*)

// The typed table: one member per entry, filled from the library's OrtApi by position.
struct Api {
#define TRTCALIB_ORT_MEMBER(index, name, ret, ...) ret(TRTCALIB_ORT_CALL* name)(__VA_ARGS__) = nullptr;
  TRTCALIB_ORT_API(TRTCALIB_ORT_MEMBER)
#undef TRTCALIB_ORT_MEMBER
  const char* version = "";

  // Reads the entries from the library's table (an array of function pointers).
  void Fill(const void* table) {
    const void* const* slots = static_cast<const void* const*>(table);
#define TRTCALIB_ORT_FILL(index, name, ret, ...) name = reinterpret_cast<decltype(name)>(const_cast<void*>(slots[index]));
    TRTCALIB_ORT_API(TRTCALIB_ORT_FILL)
#undef TRTCALIB_ORT_FILL
  }
};

}  // namespace ort
}  // namespace trtcalib
