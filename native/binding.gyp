{
  "variables": {
    # "true" when native/find-tensorrt.js finds TensorRT >= 8.6 and CUDA; it says once on stderr why not otherwise.
    "trt_calib_tensorrt%": "<!(node find-tensorrt.js enabled)"
  },
  "targets": [
    {
      "target_name": "trt_calib",
      "sources": [
        "src/addon.cc",
        "src/stats/histogram.cc",
        "src/stats/kl.cc",
        "src/stats/density.cc",
        "src/stats/noise.cc",
        "src/stats/stats_binding.cc",
        "src/feeder/task.cc",
        "src/feeder/batch_feeder.cc",
        "src/feeder/feeder_binding.cc",
        "src/ort/collector.cc",
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src"],
      # dlopen (src/ort/collector.cc loads onnxruntime-node's onnxruntime library at run time)
      "conditions": [["OS=='linux'", { "libraries": ["-ldl"] }]],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-ffp-contract=off"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "11.0",
        "OTHER_CPLUSPLUSFLAGS": ["-ffp-contract=off"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
    }
  ],
  "conditions": [
    ["trt_calib_tensorrt=='true'", {
      "targets": [
        {
          # The TensorRT bridge: its own addon, so that a missing libnvinfer at run time never breaks trt_calib.
          "target_name": "trt_calib_tensorrt",
          "sources": [
            "src/tensorrt/addon_tensorrt.cc",
            "src/tensorrt/builder.cc",
            "src/tensorrt/network.cc",
            "src/tensorrt/runner.cc",
            "src/tensorrt/logger.cc",
            "src/feeder/task.cc",
            "src/feeder/batch_feeder.cc",
            "src/feeder/feeder_binding.cc",
          ],
          "include_dirs": [
            "<!(node -p \"require('node-addon-api').include_dir\")",
            "src",
            "<!@(node find-tensorrt.js include_dirs)",
          ],
          "libraries": ["<!@(node find-tensorrt.js libraries)"],
          "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions"],
          "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden"],
          "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
        }
      ]
    }]
  ]
}
