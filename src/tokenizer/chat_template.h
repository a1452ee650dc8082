#pragma once
// Chat templates: a conversation rendered into the one string an instruction-tuned model was trained on.
// There is no Jinja interpreter: each family's published Jinja template is re-implemented, byte for byte
// what transformers' apply_chat_template renders from it (tests/oracle/chat_template_oracle.py checks), and
// a model's template is recognised by its characteristic markers, as llama.cpp's llm_chat_detect_template.
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fbq {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// chatml: <|im_start|>role ... <|im_end|>. qwen2: the template Qwen2's tokenizer_config.json ships: ChatML with
// the default system message "You are a helpful assistant." when none is given, and the assistant's header
// after every user message (its add_generation_prompt is ignored). llama2 / mistral: [INST] ... [/INST], with
// and without <<SYS>>. phi3: <|user|> ... <|end|>. zephyr: <|user|> ... eos_token. gemma: <start_of_turn>.
enum class ChatFamily { chatml, qwen2, llama2, llama3, mistral, phi3, zephyr, gemma };

struct ChatTemplate {
  ChatFamily family = ChatFamily::chatml;
  std::string bos_token, eos_token;  // what the template's bos_token / eos_token variables spell

  // The messages as the family's template renders them, with the assistant's header last when
  // `add_generation_prompt`. Where the template raises (roles that do not alternate, a system message it
  // does not take) this throws fbq::Error carrying the template's message.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // The texts that end an assistant's reply: the family's end-of-turn markers and eos_token.
  std::vector<std::string> stop_strings() const;
};

std::string_view chat_family_name(ChatFamily family);

// The family's template with the bos/eos spellings its models use. An unknown name is an error listing
// the known ones.
ChatTemplate chat_template_named(std::string_view name);

// The family of a Jinja chat template, from the markers that characterise it; nullopt when none matches.
std::optional<ChatFamily> detect_chat_family(std::string_view jinja);

// The chat template of MODEL: the family `name` when it is given, else the family detected from the
// chat_template of tokenizer_config.json in the model directory (of a .gguf: its tokenizer.chat_template);
// bos/eos spellings from tokenizer_config.json where it has them. A model without a chat template (a
// base model) or with one that matches no family is an error that suggests --template.
ChatTemplate load_chat_template(const std::filesystem::path& model, std::string_view name = {});

}  // namespace fbq
