"""``guardian serve``: an OpenAI-compatible HTTP gateway onto the pipeline."""
