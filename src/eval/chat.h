#pragma once
// Multi-turn chat with an instruction-tuned model (`fbq chat`): every turn renders the whole conversation
// with the model's chat template, and only the tokens that the KV cache does not hold yet are run.
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eval/generate.h"
#include "eval/sampler.h"
#include "model/model.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"

namespace fbq {

struct ChatOptions {
  GenerateOptions generation{.max_new_tokens = 256};  // per reply
  std::optional<std::string> system;                  // the system message
  int context = 4096;  // KV-cache tokens, at most the model's max_seq_len (128k-context models would not fit)
};

struct ChatReply {
  std::string text;          // the assistant's reply, without its stop string
  std::vector<int> tokens;   // the generated tokens (a stop token not included)
  int reused_tokens = 0;     // tokens of the conversation that the KV cache already held
  bool context_full = false; // the conversation reached the context: the reply may be cut, nothing can follow
};

// Holds back the end of a reply's text while it may be the beginning of a stop string, so that no part of
// a stop string is shown; once one is complete, the reply ends before it.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  std::string push(std::string_view piece);  // the text that can be shown now
  std::string flush();                       // what was held back, at the end of the reply
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // the reply so far (up to a stop string)

 private:
  std::vector<std::string> stops_;
  std::string text_;
  std::size_t shown_ = 0;  // bytes of text_ already passed on
  bool stopped_ = false;
};

class ChatSession {
 public:
  // Throws when the template does not take `options.system` or the model has no tokenizer.
  ChatSession(const Model& model, ChatTemplate chat_template, const ChatOptions& options);

  // The user's message in, the assistant's reply out, streamed to `on_text` (whole UTF-8 characters).
  ChatReply reply(const std::string& user_message, const std::function<void(const std::string&)>& on_text = {});

  const std::vector<ChatMessage>& messages() const { return messages_; }
  const std::vector<int>& cached_tokens() const { return cached_; }  // what the KV cache holds, in order
  int context() const { return session_.max_context(); }

 private:
  int reuse_cached_prefix(const std::vector<int>& conversation);

  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  ChatOptions options_;
  InferenceSession session_;
  Sampler sampler_;
  std::vector<int> stop_tokens_;        // stop strings that are single tokens, and the model's EOS
  std::vector<std::string> stop_texts_; // the other stop strings, matched in the reply's text
  std::vector<ChatMessage> messages_;
  std::vector<int> cached_;
};

enum class ChatEnd { end_of_input, context_full };

// The loop of `fbq chat`: one user message per line of `in` (blank lines are skipped) until its end, each
// reply streamed to `out` and ended with a newline; `prompt_out`, when given, gets "> " before each line.
ChatEnd run_chat(ChatSession& chat, std::istream& in, std::ostream& out, std::ostream* prompt_out = nullptr);

}  // namespace fbq
