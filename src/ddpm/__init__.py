"""DDPM (Ho, Jain, Abbeel 2020) and successors with PyTorch Lightning + Hydra."""

__version__ = "0.1.0"
