#!/usr/bin/env bash
# Compiles the TensorRT bridge (native/src/tensorrt, native/src/feeder) with -fsyntax-only against TensorRT's real
# release headers, for several TensorRT versions, on a machine without TensorRT. See CONTRIBUTING.md.
#
#   scripts/check-tensorrt-headers.sh [--link] [VERSION...]      (default versions: 8.6.1 10.0.0 10.16 11.1)
#
# The headers come from a clone of github.com/NVIDIA/TensorRT (its include/ folder at a release tag) and, for
# releases whose include/ has no NvOnnxParser.h (8.6, 10.0), from github.com/onnx/onnx-tensorrt at the commit the
# TensorRT tag pins as its parsers/onnx submodule. They are unpacked into a scratch folder OUTSIDE the repository
# and never committed.
#
#   TRT_GIT       a clone of NVIDIA/TensorRT (bare is fine); default: cloned into $TRT_SCRATCH/TensorRT.git
#   ONNX_TRT_GIT  a clone of onnx/onnx-tensorrt; default: cloned into $TRT_SCRATCH/onnx-tensorrt.git when needed
#   TRT_SCRATCH   scratch folder (default /tmp/trt-calib-headers)
#   CUDA_HOME     CUDA toolkit whose include/ has cuda_runtime_api.h (default /usr/local/cuda)
#
# --link also builds the bridge addon for real with node-gyp against stub libnvinfer/libnvonnxparser libraries
# (a fake TENSORRT_ROOT made from the first version's headers), loads it, and checks that tensorrtInfo() and
# feederSelfTest() answer and that buildEngine() fails cleanly when TensorRT cannot create a builder. This checks
# binding.gyp's TensorRT branch and find-tensorrt.js end to end; it needs CUDA's libcudart to link against.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="${TRT_SCRATCH:-/tmp/trt-calib-headers}"
cuda="${CUDA_HOME:-/usr/local/cuda}"
link=0
versions=()
for a in "$@"; do
  case "$a" in
    --link) link=1 ;;
    *) versions+=("$a") ;;
  esac
