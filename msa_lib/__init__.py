"""Bilingual multimodal sentiment analysis: extract -> features -> data -> models -> train -> evaluate -> explain."""
__version__ = "0.1.0"
