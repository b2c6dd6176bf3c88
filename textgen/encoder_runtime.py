"""The context encoder on ONNX Runtime, chosen when an export is loaded
(``load_export(..., encoder_runtime="onnxruntime")``).

A sampler runs the bidirectional encoder whenever rows join the batch or re-read their context
(every ``target_chars`` tokens).  torch's CPU GRU and LSTM dispatch about ten small operations per
token and direction, so a 64-token read by a 256-unit bi-GRU costs ~7 ms at batch 1 on the 2-core
test machine, where onnxruntime's fused recurrent kernels (the ``GRU``/``LSTM``/``RNN`` operators,
both directions and the whole sequence in one call) take ~2.2 ms.  A server, whose rows join a few
at a time, pays that per-call cost many times over (docs/SERVING.md).

:class:`OnnxBidirectionalRNN` replaces the model's ``encoder`` module: the same float32 function
(outputs within ~2e-6 of torch's), built from the module's own weights at load time, nothing
written to disk.  A row's result does not depend on the other rows of its batch.  Inference only:
it holds no parameters and computes no gradients.

``auto`` is ``torch`` off the CPU; on CPU it is measured when the export is loaded
(:mod:`textgen.runtime_choice`).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from textgen.cpu_choice import resolve_cpu_choice

ONNX_OPSET = 17
# Gate blocks of torch's weight matrices, in the order the ONNX operator reads them.
_GATE_ORDER = {
    "GRU": (1, 0, 2),  # torch r, z, n -> ONNX z, r, h
    "LSTM": (0, 3, 1, 2),  # torch i, f, g, o -> ONNX i, o, f, c
    "RNN_TANH": (0,),
}
_OPERATOR = {"GRU": "GRU", "LSTM": "LSTM", "RNN_TANH": "RNN"}


class EncoderRuntimeError(ValueError):
    """An unknown ``encoder_runtime``, one the device cannot run, or an encoder it cannot hold."""


ENCODER_RUNTIMES = ("torch", "onnxruntime")


def resolve_encoder_runtime(mode: str, device: str | torch.device) -> str:
    """``torch``, ``onnxruntime`` or (on CPU) ``auto``: what ``mode`` means on ``device``; raises
    :class:`EncoderRuntimeError`."""
    return resolve_cpu_choice("encoder_runtime", mode, candidates=ENCODER_RUNTIMES, cpu_only=("onnxruntime",),
                              elsewhere="torch", error=EncoderRuntimeError, device=device)


def _gates(weight: Tensor, order: tuple[int, ...]) -> np.ndarray:
    blocks = weight.detach().float().chunk(len(order), dim=0)
    return torch.cat([blocks[i] for i in order], dim=0).numpy()


def encoder_graph(rnn: nn.RNNBase) -> onnx.ModelProto:
    """The ONNX graph of a bidirectional, batch-first ``rnn``: inputs ``x`` (B, T, I) float32 and
    ``lengths`` (B,) int32; outputs ``y`` (B, T, 2H) (zeros past a row's length), ``h_n`` (2L, B, H)
    in torch's order, and ``c_n`` for an LSTM."""
    order, operator = _GATE_ORDER[rnn.mode], _OPERATOR[rnn.mode]
    H = rnn.hidden_size
    nodes = [helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2])]
    initializers = [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "merge_directions")]
    layer_input, finals_h, finals_c = "x_tbi", [], []
    for layer in range(rnn.num_layers):
        names = [f"l{layer}", f"l{layer}_reverse"]
        W = np.stack([_gates(getattr(rnn, f"weight_ih_{n}"), order) for n in names])
        R = np.stack([_gates(getattr(rnn, f"weight_hh_{n}"), order) for n in names])
        if rnn.bias:
            B = np.stack([np.concatenate([_gates(getattr(rnn, f"bias_ih_{n}"), order),
                                          _gates(getattr(rnn, f"bias_hh_{n}"), order)]) for n in names])
        else:
            B = np.zeros((2, 2 * len(order) * H), dtype=np.float32)
        initializers += [numpy_helper.from_array(W, f"W{layer}"), numpy_helper.from_array(R, f"R{layer}"),
                         numpy_helper.from_array(B, f"B{layer}")]
        outputs = [f"y{layer}", f"h{layer}"] + ([f"c{layer}"] if operator == "LSTM" else [])
        extra = {"linear_before_reset": 1} if operator == "GRU" else {}  # torch's GRU applies r after R h + b
        nodes.append(helper.make_node(operator, [layer_input, f"W{layer}", f"R{layer}", f"B{layer}", "lengths"],
                                      outputs, hidden_size=H, direction="bidirectional", **extra))
        finals_h.append(f"h{layer}")
        if operator == "LSTM":
            finals_c.append(f"c{layer}")
        last = layer == rnn.num_layers - 1
        # (T, 2, B, H) -> (T, B, 2H) for the next layer, (B, T, 2H) for the output: forward then backward units.
        nodes.append(helper.make_node("Transpose", [f"y{layer}"], [f"y{layer}_t"], perm=[2, 0, 1, 3] if last else [0, 2, 1, 3]))
        layer_input = "y" if last else f"x{layer + 1}"
        nodes.append(helper.make_node("Reshape", [f"y{layer}_t", "merge_directions"], [layer_input]))
    nodes.append(helper.make_node("Concat", finals_h, ["h_n"], axis=0))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("h_n", TensorProto.FLOAT, None)]
    if finals_c:
        nodes.append(helper.make_node("Concat", finals_c, ["c_n"], axis=0))
        outputs.append(helper.make_tensor_value_info("c_n", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "textgen_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", rnn.input_size]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])


