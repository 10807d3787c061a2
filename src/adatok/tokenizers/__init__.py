"""Image tokenizers: images -> token ids -> images."""
