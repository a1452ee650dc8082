#pragma once
// Hugging Face tokenizer_config.json, the file beside tokenizer.json: the spellings of its special tokens and
// its Jinja chat template.
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace fbq {

// An entry such as "bos_token": a string, {"content": ...}, or null (nullopt then, as when it is absent).
std::optional<std::string> special_token_content(const nlohmann::json& config, const char* key);

// "chat_template": a string, or the list form [{"name": ..., "template": ...}] whose "default" entry is the
// chat template; nullopt when there is none. `path` names the file in errors.
std::optional<std::string> chat_template_source(const nlohmann::json& config, const std::filesystem::path& path);

}  // namespace fbq
