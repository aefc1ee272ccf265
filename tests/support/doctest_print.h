// Test support: lets doctest print the containers the mounted tests compare (it shows "{?}" for
// types it cannot print), so a failed CHECK shows the names involved.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace doctest {

template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
    return (out + "]").c_str();
  }
};

template <>
struct StringMaker<std::set<std::string>> {
  static String convert(const std::set<std::string>& v) {
    std::string out = "{";
    bool first = true;
    for (const auto& s : v) {
      out += (first ? "" : ", ") + s;
      first = false;
    }
    return (out + "}").c_str();
  }
};

template <>
struct StringMaker<std::map<std::string, std::string>> {
  static String convert(const std::map<std::string, std::string>& v) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, val] : v) {
      out += (first ? "" : ", ") + k + "=\"" + val + "\"";
      first = false;
    }
    return (out + "}").c_str();
  }
};

template <>
struct StringMaker<std::optional<std::string>> {
  static String convert(const std::optional<std::string>& v) {
    if (!v) return "(none)";
    if (v->size() > 80)
      return ("\"" + v->substr(0, 80) + "...\" (" + std::to_string(v->size()) + " bytes)").c_str();
    return ("\"" + *v + "\"").c_str();
  }
};

}  // namespace doctest
