// libFuzzer harness for a model directory from strangers: config.json (and its quantization_config),
// model.safetensors or a shard index with its shards, packed tensors, quant_report.json / verdict.json (as
// `fbq report` reads them) and tokenizer_config.json's chat template. The input is a bundle of those files
// (fuzz_files.h). Every loader must either succeed or refuse with fbq::Error.
#include "fuzz_files.h"
#include "model/model.h"
#include "report/html_report.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto dir = fbq::fuzz::write_bundle("fuzz_model_dir", data, size);
  fbq::fuzz::refused_or_fine([&] {
    const auto model = fbq::load_model(dir, {.require_tokenizer = false});
    // One token through every linear: packed layouts and branch ranks read the bytes they claim.
    std::vector<float> y;
    for (const auto& layer : model.layers)
      for (const auto* linear : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj, &layer.gate_proj,
                                 &layer.up_proj, &layer.down_proj}) {
        std::vector<float> in(static_cast<std::size_t>((*linear)->in_features()), 0.5f);
        y.resize(static_cast<std::size_t>((*linear)->out_features()));
        (*linear)->forward(in.data(), 1, y.data());
      }
  });
  fbq::fuzz::refused_or_fine([&] { fbq::quantization_report_html(dir); });
  fbq::fuzz::refused_or_fine([&] { fbq::load_chat_template(dir); });
  return 0;
}
