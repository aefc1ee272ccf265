// Logging for the daemon and the core library. Messages go to stderr while
// the daemon runs in the foreground, and to syslog once it has detached.
#pragma once

#include <cstdarg>

namespace layerfs {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

void log_set_level(LogLevel level);
bool log_enabled(LogLevel level);
// Sends further messages to syslog (ident "layerfs") instead of stderr.
void log_to_syslog();

void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace layerfs

#define LFS_LOG_ERROR(...) ::layerfs::log_message(::layerfs::LogLevel::kError, __VA_ARGS__)
#define LFS_LOG_WARN(...) ::layerfs::log_message(::layerfs::LogLevel::kWarning, __VA_ARGS__)
#define LFS_LOG_INFO(...) ::layerfs::log_message(::layerfs::LogLevel::kInfo, __VA_ARGS__)
#define LFS_LOG_DEBUG(...)                                                    \
  do {                                                                        \
    if (::layerfs::log_enabled(::layerfs::LogLevel::kDebug))                  \
      ::layerfs::log_message(::layerfs::LogLevel::kDebug, __VA_ARGS__);       \
  } while (0)
