#include "tokenizer/tokenizer_config.h"

#include "util/error.h"

namespace fbq {

std::optional<std::string> special_token_content(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

std::optional<std::string> chat_template_source(const nlohmann::json& config, const std::filesystem::path& path) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it)
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
    fail("{}: chat_template is a list without a \"default\" entry", path.string());
  }
  fail("{}: chat_template is neither a string nor a list of {{name, template}}", path.string());
}

}  // namespace fbq
