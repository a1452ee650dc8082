#include "eval/chat.h"

#include <algorithm>
#include <istream>
#include <ostream>
#include <utility>

#include "io/text_files.h"
#include "util/error.h"
#include "util/utf8.h"

namespace fbq {

std::string StopStringFilter::push(std::string_view piece) {
  if (stopped_) return {};
  text_ += piece;
  // No stop string starts before shown_: the text that could begin one is always held back.
  std::size_t stop_at = std::string::npos;
  for (const auto& stop : stops_) stop_at = std::min(stop_at, text_.find(stop, shown_));
  if (stop_at != std::string::npos) {
    text_.resize(stop_at);
    stopped_ = true;
    return flush();
  }
  std::size_t held = 0;  // the longest end of the text that a stop string begins with
  for (const std::string_view stop : stops_)
    for (std::size_t n = std::min(stop.size() - 1, text_.size() - shown_); n > held; --n)
      if (std::string_view(text_).ends_with(stop.substr(0, n))) {
        held = n;
        break;
      }
  auto out = text_.substr(shown_, text_.size() - held - shown_);
  shown_ = text_.size() - held;
  return out;
}

std::string StopStringFilter::flush() {
  auto out = text_.substr(shown_);
  shown_ = text_.size();
  return out;
}

namespace {

const Tokenizer& tokenizer_of(const Model& model) {
  if (!model.tokenizer) fail("chat: the model has no tokenizer");
  return *model.tokenizer;
}

}  // namespace

ChatSession::ChatSession(const Model& model, ChatTemplate chat_template, const ChatOptions& options)
    : tokenizer_(tokenizer_of(model)),
      template_(std::move(chat_template)),
      options_(options),
      session_(model, std::min(options.context, model.config.max_seq_len)),
      sampler_(options.generation.temperature, options.generation.top_p, options.generation.seed) {
  if (options.generation.max_new_tokens < 0) fail("chat: -n must be >= 0");
  if (options.system) {
    messages_.push_back({"system", *options.system});
    try {  // now rather than at the first reply: templates without a system role raise
      const ChatMessage probe[] = {messages_[0], {"user", "?"}};
      template_.render(probe, /*add_generation_prompt=*/true);
    } catch (const Error& error) {
      fail("--system: {}", error.what());
    }
  }
  // A stop string that is one token (as <|im_end|> usually is) is caught as that token, before it is run.
  stop_tokens_.push_back(model.config.eos_id);
  for (auto& stop : template_.stop_strings()) {
    const auto ids = tokenizer_.tokenize(stop, {.add_bos = false, .parse_special = true});
    if (ids.size() == 1) stop_tokens_.push_back(ids[0]);
    else stop_texts_.push_back(std::move(stop));
  }
}

// Keeps the longest prefix of the cache that the conversation starts with and returns its length. That is
// usually all of it (turn k+1 renders turn k as the model saw it); where the template re-renders the past
// differently (llama2 strips the reply's spaces, a reply's text re-tokenizes otherwise, a stop string was
// run) the cache is cut back to where they part and the rest re-runs: the fallback re-prefill.
int ChatSession::reuse_cached_prefix(const std::vector<int>& conversation) {
  const auto [cached_end, unused] = std::ranges::mismatch(cached_, conversation);
  // The last token always runs: its logits start the reply.
  const int common = std::min<int>(cached_end - cached_.begin(), static_cast<int>(conversation.size()) - 1);
  session_.truncate(common);
  cached_.resize(common);
  return common;
}

ChatReply ChatSession::reply(const std::string& user_message, const std::function<void(const std::string&)>& on_text) {
  messages_.push_back({"user", user_message});
  // The rendered template spells its control tokens (<s>, <|im_start|>): they must become single tokens.
  const auto conversation = tokenizer_.tokenize(template_.render(messages_, /*add_generation_prompt=*/true),
                                                {.add_bos = false, .parse_special = true});
  ChatReply reply;
  const int length = static_cast<int>(conversation.size());
  if (length == 0) fail("chat: the rendered conversation has no tokens");
  if (length >= context()) {
    messages_.pop_back();
    reply.context_full = true;
    return reply;
  }
  reply.reused_tokens = reuse_cached_prefix(conversation);
  const auto logits = session_.forward(std::span(conversation).subspan(reply.reused_tokens), reply.reused_tokens,
                                       /*all_logits=*/false);
  cached_ = conversation;

  StopStringFilter stops(stop_texts_);
  Utf8Stream stream;  // a byte-level token may end mid-character: pass on whole characters only
  const auto show = [&](const std::string& text) {
    if (on_text && !text.empty()) on_text(text);
  };
  int previous = conversation.back();
  const int max_tokens = std::min(options_.generation.max_new_tokens, context() - length);
  const auto decoded = decode_tokens(session_, sampler_, logits, max_tokens, stop_tokens_, [&](int token) {
    show(stream.push(stops.push(tokenizer_.decode_piece(std::exchange(previous, token), token))));
    return !stops.stopped();
  });
  show(stream.push(stops.flush()));
  show(stream.flush());
  cached_.insert(cached_.end(), decoded.tokens.begin(), decoded.tokens.begin() + decoded.steps);

  reply.text = stops.text();
  reply.tokens = decoded.tokens;
  reply.context_full = length + static_cast<int>(decoded.tokens.size()) >= context();
  messages_.push_back({"assistant", reply.text});
  return reply;
}

ChatEnd run_chat(ChatSession& chat, std::istream& in, std::ostream& out, std::ostream* prompt_out) {
  std::string line;
  while (true) {
    if (prompt_out) *prompt_out << "> " << std::flush;
    if (!std::getline(in, line)) break;
    if (line.ends_with('\r')) line.pop_back();
    if (strip_whitespace(line).empty()) continue;
    const auto reply = chat.reply(line, [&](const std::string& text) { out << text << std::flush; });
    out << '\n' << std::flush;
    if (reply.context_full) return ChatEnd::context_full;
  }
  if (prompt_out) *prompt_out << '\n';  // end the prompt's line (Ctrl-D leaves the cursor after "> ")
  return ChatEnd::end_of_input;
}

}  // namespace fbq
