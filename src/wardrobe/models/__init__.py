"""The Keras models, one module each, imported only where used: `autoencoder` (the lecture's
AE and the decoder both models share), `vae` (its custom classes register when imported, so
`keras.models.load_model` of a saved VAE needs `import wardrobe.models.vae` first) and
`classifier` (scores generated images)."""
