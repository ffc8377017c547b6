"""The training stages: one module per model (`ae`, `vae`, `classifier`), each with a
`train(...)` that reads top to bottom, over the shared `loop` and `session`."""
