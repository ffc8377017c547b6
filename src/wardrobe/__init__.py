"""Wardrobe: the autoencoder / VAE lecture on Fashion-MNIST as a reproducible pipeline."""

__version__ = "0.1.0"
