"""Run the MMLU-Pro benchmark against GGUF models on your own machine."""

__version__ = "0.1.0"
