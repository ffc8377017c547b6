"""The wardrobe page (`make explore`): the latent planes of the AE and the VAE, side by side,
with the garment each decoder sews at the pointer, decoded in the browser.

- `data`: stage `explore` writes, for each model, its decoder as ONNX (exported from the very
  Keras decoder the pipeline trained) and the page's data (the test images' codes by class,
  the region the figures' grids span), into reports/explore/.
- `server`: serves the page, those files and onnxruntime-web on 127.0.0.1, read-only.
"""
