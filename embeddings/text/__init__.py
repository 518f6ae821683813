"""Text as the engine compares it: the matching form, jieba tokens, and what an answer must contain."""
