"""Offline jobs: dataset export, LoRA fine-tuning, evaluation gate, registry, router training."""
