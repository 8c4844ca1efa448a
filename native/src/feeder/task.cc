#include "feeder/task.h"

#include <exception>
#include <utility>

namespace trtcalib {

Napi::Function TaskJs::Callback(const char* name) const {
  if (callbacks.IsEmpty()) return Napi::Function();
  Napi::Value v = callbacks.Value().Get(name);
  return v.IsFunction() ? v.As<Napi::Function>() : Napi::Function();
}

namespace {

// Kept alive by the thread-safe function until its finalizer runs on the JS thread.
struct TsfnContext {
  std::shared_ptr<Task> task;
};

}  // namespace

std::shared_ptr<Task> Task::Create(Napi::Env env, Napi::Object callbacks, const char* resourceName) {
  std::shared_ptr<Task> task(new Task());
  task->env_ = env;
  task->js_ = new TaskJs(env);
  task->js_->callbacks = Napi::Persistent(callbacks);
  auto* context = new TsfnContext{task};
  Napi::Function noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  task->tsfn_ = Napi::ThreadSafeFunction::New(env, noop, resourceName, 0, 1, context,
                                              [](Napi::Env, TsfnContext* ctx) {
                                                // JS thread, after the worker released: no call is queued any more.
                                                ctx->task->ReleaseJs();
                                                delete ctx;
                                              });
  return task;
}

Task::~Task() {
  // Normally joined on the JS thread (Finish or the cleanup hook). Never join here: the last reference may be
  // dropped by the worker itself.
  if (worker_.joinable()) worker_.detach();
}

void Task::ReleaseJs() noexcept {
  delete js_;
  js_ = nullptr;
}

Napi::Object Task::Start(Napi::Env env, Work work) {
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("done", js_->deferred.Promise());
  std::weak_ptr<Task> weak = shared_from_this();
  handle.Set("cancel", Napi::Function::New(env, [weak](const Napi::CallbackInfo& info) {
               std::string reason = "cancelled";
               if (info.Length() > 0 && info[0].IsString()) reason = info[0].As<Napi::String>().Utf8Value();
               if (auto task = weak.lock()) task->Cancel(reason);
             }));

  // If Node.js exits while the worker runs, wake it and wait for it, so nothing runs on into a torn-down process.
  std::shared_ptr<Task> self = shared_from_this();
  hookArg_ = new std::shared_ptr<Task>(self);
  if (napi_add_env_cleanup_hook(env, &Task::OnEnvCleanup, hookArg_) != napi_ok) {
    delete hookArg_;
    hookArg_ = nullptr;
  }

  worker_ = std::thread([self, work = std::move(work)]() {
    TaskOutcome outcome;
    try {
      outcome = work(*self);
    } catch (const std::exception& e) {
      self->FailNative(std::string("internal error: ") + e.what());
    } catch (...) {
      self->FailNative("internal error: unknown exception in the native worker");
    }
    self->PostToJs([self, outcome](Napi::Env env, TaskJs& js) { self->Finish(env, js, outcome); });
    std::lock_guard<std::mutex> lock(self->postMu_);
    self->released_ = true;
    self->tsfn_.Release();
  });
  return handle;
}

void Task::OnEnvCleanup(void* arg) {
  auto* holder = static_cast<std::shared_ptr<Task>*>(arg);
  std::shared_ptr<Task> task = *holder;
  task->hookArg_ = nullptr;  // Node drops a hook once it has run
  delete holder;
  task->Cancel("Node.js is exiting");
  if (task->worker_.joinable()) task->worker_.join();
}

void Task::RemoveHookAndJoin() {
  if (hookArg_ != nullptr) {
    napi_remove_env_cleanup_hook(env_, &Task::OnEnvCleanup, hookArg_);
    delete hookArg_;
    hookArg_ = nullptr;
  }
  // The worker posted this completion as its last act; it only has to release the thread-safe function.
  if (worker_.joinable()) worker_.join();
}

void Task::Finish(Napi::Env env, TaskJs& js, const TaskOutcome& outcome) {
  RemoveHookAndJoin();
  Napi::HandleScope scope(env);
  bool cancelled = false;
  bool failed = false;
  std::string reason;
  std::string code;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = cancelled_;
    failed = failed_;
    reason = reason_;
    code = code_.empty() ? "ERR_TRT_CALIB_NATIVE" : code_;
  }
  try {
    if (failed && js.hasError) {
      js.deferred.Reject(js.firstError.Value());
    } else if (failed || cancelled) {
      Napi::Error error = Napi::Error::New(env, reason);
      error.Set("code", Napi::String::New(env, cancelled && !failed ? std::string("ABORT_ERR") : code));
      js.deferred.Reject(error.Value());
    } else if (outcome.result) {
      js.deferred.Resolve(outcome.result(env));
    } else {
      js.deferred.Resolve(env.Undefined());
    }
  } catch (const Napi::Error& e) {
    js.deferred.Reject(e.Value());
  } catch (const std::exception& e) {
    js.deferred.Reject(Napi::Error::New(env, std::string("internal error: ") + e.what()).Value());
  }
}