done
[ ${#versions[@]} -eq 0 ] && versions=(8.6.1 10.0.0 10.16 11.1)

case "$scratch/" in "$here"/*) echo "TRT_SCRATCH must be outside the repository" >&2; exit 2 ;; esac
[ -f "$cuda/include/cuda_runtime_api.h" ] || { echo "no cuda_runtime_api.h under $cuda/include: set CUDA_HOME" >&2; exit 2; }
mkdir -p "$scratch"

trt_git="${TRT_GIT:-$scratch/TensorRT.git}"
if [ ! -d "$trt_git" ]; then
  git clone --bare --filter=blob:none https://github.com/NVIDIA/TensorRT.git "$trt_git"
fi

tag_for() {  # 10.16 -> v10.16, 8.6.1 -> v8.6.1 (tags before 8.6 have no "v")
  local v="$1"
  if git -C "$trt_git" rev-parse -q --verify "refs/tags/v$v" >/dev/null; then echo "v$v"
  elif git -C "$trt_git" rev-parse -q --verify "refs/tags/$v" >/dev/null; then echo "$v"
  else echo "no TensorRT tag for $v in $trt_git" >&2; return 1; fi
}

headers_for() {  # unpacks include/ of a version into $scratch/<tag>/include, with NvOnnxParser.h
  local tag; tag="$(tag_for "$1")"
  local dir="$scratch/$tag"
  if [ ! -f "$dir/include/NvInfer.h" ]; then
    mkdir -p "$dir"
    git -C "$trt_git" archive "$tag" include | tar -x -C "$dir"
  fi
  if [ ! -f "$dir/include/NvOnnxParser.h" ]; then
    local sub; sub="$(git -C "$trt_git" ls-tree "$tag" parsers/onnx | awk '{print $3}')"
    [ -n "$sub" ] || { echo "$tag has neither include/NvOnnxParser.h nor a parsers/onnx submodule" >&2; return 1; }
    local onnx_git="${ONNX_TRT_GIT:-$scratch/onnx-tensorrt.git}"
    [ -d "$onnx_git" ] || git clone --bare --filter=blob:none https://github.com/onnx/onnx-tensorrt.git "$onnx_git"
    git -C "$onnx_git" show "$sub:NvOnnxParser.h" > "$dir/include/NvOnnxParser.h"
  fi
  echo "$dir/include"
}

napi="$(cd "$here" && node -p "require('node-addon-api').include_dir")"
node_inc="$(node -p "process.execPath.replace(/\/bin\/node$/, '')")/include/node"
[ -f "$node_inc/node_api.h" ] || node_inc=/usr/include/node
flags=(-std=c++17 -fsyntax-only -Wall -Wextra -Werror -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED
       -DNAPI_CPP_EXCEPTIONS -I"$napi" -I"$node_inc" -I"$here/native/src")
status=0
first_include=""
for v in "${versions[@]}"; do
  inc="$(headers_for "$v")"
  [ -z "$first_include" ] && first_include="$inc"
  # -isystem: TensorRT's and CUDA's headers are not warning-free under -Wextra (unused parameters); that is not
  # ours. -Werror still catches every use of a deprecated TensorRT API in our code that is not wrapped in
  # TRTCALIB_ALLOW_DEPRECATED_BEGIN/END, since such a warning is reported at our line.
  for f in "$here"/native/src/tensorrt/*.cc "$here"/native/src/feeder/*.cc; do
    if ! g++ "${flags[@]}" -isystem "$inc" -isystem "$cuda/include" "$f"; then
      echo "FAILED: $(basename "$f") against TensorRT $v" >&2
      status=1
    fi
  done
  [ $status -eq 0 ] && echo "ok: native/src/tensorrt and native/src/feeder compile against TensorRT $v headers ($inc)"
done
[ $status -ne 0 ] && exit $status
[ $link -eq 0 ] && exit 0

# --- link check with stub libraries ---------------------------------------------------------------------------
fake="$scratch/fake-tensorrt"
rm -rf "$fake" && mkdir -p "$fake/lib" && cp -r "$first_include" "$fake/include"
cat > "$fake/stub.c" <<'EOF'
/* Stand-ins for libnvinfer / libnvonnxparser: every factory fails, as on a machine whose GPU TensorRT cannot use. */
int getInferLibVersion(void) { return 424242; }
int getInferLibBuildVersion(void) { return 0; }
void* createInferBuilder_INTERNAL(void* logger, int version) { (void)logger; (void)version; return 0; }
void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return 0; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { (void)engine; (void)logger; (void)version; return 0; }
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { (void)network; (void)logger; (void)version; return 0; }
void* getPluginRegistry(void) { return 0; }
void* getLogger(void) { return 0; }
EOF
gcc -shared -fPIC -o "$fake/lib/libnvinfer.so" "$fake/stub.c"
gcc -shared -fPIC -o "$fake/lib/libnvonnxparser.so" "$fake/stub.c"
build="$scratch/native-build"
rm -rf "$build" && mkdir -p "$build"
cp -r "$here/native/binding.gyp" "$here/native/find-tensorrt.js" "$here/native/src" "$build/"
ln -s "$here/node_modules" "$build/node_modules"
echo '{"type":"module"}' > "$build/package.json"
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
gyp_args=(rebuild -j 2)
nodedir="$(npm config get nodedir 2>/dev/null || true)"  # machines that build against local Node headers
case "$nodedir" in ""|undefined|null) ;; *) gyp_args+=("--nodedir=$nodedir") ;; esac
if ! (cd "$build" && TENSORRT_ROOT="$fake" CUDA_HOME="$cuda" node "$gyp" "${gyp_args[@]}" >"$build/gyp.log" 2>&1); then
  cat "$build/gyp.log" >&2
  exit 1
fi
grep '^trt-calib:' "$build/gyp.log" || true
test -f "$build/build/Release/trt_calib_tensorrt.node" || { echo "the bridge addon was not built" >&2; exit 1; }
node --input-type=module - "$build/build/Release/trt_calib_tensorrt.node" <<'EOF'
import { createRequire } from 'node:module';
const bridge = createRequire(import.meta.url)(process.argv[2]);
const info = bridge.tensorrtInfo();
if (info.libraryVersion !== 424242) throw new Error(`tensorrtInfo() did not call the linked libnvinfer: ${JSON.stringify(info)}`);
let n = 0;
const log = await bridge.feederSelfTest({ input: 'x', dims: [2, 2] }, { nextBatch: async () => (++n <= 2 ? new Float32Array(4).fill(n) : null) }).done;
if (log.batches.length !== 2) throw new Error('feederSelfTest in the bridge addon did not deliver 2 batches');
const inspect = bridge.inspectOnnx({ model: '/nonexistent.onnx' }, {});
const err = await inspect.done.then(() => undefined, (e) => e);
if (!err || !/could not create a builder/.test(err.message)) throw new Error(`inspectOnnx should fail cleanly, got ${err}`);
const build = bridge.buildEngine({ model: '/nonexistent.onnx', int8: true }, {});
const err2 = await build.done.then(() => undefined, (e) => e);
if (!err2 || !/could not create a builder|CUDA could not use device/.test(err2.message)) throw new Error(`buildEngine should fail cleanly, got ${err2}`);
console.log(`ok: the bridge links and loads (compiled against ${info.compiledAgainst}, stub libnvinfer ${info.libraryVersion}); ` +
  `inspectOnnx fails cleanly: ${err.message.split('\n')[0]}; buildEngine: ${err2.message.split('\n')[0]}`);
EOF
