#include "tokenizer/chat_template.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>

#include "io/gguf.h"
#include "io/text_files.h"
#include "tokenizer/tokenizer_config.h"
#include "util/error.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

struct FamilyInfo {
  ChatFamily family;
  std::string_view name;
  std::string_view bos_token, eos_token;  // the usual spellings, when tokenizer_config.json gives none
  std::array<std::string_view, 2> end_of_turn;  // stop strings besides eos_token ("" = none)
};

constexpr std::array<FamilyInfo, 8> kFamilies = {{
    {ChatFamily::chatml, "chatml", "", "<|im_end|>", {"<|im_end|>", ""}},
    {ChatFamily::qwen2, "qwen2", "", "<|im_end|>", {"<|im_end|>", ""}},
    {ChatFamily::llama2, "llama2", "<s>", "</s>", {"", ""}},
    {ChatFamily::llama3, "llama3", "<|begin_of_text|>", "<|eot_id|>", {"<|eot_id|>", "<|end_of_text|>"}},
    {ChatFamily::mistral, "mistral", "<s>", "</s>", {"", ""}},
    {ChatFamily::phi3, "phi3", "<s>", "<|endoftext|>", {"<|end|>", ""}},
    {ChatFamily::zephyr, "zephyr", "<s>", "</s>", {"", ""}},
    {ChatFamily::gemma, "gemma", "<bos>", "<eos>", {"<end_of_turn>", ""}},
}};

const FamilyInfo& info_of(ChatFamily family) {
  return *std::find_if(kFamilies.begin(), kFamilies.end(), [&](const FamilyInfo& f) { return f.family == family; });
}

// "chatml|qwen2|...", for the errors that suggest --template.
std::string family_choices() {
  std::vector<std::string_view> names;
  for (const auto& f : kFamilies) names.push_back(f.name);
  return fmt::format("{}", fmt::join(names, "|"));
}

// What Python's str.strip() removes (Jinja's trim filter and the templates' .strip() are that): the
// code points for which str.isspace() is true.
constexpr std::array<std::string_view, 29> kPythonWhitespace = {
    " ", "\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f",
    "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83",
    "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89",
    "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};

std::string python_strip(std::string_view text) {
  const auto strip_one = [&](bool front) {
    for (const auto space : kPythonWhitespace)
      if (front ? text.starts_with(space) : text.ends_with(space)) {
        front ? text.remove_prefix(space.size()) : text.remove_suffix(space.size());
        return true;
      }
    return false;
  };
  while (strip_one(/*front=*/true)) {}
  while (strip_one(/*front=*/false)) {}
  return std::string(text);
}

[[noreturn]] void template_raises(ChatFamily family, std::string_view message) {
  fail("chat template {}: {}", info_of(family).name, message);
}

// The check of the llama2, mistral and gemma templates: user messages at even positions only.
void check_alternation(ChatFamily family, const ChatMessage& message, std::size_t index) {
  if ((message.role == "user") != (index % 2 == 0))
    template_raises(family, "Conversation roles must alternate user/assistant/user/assistant/...");
}

bool is_standard_role(const std::string& role) { return role == "system" || role == "user" || role == "assistant"; }

std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_qwen2(std::span<const ChatMessage> messages) {
  const bool has_system = messages[0].role == "system";
  std::string out = "<|im_start|>system\n" + (has_system ? messages[0].content : "You are a helpful assistant.") +
                    "<|im_end|>\n";
  for (const auto& m : messages) {
    if (m.role == "user") out += "<|im_start|>user\n" + m.content + "<|im_end|>\n<|im_start|>assistant\n";
    else if (m.role == "assistant") out += m.content + "<|im_end|>\n";
  }
  return out;
}

std::string render_llama2(const ChatTemplate& t, std::span<const ChatMessage> messages) {
  const bool has_system = messages[0].role == "system";
  const auto turns = messages.subspan(has_system ? 1 : 0);
  std::string out;
  for (std::size_t i = 0; i < turns.size(); ++i) {
    check_alternation(t.family, turns[i], i);
    // The system message goes inside the first turn, and the strip applies to the two together.
    const std::string content =
        i == 0 && has_system ? "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + turns[i].content : turns[i].content;
    if (turns[i].role == "user") out += t.bos_token + "[INST] " + python_strip(content) + " [/INST]";
    else if (turns[i].role == "assistant") out += " " + python_strip(content) + " " + t.eos_token;
  }
  return out;
}

std::string render_llama3(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out = t.bos_token;
  for (const auto& m : messages)
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + python_strip(m.content) + "<|eot_id|>";
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_mistral(const ChatTemplate& t, std::span<const ChatMessage> messages) {
  std::string out = t.bos_token;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    check_alternation(t.family, messages[i], i);
    if (messages[i].role == "user") out += "[INST] " + messages[i].content + " [/INST]";
    else if (messages[i].role == "assistant") out += messages[i].content + t.eos_token;
    else template_raises(t.family, "Only user and assistant roles are supported!");
  }
  return out;
}

std::string render_phi3(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages)
    if (is_standard_role(m.role)) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
  return out + (add_generation_prompt ? "<|assistant|>\n" : t.eos_token);
}

