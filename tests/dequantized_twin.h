#pragma once
// A packed model's dequantized twin: the same model with every packed linear replaced by a dense f32 layer
// holding exactly the weights it applies (the reference the packed kernels are compared with).
#include <memory>

#include "model/model.h"
#include "pack/packed_linear.h"

namespace fbq {

inline std::unique_ptr<Linear> dense_twin(const PackedLinear& packed) {
  QuantizedLayer q{unpack(packed.packed()), packed.rank(), packed.lora_a(), packed.lora_b(), packed.input_scale(), "", {}};
  return std::make_unique<DenseLinear>(packed.out_features(), packed.in_features(),
                                       std::make_shared<std::vector<float>>(q.effective_weights()));
}

// Every decoder linear must be packed; the lm_head is replaced when it is packed (--head-bits).
inline void dequantize_in_place(Model& model) {
  for (auto& layer : model.layers)
    for (auto* slot : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj, &layer.gate_proj, &layer.up_proj,
                       &layer.down_proj})
      *slot = dense_twin(dynamic_cast<const PackedLinear&>(**slot));
  if (const auto* head = dynamic_cast<const PackedLinear*>(model.lm_head.get())) model.lm_head = dense_twin(*head);
}

}  // namespace fbq
