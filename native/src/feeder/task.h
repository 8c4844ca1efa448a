// A long native job (a TensorRT engine build, or the feeder self-test that imitates one) that runs on its own
// std::thread and talks to JavaScript only through one Napi::ThreadSafeFunction.
//
// Why a dedicated thread rather than a libuv worker (Napi::AsyncWorker): the builder thread blocks for minutes and,
// while it waits for batches, JavaScript decodes images with sharp, which itself runs on libuv's small pool
// (4 threads by default). Holding a pool thread for the whole build could starve the decoder the build waits for.
//
// Threading rules (sharp's habit): the worker never touches a JS value. It posts closures that run on the JS thread
// (PostToJs) and waits on the task's condition variable for their answers (WaitFor); every wait also wakes on
// Cancel(), on a JS error and on Node.js shutting down, so an abort never deadlocks.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace trtcalib {

// The JavaScript side of a task: its promise, the callbacks object and the first JS error. Only ever touched on
// the JS thread; deleted there by the thread-safe function's finalizer.
struct TaskJs {
  explicit TaskJs(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference callbacks;
  Napi::Reference<Napi::Value> firstError;
  bool hasError = false;
  // callbacks[name] when it is a function, else an empty Function (check IsEmpty()).
  Napi::Function Callback(const char* name) const;
};

// What a worker hands back on success: a closure, run on the JS thread, that builds the resolved value.
struct TaskOutcome {
  std::function<Napi::Value(Napi::Env)> result;
};

class Task : public std::enable_shared_from_this<Task> {
 public:
  using Work = std::function<TaskOutcome(Task&)>;
  using JsCall = std::function<void(Napi::Env, TaskJs&)>;

  // JS thread. `callbacks`: the object of JS functions the work may call.
  static std::shared_ptr<Task> Create(Napi::Env env, Napi::Object callbacks, const char* resourceName);
  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // JS thread: runs `work` on a new thread; returns { done: Promise, cancel(reason?: string): void }.
  // done resolves with the outcome's value, or rejects with the first JS error itself (same object), or with an
  // Error whose code is 'ABORT_ERR' (cancelled) or 'ERR_TRT_CALIB_NATIVE' (native failure).
  Napi::Object Start(Napi::Env env, Work work);

  // Any thread: queues `call` for the JS thread. False when JavaScript is shutting down or the task has finished.
  bool PostToJs(JsCall call) noexcept;
  // Any thread: asks the work to stop; every wait wakes up. The first reason is kept.
  void Cancel(const std::string& reason) noexcept;
  // Any thread: a native failure (CUDA, TensorRT, a malformed answer). The first failure is kept; `code` becomes
  // the rejected Error's code.
  void FailNative(const std::string& message, const char* code = "ERR_TRT_CALIB_NATIVE") noexcept;
  // JS thread: a JS callback threw or rejected. `done` will reject with this very value.
  void FailFromJs(Napi::Env env, TaskJs& js, Napi::Value error) noexcept;

  bool Stopped() const noexcept;    // cancelled or failed
  bool Cancelled() const noexcept;
  std::string StopReason() const;

  // Worker thread: waits until ready() (evaluated under the task's lock) or until the task stops; returns ready().
  bool WaitFor(const std::function<bool()>& ready);
  // Any thread: runs `change` under the task's lock, then wakes the waiting worker.
  void Notify(const std::function<void()>& change);

  // Any thread: runs `fn` under the task's lock (reads of state that WaitFor/Notify guard).
  void WithLock(const std::function<void()>& fn) const;

  // Worker thread: calls callbacks.onProgress(event) if it exists; `makeEvent` runs on the JS thread.
  void Progress(std::function<Napi::Value(Napi::Env)> makeEvent) noexcept;

  // JS thread: the JS side, or nullptr once the task is over (late promise settlements must check this).
  TaskJs* JsSide() const noexcept { return js_; }

 private:
  Task() = default;
  void Finish(Napi::Env env, TaskJs& js, const TaskOutcome& outcome);
  void ReleaseJs() noexcept;
  void RemoveHookAndJoin();
  static void OnEnvCleanup(void* arg);

  Napi::ThreadSafeFunction tsfn_;
  TaskJs* js_ = nullptr;  // JS thread only
  std::thread worker_;
  std::shared_ptr<Task>* hookArg_ = nullptr;  // the env cleanup hook's argument; JS thread only
  napi_env env_ = nullptr;

  mutable std::mutex postMu_;  // serialises PostToJs with the final Release of tsfn_
  bool released_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
  bool failed_ = false;
  std::string reason_;
  std::string code_;
};

// Calls onValue with `value`, or with what it resolves to when it is a promise (any thenable); onError with the
// thrown or rejected value. JS thread only.
void Settle(Napi::Env env, Napi::Value value, std::function<void(Napi::Env, Napi::Value)> onValue,
            std::function<void(Napi::Env, Napi::Value)> onError);

// fn(args...), then Settle() its result; a synchronous throw goes to onError. JS thread only.
void CallAndSettle(Napi::Env env, Napi::Function fn, const std::vector<napi_value>& args,
                   std::function<void(Napi::Env, Napi::Value)> onValue,
                   std::function<void(Napi::Env, Napi::Value)> onError);

// error.message when it is an Error-like object, else String(error). JS thread only; never throws.
std::string DescribeJsError(Napi::Value error) noexcept;

}  // namespace trtcalib
