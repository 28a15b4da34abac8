"""Evaluation: metrics (pure tensor functions), evaluate, predict and attention maps."""

from vitkit.eval.attention import (
    AttentionMap,
    attention_maps,
    attention_rollout,
    patch_attention,
    render_overlay,
)
from vitkit.eval.evaluate import ClassMetrics, EvalReport, WrongPrediction, evaluate
from vitkit.eval.predict import ClassProb, Prediction, predict
from vitkit.eval.preprocess import expand_inputs, read_image, to_uint8

__all__ = [
    "AttentionMap",
    "ClassMetrics",
    "ClassProb",
    "EvalReport",
    "Prediction",
    "WrongPrediction",
    "attention_maps",
    "attention_rollout",
    "evaluate",
    "expand_inputs",
    "patch_attention",
    "predict",
    "read_image",
    "render_overlay",
    "to_uint8",
]
