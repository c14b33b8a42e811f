"""Networks: per-modality encoders, agent-batched MLP/GRU bodies, actor and critic heads."""
