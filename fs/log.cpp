#include "fs/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdio>

namespace layerfs {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kWarning)};
std::atomic<bool> g_syslog{false};

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return LOG_ERR;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kDebug: return LOG_DEBUG;
  }
  return LOG_INFO;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "";
}

}  // namespace

void log_set_level(LogLevel level) { g_level = static_cast<int>(level); }

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void log_to_syslog() {
  openlog("layerfs", LOG_PID, LOG_DAEMON);
  g_syslog = true;
}

void log_message(LogLevel level, const char* fmt, ...) {
  if (!log_enabled(level)) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (g_syslog) {
    syslog(syslog_priority(level), "%s", buf);
  } else {
    fprintf(stderr, "layerfs: %s: %s\n", level_name(level), buf);
  }
}

}  // namespace layerfs