class OnnxBidirectionalRNN(nn.Module):
    """A bidirectional, batch-first ``nn.GRU``/``nn.LSTM``/``nn.RNN`` (tanh) run by onnxruntime.

    Called as the module it replaces (input (B, T, I) or a ``PackedSequence``, no initial state),
    or with ``lengths`` (B,) for right-padded rows (:attr:`takes_lengths`), which saves packing.
    Returns the outputs and the final state in torch's layout.  Runs on as many threads as torch.
    """

    takes_lengths = True

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        if not rnn.bidirectional or not rnn.batch_first or rnn.proj_size or rnn.mode not in _OPERATOR:
            raise EncoderRuntimeError("encoder_runtime=onnxruntime runs bidirectional, batch-first GRU, LSTM "
                                      f"and tanh RNN encoders without projections, not {rnn}")
        self.mode, self.hidden_size, self.num_layers = rnn.mode, rnn.hidden_size, rnn.num_layers
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        graph = encoder_graph(rnn).SerializeToString()  # the weights are read detached (_gates)
        self._session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def forward(self, x: Tensor | PackedSequence, state: Tensor | tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | None = None):
        if state is not None:
            raise EncoderRuntimeError("the onnxruntime encoder starts from zeros; it takes no initial state")
        packed = isinstance(x, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(x, batch_first=True)
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int32)
        feed = {"x": x.detach().float().contiguous().numpy(),
                "lengths": lengths.to(torch.int32).cpu().numpy()}
        y, h_n, *c_n = (torch.from_numpy(out) for out in self._session.run(None, feed))
        output: Tensor | PackedSequence = y
        if packed:
            output = pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
        return output, ((h_n, c_n[0]) if self.mode == "LSTM" else h_n)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, bidirectional=True"


def use_encoder_runtime(model: nn.Module, mode: str, device: str | torch.device = "cpu") -> nn.Module:
    """``model``'s encoder run as ``mode`` (``torch`` or ``onnxruntime``) says, on ``device``;
    in place.  A model without an encoder (a decoder-only char-rnn) is returned as it is."""
    if resolve_encoder_runtime(mode, device) == "onnxruntime" and isinstance(getattr(model, "encoder", None), nn.RNNBase):
        model.encoder = OnnxBidirectionalRNN(model.encoder)
    return model


__all__ = ["ENCODER_RUNTIMES", "EncoderRuntimeError", "OnnxBidirectionalRNN", "encoder_graph",
           "resolve_encoder_runtime", "use_encoder_runtime"]
