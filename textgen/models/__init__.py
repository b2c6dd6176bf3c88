"""Recurrent models: :class:`Seq2SeqLM` and its :class:`ModelConfig`."""

from textgen.models.seq2seq import CELLS, DecoderState, EncoderConfig, ModelConfig, Seq2SeqLM

__all__ = ["CELLS", "DecoderState", "EncoderConfig", "ModelConfig", "Seq2SeqLM"]
