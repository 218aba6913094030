"""The questions: the embedded MMLU-Pro copy and named copies, file formats, import,
verification and seeded samples. Knows nothing of models or prompts."""
