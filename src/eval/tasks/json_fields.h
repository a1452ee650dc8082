#pragma once
// Typed access to the fields of one JSON Lines record, failing with the file and line on a missing or
// mistyped field (nlohmann's own exceptions name neither).
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace fbq {

struct JsonRecord {
  const nlohmann::json& object;
  const std::filesystem::path& path;
  int line;

  const nlohmann::json& at(const std::string& key) const {
    if (!object.is_object() || !object.contains(key)) fail("{}:{}: missing field \"{}\"", path.string(), line, key);
    return object[key];
  }
  std::string string(const std::string& key) const { return as_string(at(key), key); }
  std::string as_string(const nlohmann::json& value, const std::string& what) const {
    if (!value.is_string()) fail("{}:{}: \"{}\" must be a string", path.string(), line, what);
    return value.get<std::string>();
  }
  [[noreturn]] void error(const std::string& message) const { fail("{}:{}: {}", path.string(), line, message); }
};

}  // namespace fbq
