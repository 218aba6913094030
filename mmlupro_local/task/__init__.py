"""The MMLU-Pro protocol: the official prompt, answer extraction, the stop watcher and
scoring. Knows no llama.cpp: engines get its decisions through small seams."""
