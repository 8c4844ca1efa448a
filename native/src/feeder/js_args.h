// Reading plain option objects at the N-API boundary. The TypeScript layer validates every argument first (with
// the user-facing messages); these checks only keep a wrong call from crashing the process. They throw
// Napi::TypeError, which node-addon-api turns into a JS exception at the boundary.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace trtcalib {

inline Napi::Value OptionalField(Napi::Object obj, const char* key) {
  Napi::Value v = obj.Get(key);
  return v.IsUndefined() || v.IsNull() ? Napi::Value() : v;
}

inline std::string StringField(Napi::Object obj, const char* key, const char* where) {
  Napi::Value v = obj.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(obj.Env(), std::string(where) + ": expected a string for " + key);
  return v.As<Napi::String>().Utf8Value();
}

inline double NumberValue(Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "expected a number for " + what);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::TypeError::New(v.Env(), "expected a finite number for " + what);
  return d;
}

inline std::vector<int64_t> DimsValue(Napi::Value v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "expected an array of integers for " + what);
  auto array = v.As<Napi::Array>();
  std::vector<int64_t> dims;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    double d = NumberValue(array.Get(i), what);
    if (d != std::floor(d) || std::fabs(d) > 9007199254740991.0) {
      throw Napi::TypeError::New(v.Env(), "expected integers for " + what);
    }
    dims.push_back(static_cast<int64_t>(d));
  }
  return dims;
}

inline std::vector<std::string> StringsValue(Napi::Value v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "expected an array of strings for " + what);
  auto array = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value s = array.Get(i);
    if (!s.IsString()) throw Napi::TypeError::New(v.Env(), "expected strings for " + what);
    out.push_back(s.As<Napi::String>().Utf8Value());
  }
  return out;
}

inline std::vector<uint8_t> BytesValue(Napi::Value v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(v.Env(), "expected a Uint8Array for " + what);
  }
  auto bytes = v.As<Napi::Uint8Array>();
  return std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ByteLength());
}

inline Napi::Array DimsToJs(Napi::Env env, const std::vector<int64_t>& dims) {
  Napi::Array out = Napi::Array::New(env, dims.size());
  for (uint32_t i = 0; i < dims.size(); ++i) out.Set(i, Napi::Number::New(env, static_cast<double>(dims[i])));
  return out;
}

}  // namespace trtcalib