bool Task::PostToJs(JsCall call) noexcept {
  try {
    std::lock_guard<std::mutex> lock(postMu_);
    if (released_) return false;
    std::shared_ptr<Task> self = shared_from_this();
    napi_status status = tsfn_.BlockingCall([self, call = std::move(call)](Napi::Env env, Napi::Function) {
      TaskJs* js = self->JsSide();
      if (js == nullptr) return;
      Napi::HandleScope scope(env);
      try {
        call(env, *js);
      } catch (const Napi::Error& e) {
        // A JS exception that escaped a closure (e.g. a throwing getter on an answer) fails the task with it.
        self->FailFromJs(env, *js, e.Value());
      } catch (const std::exception& e) {
        self->FailNative(std::string("internal error: ") + e.what());
      }
    });
    return status == napi_ok;
  } catch (...) {
    return false;
  }
}

void Task::Cancel(const std::string& reason) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancelled_ && !failed_) {
      cancelled_ = true;
      reason_ = reason;
    }
  }
  cv_.notify_all();
}

void Task::FailNative(const std::string& message, const char* code) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_ && !cancelled_) {
      failed_ = true;
      reason_ = message;
      code_ = code != nullptr ? code : "ERR_TRT_CALIB_NATIVE";
    }
  }
  cv_.notify_all();
}

void Task::FailFromJs(Napi::Env, TaskJs& js, Napi::Value error) noexcept {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_ && !cancelled_) {
      failed_ = true;
      first = true;
      reason_ = DescribeJsError(error);
    }
  }
  if (first && !js.hasError) {
    try {
      js.firstError = Napi::Persistent(error);
      js.hasError = true;
    } catch (...) {
    }
  }
  cv_.notify_all();
}

bool Task::Stopped() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_ || failed_;
}

bool Task::Cancelled() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

std::string Task::StopReason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

bool Task::WaitFor(const std::function<bool()>& ready) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return cancelled_ || failed_ || ready(); });
  return !cancelled_ && !failed_ && ready();
}

void Task::Notify(const std::function<void()>& change) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    change();
  }
  cv_.notify_all();
}

void Task::WithLock(const std::function<void()>& fn) const {
  std::lock_guard<std::mutex> lock(mu_);
  fn();
}

void Task::Progress(std::function<Napi::Value(Napi::Env)> makeEvent) noexcept {
  std::shared_ptr<Task> self = shared_from_this();
  PostToJs([self, makeEvent = std::move(makeEvent)](Napi::Env env, TaskJs& js) {
    Napi::Function onProgress = js.Callback("onProgress");
    if (onProgress.IsEmpty()) return;
    try {
      onProgress.Call({makeEvent(env)});
    } catch (const Napi::Error& e) {
      self->FailFromJs(env, js, e.Value());
    }
  });
}

void Settle(Napi::Env env, Napi::Value value, std::function<void(Napi::Env, Napi::Value)> onValue,
            std::function<void(Napi::Env, Napi::Value)> onError) {
  Napi::Value then;
  if (value.IsObject()) then = value.As<Napi::Object>().Get("then");
  if (then.IsEmpty() || !then.IsFunction()) {
    onValue(env, value);
    return;
  }
  Napi::Function fulfilled = Napi::Function::New(env, [onValue, onError](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    try {
      onValue(e, info.Length() > 0 ? info[0] : e.Undefined());
    } catch (const Napi::Error& err) {
      onError(e, err.Value());
    }
  });
  Napi::Function rejected = Napi::Function::New(env, [onError](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    onError(e, info.Length() > 0 ? info[0] : e.Undefined());
  });
  then.As<Napi::Function>().Call(value, {fulfilled, rejected});
}

void CallAndSettle(Napi::Env env, Napi::Function fn, const std::vector<napi_value>& args,
                   std::function<void(Napi::Env, Napi::Value)> onValue,
                   std::function<void(Napi::Env, Napi::Value)> onError) {
  Napi::Value result;
  try {
    result = fn.Call(args);
  } catch (const Napi::Error& e) {
    onError(env, e.Value());
    return;
  }
  try {
    Settle(env, result, onValue, onError);
  } catch (const Napi::Error& e) {
    onError(env, e.Value());
  }
}

std::string DescribeJsError(Napi::Value error) noexcept {
  try {
    if (error.IsObject()) {
      Napi::Value message = error.As<Napi::Object>().Get("message");
      if (message.IsString()) return message.As<Napi::String>().Utf8Value();
    }
    return error.ToString().Utf8Value();
  } catch (...) {
    return "a JavaScript callback failed (its error could not be read)";
  }
}

}  // namespace trtcalib