std::string render_zephyr(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages)
    if (is_standard_role(m.role)) out += "<|" + m.role + "|>\n" + m.content + t.eos_token + "\n";
  if (add_generation_prompt) out += "<|assistant|>\n";  // inside the template's loop: never after no messages
  return out;
}

std::string render_gemma(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  if (messages[0].role == "system") template_raises(t.family, "System role not supported");
  std::string out = t.bos_token;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    check_alternation(t.family, messages[i], i);
    const std::string role = messages[i].role == "assistant" ? "model" : messages[i].role;
    out += "<start_of_turn>" + role + "\n" + python_strip(messages[i].content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  if (messages.empty()) template_raises(family, "no messages to render");
  switch (family) {
    case ChatFamily::chatml: return render_chatml(messages, add_generation_prompt);
    case ChatFamily::qwen2: return render_qwen2(messages);
    case ChatFamily::llama2: return render_llama2(*this, messages);
    case ChatFamily::llama3: return render_llama3(*this, messages, add_generation_prompt);
    case ChatFamily::mistral: return render_mistral(*this, messages);
    case ChatFamily::phi3: return render_phi3(*this, messages, add_generation_prompt);
    case ChatFamily::zephyr: return render_zephyr(*this, messages, add_generation_prompt);
    case ChatFamily::gemma: return render_gemma(*this, messages, add_generation_prompt);
  }
  fail("chat template: unknown family");
}

std::vector<std::string> ChatTemplate::stop_strings() const {
  std::vector<std::string> stops;
  for (const auto marker : info_of(family).end_of_turn)
    if (!marker.empty()) stops.emplace_back(marker);
  if (!eos_token.empty() && std::find(stops.begin(), stops.end(), eos_token) == stops.end()) stops.push_back(eos_token);
  return stops;
}

std::string_view chat_family_name(ChatFamily family) { return info_of(family).name; }

ChatTemplate chat_template_named(std::string_view name) {
  for (const auto& f : kFamilies)
    if (f.name == name) return {f.family, std::string(f.bos_token), std::string(f.eos_token)};
  fail("unknown chat template '{}' (known: {})", name, family_choices());
}

std::optional<ChatFamily> detect_chat_family(std::string_view jinja) {
  const auto has = [&](std::string_view marker) { return jinja.find(marker) != std::string_view::npos; };
  if (has("<|im_start|>")) return has("You are a helpful assistant.") ? ChatFamily::qwen2 : ChatFamily::chatml;
  if (has("<|start_header_id|>")) return ChatFamily::llama3;
  if (has("<start_of_turn>")) return ChatFamily::gemma;
  if (has("<|user|>") && has("<|end|>")) return ChatFamily::phi3;
  if (has("<|user|>") && (has("eos_token") || has("</s>"))) return ChatFamily::zephyr;
  if (has("[INST]")) return has("<<SYS>>") ? ChatFamily::llama2 : ChatFamily::mistral;
  return std::nullopt;
}

ChatTemplate load_chat_template(const fs::path& model, std::string_view name) {
  const auto config_path = model / "tokenizer_config.json";
  const bool has_config = fs::is_directory(model) && fs::is_regular_file(config_path);
  const auto config = has_config ? read_json_file(config_path) : nlohmann::json::object();
  std::optional<std::string> jinja;
  std::string looked_at;  // where the template would be, for the error
  if (has_config) {
    jinja = chat_template_source(config, config_path);
    looked_at = "tokenizer_config.json has no chat_template";
  } else if (is_gguf_file(model)) {
    jinja = GgufFile(model).get_string("tokenizer.chat_template");
    looked_at = "the GGUF has no tokenizer.chat_template";
  } else {
    looked_at = fs::is_directory(model) ? "no tokenizer_config.json in the directory" : "a llama2.c checkpoint has none";
  }

  ChatTemplate result;
  if (!name.empty()) {
    result = chat_template_named(name);
  } else if (!jinja) {
    fail("{} has no chat template ({}); pass --template {} for an instruction-tuned model", model.string(), looked_at,
         family_choices());
  } else if (const auto family = detect_chat_family(*jinja)) {
    result = chat_template_named(chat_family_name(*family));
  } else {
    fail("{}: its chat template matches none of the known families; pass --template {}", model.string(),
         family_choices());
  }
  if (const auto bos = special_token_content(config, "bos_token")) result.bos_token = *bos;
  if (const auto eos = special_token_content(config, "eos_token")) result.eos_token = *eos;
  return result;
}

}  // namespace fbq
