"""selfalign: a deterministic, rebuildable StarCoder2-Instruct self-alignment pipeline."""

__version__ = "0.1.0"
