// The one error currency of fs/ and metadata/: a value, or a positive errno.
//
// Functions that can fail return Result<T> (or Result<void>). Nothing outside
// sys.cpp reads errno: a failing syscall is turned into an Error at once.
// The FUSE adapters convert a Result into a reply (fs/reply.h); CLIs convert
// it into a message and an exit code.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

namespace layerfs {

// A failure: a positive errno value (never 0).
struct Error {
  int code;
};

// Captures errno right now. Call it only immediately after a failed syscall.
inline Error errno_error() { return Error{errno != 0 ? errno : EIO}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error e) : v_(std::in_place_index<1>, e) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // The errno of a failed result; 0 when ok.
  int error() const { return ok() ? 0 : std::get<1>(v_).code; }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : code_(e.code) {}
  bool ok() const { return code_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return code_; }

 private:
  int code_ = 0;
};

inline Result<void> success() { return {}; }

// Wraps the return value of a syscall that returns -1 and sets errno.
inline Result<int> check_sys(int rv) {
  if (rv < 0) return errno_error();
  return rv;
}
inline Result<void> check_sys_void(int rv) {
  if (rv < 0) return errno_error();
  return {};
}

// Marks a deliberately ignored failure (a best-effort step), so that such
// places can be found with grep.
template <class T>
inline void ignore_error(const Result<T>&, const char* /*why*/) {}

}  // namespace layerfs

#define LFS_CONCAT_INNER(a, b) a##b
#define LFS_CONCAT(a, b) LFS_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define LFS_TRY(expr)                                        \
  do {                                                       \
    auto&& lfs_try_r_ = (expr);                              \
    if (!lfs_try_r_.ok()) return ::layerfs::Error{lfs_try_r_.error()}; \
  } while (0)

// `LFS_ASSIGN(auto x, f());` declares x from the value of f(), or returns its error.
#define LFS_ASSIGN(decl, expr) LFS_ASSIGN_IMPL(LFS_CONCAT(lfs_assign_r_, __LINE__), decl, expr)
#define LFS_ASSIGN_IMPL(tmp, decl, expr)                      \
  auto tmp = (expr);                                          \
  if (!tmp.ok()) return ::layerfs::Error{tmp.error()};        \
  decl = std::move(tmp).value()
